using System.Security.Cryptography;
using System.Text;
using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>One predicted IOMMU group.</summary>
public sealed class ModelGroup
{
    internal ModelGroup(int id) { Id = id; }

    /// <summary>The number the kernel would give it (lowest free id, groups allocated in probe order).</summary>
    public int Id { get; }

    /// <summary>Members in the order they joined (the kernel's probe order).</summary>
    public IReadOnlyList<PciDevice> Devices => _devices;
    internal readonly List<PciDevice> _devices = new();

    /// <summary>Stable short hash of the member addresses and vendor:device ids; independent of group numbers. See <see cref="GroupingEngine.FingerprintOf"/>.</summary>
    public string Fingerprint { get; internal set; } = "";

    /// <summary>
    /// A rule that decided this group needed a fact the source lacks (ACS or PCIe capability of a device whose
    /// extended config space was not visible, a Switchtec alias table): the group is a guess.
    /// </summary>
    public bool UnknownFacts { get; internal set; }

    /// <summary>Devices whose missing facts the grouping relied on.</summary>
    public IReadOnlyList<PciDevice> UnknownFactDevices => _unknown;
    internal readonly List<PciDevice> _unknown = new();

    public override string ToString() => $"group {Id} [{string.Join(' ', _devices.Select(d => d.Address.ToShortString()))}]";
}

/// <summary>The outcome of <see cref="GroupingEngine.Compute"/>.</summary>
public sealed class GroupingResult
{
    private readonly Dictionary<PciAddress, ModelGroup> _groupOf;
    private readonly Dictionary<PciAddress, IReadOnlyList<GroupStep>> _explain;

    internal GroupingResult(Machine machine, IommuActivation activation, GroupingContext? ctx, List<ModelGroup> groups,
        Dictionary<PciAddress, ModelGroup> groupOf, Dictionary<PciAddress, IReadOnlyList<GroupStep>> explain, List<string> messages)
    {
        Machine = machine;
        Activation = activation;
        Context = ctx;
        Groups = groups;
        _groupOf = groupOf;
        _explain = explain;
        Messages = messages;
    }

    public Machine Machine { get; }
    /// <summary>Whether the IOMMU was modelled as active, and why.</summary>
    public IommuActivation Activation { get; }
    public bool IommuActive => Activation.Active;
    /// <summary>The context the groups were computed with (effective ACS, aliases); null when the IOMMU is off.</summary>
    public GroupingContext? Context { get; }
    /// <summary>Groups sorted by id.</summary>
    public IReadOnlyList<ModelGroup> Groups { get; }
    /// <summary>Notes from the command line and the model (ignored override, invalid config_acs, unknown facts), one line each.</summary>
    public IReadOnlyList<string> Messages { get; }

    /// <summary>The group of a device, or null (IOMMU off, not managed, or no such device).</summary>
    public ModelGroup? GroupOf(PciAddress address) => _groupOf.GetValueOrDefault(address);

    public ModelGroup? GroupById(int id)
    {
        foreach (var g in Groups) if (g.Id == id) return g;
        return null;
    }

    /// <summary>The chain of decisions that placed the device, each naming a device and the rule. Empty for an unknown address.</summary>
    public IReadOnlyList<GroupStep> Explain(PciAddress address) =>
        _explain.TryGetValue(address, out var s) ? s : Array.Empty<GroupStep>();

    /// <summary>The partition as sets of addresses (sorted), for comparisons.</summary>
    public IReadOnlyList<IReadOnlyList<PciAddress>> Partition()
    {
        var list = new List<IReadOnlyList<PciAddress>>(Groups.Count);
        foreach (var g in Groups)
        {
            var a = g.Devices.Select(d => d.Address).Order().ToList();
            list.Add(a);
        }
        return list;
    }
}

