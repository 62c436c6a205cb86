using System.CommandLine;
using IommuKit.Host;
using IommuKit.Cli.Rendering;
using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu diff A B</c>: how the groups changed between two sources (a BIOS or kernel update), matched by device
/// identity and fingerprint, with what changed in the machine (kernel, command line, devices) and, for every device
/// whose group changed, the model's reasons before and after. Exit 0 when the groups are the same, 1 when they differ,
/// 3 bad input.
/// </summary>
internal static class DiffCommand
{
    /// <summary>Most devices whose reasons are printed per diff (the rest are counted).</summary>
    public const int MaxExplained = 16;

    public static Command Create(CliConsole console)
    {
        var a = new Argument<string>("A") { Description = "The machine before (same kinds of source as --source)." };
        var b = new Argument<string>("B") { Description = "The machine after." };
        var json = CommonOptions.Json();
        var command = new Command("diff", "How IOMMU groups changed between two sources (e.g. before and after a BIOS or kernel update), with reasons.\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "same groups"), (ExitCode.Negative, "the groups differ")))
        {
            a, b, json,
        };
        command.SetAction(parse => Run(console, parse.GetValue(a)!, parse.GetValue(b)!, parse.GetValue(json)));
        return command;
    }

    internal static int Run(CliConsole console, string pathA, string pathB, bool json)
    {
        var ma = Inputs.LoadMachine(pathA, console);
        var mb = Inputs.LoadMachine(pathB, console);
        var aa = Analysis.Run(ma, null);
        var ab = Analysis.Run(mb, null);
        var diff = GroupDiff.Compute(aa.Groups, ab.Groups);
        bool same = diff.All(e => e.Kind == GroupChangeKind.Unchanged);

        var machineChanges = new List<string>();
        if (ma.KernelRelease != mb.KernelRelease) machineChanges.Add($"kernel {ma.KernelRelease ?? "unknown"} -> {mb.KernelRelease ?? "unknown"}");
        var ca = KernelCommandLine.Parse(ma.CommandLine);
        var cb = KernelCommandLine.Parse(mb.CommandLine);
        var pa = ca.Parameters.Select(KernelCommandLine.FormatParameter).ToList();
        var pb = cb.Parameters.Select(KernelCommandLine.FormatParameter).ToList();
        var removed = pa.Except(pb).ToList();
        var added = pb.Except(pa).ToList();
        if (removed.Count + added.Count > 0)
            machineChanges.Add("command line: " + string.Join(" ", removed.Select(x => "-" + x).Concat(added.Select(x => "+" + x))));
        if (aa.State != ab.State) machineChanges.Add($"IOMMU {Word(aa.State)} -> {Word(ab.State)}");
        var devA = ma.Topology.Devices.ToDictionary(d => d.Address);
        var devB = mb.Topology.Devices.ToDictionary(d => d.Address);
        foreach (var d in ma.Topology.Devices)
        {
            if (!devB.TryGetValue(d.Address, out var e)) machineChanges.Add($"{d.Address.ToShortString()} [{d.VendorId:x4}:{d.DeviceId:x4}] is gone");
            else if (e.VendorId != d.VendorId || e.DeviceId != d.DeviceId) machineChanges.Add($"{d.Address.ToShortString()} was [{d.VendorId:x4}:{d.DeviceId:x4}], is [{e.VendorId:x4}:{e.DeviceId:x4}]");
            else if (!AcsEqual(d, e)) machineChanges.Add($"{d.Address.ToShortString()} ACS {Acs(d)} -> {Acs(e)}");
        }
        foreach (var d in mb.Topology.Devices)
            if (!devA.ContainsKey(d.Address)) machineChanges.Add($"{d.Address.ToShortString()} [{d.VendorId:x4}:{d.DeviceId:x4}] is new");

        // Devices whose group changed, with the model's reasons on both sides.
        var moved = new List<(PciAddress Address, IReadOnlyList<ExplainStep> Before, IReadOnlyList<ExplainStep> After)>();
        int movedTotal = 0;
        foreach (var e in diff)
        {
            if (e.Kind == GroupChangeKind.Unchanged) continue;
            foreach (var g in e.After)
                foreach (var d in g.Devices)
                {
                    movedTotal++;
                    if (moved.Count < MaxExplained) moved.Add((d.Address, Reasons(aa.Model.Explain(d.Address)), Reasons(ab.Model.Explain(d.Address))));
                }
        }
        int exit = same ? (int)ExitCode.Ok : (int)ExitCode.Negative;

        if (json)
        {
            JsonOut.Write(console, w =>
            {
                w.WriteStartObject();
                Side(w, "a", aa);
                Side(w, "b", ab);
                w.WriteBoolean("same", same);
                JsonOut.StringArray(w, "machine_changes", machineChanges);
                GroupDiff.WriteJson(w, diff);
                w.WriteStartArray("reasons");
                foreach (var (addr, before, after) in moved)
                {
                    w.WriteStartObject();
                    w.WriteString("device", addr.ToString());
                    JsonOut.StringArray(w, "before", before.Select(s => s.Text));
                    JsonOut.StringArray(w, "after", after.Select(s => s.Text));
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                JsonOut.StringArray(w, "warnings", Warnings(aa, ab));
                w.WriteEndObject();
            });
            return exit;
        }

        var s = Style.For(console);
        var o = console.Out;
        o.WriteLine($"A: {ma.Origin} ({Describe(aa)})");
        o.WriteLine($"B: {mb.Origin} ({Describe(ab)})");
        o.WriteLine();
        if (machineChanges.Count > 0)
        {
            o.WriteLine("What changed in the machine:");
            foreach (var c in machineChanges) o.WriteLine($"  {c}");
        }
        else o.WriteLine("What changed in the machine: nothing the sources show (same kernel, command line, devices and ACS).");
        o.WriteLine();
        if (same) o.WriteLine(s.Good("Groups: the same partition (every group keeps its members and fingerprint)."));
        else
        {
            o.WriteLine("Groups:");
            GroupDiff.WriteText(o, s, diff);
            o.WriteLine();
            o.WriteLine("Why, per device whose group changed (model's reasons in A, then in B):");
            foreach (var (addr, before, after) in moved)
            {
                o.WriteLine($"  {addr.ToShortString()}");
                WriteSteps(o, "A", before);
                WriteSteps(o, "B", after);
            }
            if (movedTotal > moved.Count) o.WriteLine($"  … and {movedTotal - moved.Count} more (see --json)");
        }
        foreach (var n in Warnings(aa, ab)) console.Warn(n);
        return exit;
    }

    /// <summary>Both sides' notes, then their disagreements with the kernel, prefixed <c>A: </c>/<c>B: </c> (stderr in text, <c>warnings</c> in JSON).</summary>
    private static IEnumerable<string> Warnings(Analysis a, Analysis b) =>
        a.Notes.Select(n => "A: " + n).Concat(b.Notes.Select(n => "B: " + n))
            .Concat(a.Disagreements.Select(d => "A: model disagrees with the kernel: " + d))
            .Concat(b.Disagreements.Select(d => "B: model disagrees with the kernel: " + d));

    /// <summary>One side's reasons, one step per line (as <c>explain</c> prints them): <c>    A: first</c>, then aligned below it.</summary>
    private static void WriteSteps(TextWriter o, string side, IReadOnlyList<ExplainStep> steps)
    {
        if (steps.Count == 0) { o.WriteLine($"    {side}: (not in {side})"); return; }
        for (int i = 0; i < steps.Count; i++) o.WriteLine($"{(i == 0 ? $"    {side}: " : "       ")}{steps[i].Text}");
    }

    /// <summary>The steps that carry a reason (not the bookkeeping "joins"/"is in group N" ones).</summary>
    private static List<ExplainStep> Reasons(IReadOnlyList<ExplainStep> steps) =>
        steps.Where(x => x.Kind is not (GroupStepKind.JoinExistingGroup or GroupStepKind.NewGroup)).ToList();

    private static bool AcsEqual(PciDevice a, PciDevice b) =>
        (a.Acs?.Capability, a.Acs?.Control) == (b.Acs?.Capability, b.Acs?.Control);

    private static string Acs(PciDevice d) => d.Acs is { } acs ? $"cap {acs.Capability} ctl {acs.Control}" : "none";

    private static string Word(IommuState s) => s switch { IommuState.Active => "on", IommuState.Off => "off", _ => "assumed" };

    private static string Describe(Analysis a) =>
        $"kernel {a.Machine.KernelRelease ?? "unknown"}, {a.Groups.Count} groups {(a.Predicted ? a.State == IommuState.Off ? "predicted, IOMMU off" : "predicted" : "from the kernel")}";

    private static void Side(System.Text.Json.Utf8JsonWriter w, string name, Analysis a)
    {
        w.WriteStartObject(name);
        GroupsCommand.WriteMachineJson(w, a);
        w.WriteNumber("groups", a.Groups.Count);
        w.WriteEndObject();
    }
}
