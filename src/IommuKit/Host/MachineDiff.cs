using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>A device whose group changed between two machines, with the model's reasons on both sides (bookkeeping steps left out).</summary>
public sealed record MovedDevice(PciAddress Address, IReadOnlyList<ExplainStep> Before, IReadOnlyList<ExplainStep> After);

/// <summary>How the groups changed between two machines (<see cref="HostAnalysis.Diff"/>).</summary>
public sealed record DiffReport
{
    /// <summary>The analysis of the machine before.</summary>
    public required HostReport A { get; init; }
    /// <summary>The analysis of the machine after.</summary>
    public required HostReport B { get; init; }
    /// <summary>Every group keeps its members.</summary>
    public required bool Same { get; init; }
    /// <summary>What changed in the machine: kernel, command line, IOMMU state, devices and their ACS, one line each.</summary>
    public required IReadOnlyList<string> MachineChanges { get; init; }
    /// <summary>Every whole-group change between A's and B's shown groups (unchanged ones included).</summary>
    public required IReadOnlyList<GroupReportChange> Changes { get; init; }
    /// <summary>The first <see cref="HostAnalysis.MaxExplainedMoves"/> devices whose group changed, with reasons.</summary>
    public required IReadOnlyList<MovedDevice> Moved { get; init; }
    /// <summary>How many devices' groups changed in all.</summary>
    public required int MovedTotal { get; init; }
    /// <summary>Both sides' notes, then their disagreements with the kernel, prefixed <c>A: </c>/<c>B: </c>.</summary>
    public IEnumerable<string> Warnings =>
        A.Notes.Select(n => "A: " + n).Concat(B.Notes.Select(n => "B: " + n))
            .Concat(A.Disagreements.Select(d => "A: model disagrees with the kernel: " + d))
            .Concat(B.Disagreements.Select(d => "B: model disagrees with the kernel: " + d));
}

public static partial class HostAnalysis
{
    /// <summary>Most devices whose reasons a diff carries (the rest are counted in <see cref="DiffReport.MovedTotal"/>).</summary>
    public const int MaxExplainedMoves = 16;

    /// <summary>
    /// How the groups changed between two machines (a BIOS or kernel update), matched by device identity and
    /// fingerprint, with what changed in the machine and, for every device whose group changed, the model's reasons
    /// before and after.
    /// </summary>
    public static DiffReport Diff(Machine a, Machine b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var ra = Analyze(a);
        var rb = Analyze(b);
        var changes = GroupReportChange.Compute(ra.Groups, rb.Groups);
        var moved = new List<MovedDevice>();
        int movedTotal = 0;
        foreach (var e in changes)
        {
            if (e.Kind == GroupChangeKind.Unchanged) continue;
            foreach (var g in e.After)
                foreach (var d in g.Devices)
                {
                    movedTotal++;
                    if (moved.Count < MaxExplainedMoves)
                        moved.Add(new MovedDevice(d.Address, Reasons(ra.Model.Explain(d.Address)), Reasons(rb.Model.Explain(d.Address))));
                }
        }
        return new DiffReport
        {
            A = ra,
            B = rb,
            Same = changes.All(e => e.Kind == GroupChangeKind.Unchanged),
            MachineChanges = MachineChanges(ra, rb),
            Changes = changes,
            Moved = moved,
            MovedTotal = movedTotal,
        };
    }

    private static List<string> MachineChanges(HostReport ra, HostReport rb)
    {
        Machine ma = ra.Machine, mb = rb.Machine;
        var changes = new List<string>();
        if (ma.KernelRelease != mb.KernelRelease) changes.Add($"kernel {ma.KernelRelease ?? "unknown"} -> {mb.KernelRelease ?? "unknown"}");
        var pa = KernelCommandLine.Parse(ma.CommandLine).Parameters.Select(KernelCommandLine.FormatParameter).ToList();
        var pb = KernelCommandLine.Parse(mb.CommandLine).Parameters.Select(KernelCommandLine.FormatParameter).ToList();
        var removed = pa.Except(pb).ToList();
        var added = pb.Except(pa).ToList();
        if (removed.Count + added.Count > 0)
            changes.Add("command line: " + string.Join(" ", removed.Select(x => "-" + x).Concat(added.Select(x => "+" + x))));
        if (ra.State != rb.State) changes.Add($"IOMMU {Word(ra.State)} -> {Word(rb.State)}");
        var devA = ma.Topology.Devices.ToDictionary(d => d.Address);
        var devB = mb.Topology.Devices.ToDictionary(d => d.Address);
        foreach (var d in ma.Topology.Devices)
        {
            if (!devB.TryGetValue(d.Address, out var e)) changes.Add($"{d.Address.ToShortString()} [{d.VendorId:x4}:{d.DeviceId:x4}] is gone");
            else if (e.VendorId != d.VendorId || e.DeviceId != d.DeviceId) changes.Add($"{d.Address.ToShortString()} was [{d.VendorId:x4}:{d.DeviceId:x4}], is [{e.VendorId:x4}:{e.DeviceId:x4}]");
            else if ((d.Acs?.Capability, d.Acs?.Control) != (e.Acs?.Capability, e.Acs?.Control)) changes.Add($"{d.Address.ToShortString()} ACS {Acs(d)} -> {Acs(e)}");
        }
        foreach (var d in mb.Topology.Devices)
            if (!devA.ContainsKey(d.Address)) changes.Add($"{d.Address.ToShortString()} [{d.VendorId:x4}:{d.DeviceId:x4}] is new");
        return changes;
    }

    /// <summary>The steps that carry a reason (not the bookkeeping "joins"/"is in group N" ones).</summary>
    private static List<ExplainStep> Reasons(IReadOnlyList<ExplainStep> steps) =>
        steps.Where(x => x.Kind is not (GroupStepKind.JoinExistingGroup or GroupStepKind.NewGroup)).ToList();

    private static string Acs(PciDevice d) => d.Acs is { } acs ? $"cap {acs.Capability} ctl {acs.Control}" : "none";

    /// <summary>The state in one word: on, off, assumed.</summary>
    public static string Word(IommuState s) => s switch { IommuState.Active => "on", IommuState.Off => "off", _ => "assumed" };
}