/// <summary>
/// Runs <see cref="PciGrouping.DeviceGroup{TGroup}"/> over a machine's devices in the kernel's probe order
/// (<see cref="PciTopology.Devices"/>), numbering groups like the kernel's id allocator (lowest free id).
/// </summary>
public static class GroupingEngine
{
    /// <summary>
    /// Computes the groups of <paramref name="machine"/>. With no IOMMU active (per the command line and the machine's
    /// units) the result has no groups unless <see cref="GroupingOptions.ForceIommuActive"/> asks for a prediction.
    /// Devices that no IOMMU unit manages (when the source lists units) get no group, as in the kernel.
    /// Linear in the number of devices.
    /// </summary>
    public static GroupingResult Compute(Machine machine, GroupingOptions? options = null)
    {
        options ??= new GroupingOptions();
        var cmd = options.CommandLine ?? KernelCommandLine.Parse(machine.CommandLine);
        var activation = IommuActivation.Decide(machine, cmd, options.ForceIommuActive);
        var messages = new List<string>();
        var groupOf = new Dictionary<PciAddress, ModelGroup>(machine.Topology.Count);
        var explain = new Dictionary<PciAddress, IReadOnlyList<GroupStep>>(options.RecordExplanations ? machine.Topology.Count : 0);
        var groups = new List<ModelGroup>();
        if (activation.Assumed) messages.Add(activation.Reason);

        if (!activation.Active)
        {
            if (options.RecordExplanations)
            {
                foreach (var d in machine.Topology.Devices)
                    explain[d.Address] = [new GroupStep(GroupStepKind.NoGroup, d.Address, $"no IOMMU is active: {activation.Reason}")];
            }
            return new GroupingResult(machine, activation, null, groups, groupOf, explain, messages);
        }

        var ctx = GroupingContext.Create(machine, cmd, true, options);
        messages.AddRange(ctx.Acs.Override.Messages);
        messages.AddRange(ctx.Acs.Messages);

        var managed = ManagedSet(machine, options.ForceIommuActive);
        var devices = machine.Topology.Devices;
        var byIndex = new ModelGroup?[devices.Count];
        var ids = new IdAllocator();
        var trace = options.RecordExplanations ? new GroupTrace() : null;
        Func<PciDevice, ModelGroup?> lookup = d => byIndex[d.ProbeIndex];
        Func<ModelGroup> alloc = () =>
        {
            var g = new ModelGroup(ids.Allocate());
            groups.Add(g);
            return g;
        };

        foreach (var d in devices)
        {
            if (managed is not null && !managed.Contains(d.Address))
            {
                if (trace is not null)
                    explain[d.Address] = [new GroupStep(GroupStepKind.NoGroup, d.Address, $"{GroupTrace.A(d)} is not managed by any IOMMU unit (no iommu link, absent from every unit's device list): the kernel gives it no group")];
                continue;
            }
            trace?.Clear();
            if (trace is not null && ctx.Acs.Note(d) is { } note)
                trace.Add(GroupStepKind.AcsSetting, d, $"{GroupTrace.A(d)}: {note}");
            ctx.TouchedUnknown = false;
            ctx.UnknownTouched.Clear();
            var g = PciGrouping.DeviceGroup(d, ctx, lookup, alloc, trace);
            byIndex[d.ProbeIndex] = g;
            g._devices.Add(d);
            groupOf[d.Address] = g;
            if (ctx.TouchedUnknown)
            {
                g.UnknownFacts = true;
                foreach (var u in ctx.UnknownTouched)
                    if (!g._unknown.Contains(u)) g._unknown.Add(u);
                trace?.Add(GroupStepKind.UnknownFacts, d, $"facts are missing for {string.Join(", ", ctx.UnknownTouched.Select(GroupTrace.A))} (no extended config space in the source, e.g. lspci run without root): this placement is a guess");
            }
            if (trace is not null)
            {
                var steps = trace.Steps.ToList();
                steps.Add(new GroupStep(GroupStepKind.NewGroup == steps.LastOrDefault()?.Kind ? GroupStepKind.NewGroup : GroupStepKind.JoinExistingGroup,
                    d.Address, $"{GroupTrace.A(d)} is in group {g.Id}"));
                explain[d.Address] = steps;
            }
        }

        groups.Sort((a, b) => a.Id.CompareTo(b.Id));
        int unknownGroups = 0;
        foreach (var g in groups)
        {
            g.Fingerprint = FingerprintOf(g.Devices);
            if (g.UnknownFacts) unknownGroups++;
        }
        if (unknownGroups > 0)
            messages.Add($"{unknownGroups} group(s) depend on facts the source does not show (extended capabilities such as ACS): run the capture as root for a reliable answer");
        return new GroupingResult(machine, activation, ctx, groups, groupOf, explain, messages);
    }

    /// <summary>
    /// Devices some IOMMU unit manages: those with an <c>iommu</c> link or listed by a unit. Null means "all" (the source
    /// shows no units, or a prediction was forced).
    /// </summary>
    private static HashSet<PciAddress>? ManagedSet(Machine machine, bool forced)
    {
        if (machine.IommuUnits.Count == 0) return null;
        var set = new HashSet<PciAddress>();
        foreach (var u in machine.IommuUnits)
            foreach (var a in u.Devices) set.Add(a);
        foreach (var d in machine.Topology.Devices)
            if (d.Facts.IommuUnit is not null) set.Add(d.Address);
        if (set.Count == 0) return null; // units without device lists: assume they manage everything
        if (forced)
        {
            // A forced prediction still leaves out the IOMMU's own function (virtio-iommu) when units name PCI functions.
            foreach (var d in machine.Topology.Devices) set.Add(d.Address);
            foreach (var u in machine.IommuUnits)
                if (PciAddress.TryParse(u.Name, out var self)) set.Remove(self);
        }
        return set;
    }

    /// <summary>
    /// A stable fingerprint of a set of devices: the first 12 hex digits of SHA-256 over the sorted lines
    /// <c>dddd:bb:dd.f vvvv:dddd</c>. It does not depend on group numbers or member order.
    /// </summary>
    public static string FingerprintOf(IEnumerable<PciDevice> devices)
    {
        var lines = devices.Select(d => $"{d.Address} {d.VendorId:x4}:{d.DeviceId:x4}").Order(StringComparer.Ordinal);
        var bytes = Encoding.ASCII.GetBytes(string.Join('\n', lines));
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(bytes, hash);
        return Convert.ToHexStringLower(hash[..6]);
    }

    /// <summary>The kernel's group id allocator (ida): always the lowest free id.</summary>
    internal sealed class IdAllocator
    {
        private readonly SortedSet<int> _free = new();
        private int _next;

        public int Allocate()
        {
            if (_free.Count > 0)
            {
                int id = _free.Min;
                _free.Remove(id);
                return id;
            }
            return _next++;
        }

        public void Free(int id)
        {
            if (id == _next - 1) _next--;
            else _free.Add(id);
        }
    }
}
