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
    private readonly ModelGroup?[] _byIndex;
    private readonly bool[]? _managed;
    internal int[]? Rank { get; init; }
    private readonly Dictionary<PciAddress, IReadOnlyList<GroupStep>> _explain;

    internal GroupingResult(Machine machine, IommuActivation activation, GroupingContext? ctx, List<ModelGroup> groups,
        ModelGroup?[] byIndex, bool[]? managed, List<string> messages)
    {
        Machine = machine;
        Activation = activation;
        Context = ctx;
        Groups = groups;
        _byIndex = byIndex;
        _managed = managed;
        _explain = new Dictionary<PciAddress, IReadOnlyList<GroupStep>>();
        Messages = messages;
    }

    public Machine Machine { get; }
    /// <summary>Whether the IOMMU was modelled as active, and why.</summary>
    public IommuActivation Activation { get; }
    public bool IommuActive => Activation.Active;

    /// <summary>
    /// False when the IOMMU groups devices as their drivers bind (virtio-iommu via ACPI VIOT or device tree): the
    /// kernel's numbers then follow driver bind timing, which no snapshot records. Members are still exact; the model
    /// numbers such groups in enumeration order. True for VT-d and AMD-Vi, which probe every device at registration.
    /// </summary>
    public bool NumbersPredictable => Activation.Kind is not (IommuKind.Virtio or IommuKind.ArmSmmu);
    /// <summary>The context the groups were computed with (effective ACS, aliases); null when the IOMMU is off.</summary>
    public GroupingContext? Context { get; }
    /// <summary>Groups sorted by id.</summary>
    public IReadOnlyList<ModelGroup> Groups { get; }
    /// <summary>Notes from the command line and the model (ignored override, invalid config_acs, unknown facts), one line each.</summary>
    public IReadOnlyList<string> Messages { get; }

    /// <summary>The group of a device, or null (IOMMU off, not managed, or no such device).</summary>
    public ModelGroup? GroupOf(PciAddress address) =>
        Machine.Topology.TryFind(address, out var d) ? _byIndex[d.ProbeIndex] : null;

    public ModelGroup? GroupById(int id)
    {
        foreach (var g in Groups) if (g.Id == id) return g;
        return null;
    }

    /// <summary>
    /// The chain of decisions that placed the device, each naming a device and the rule; the last step names the group.
    /// Empty for an unknown address. Computed on first use by replaying <see cref="PciGrouping.DeviceGroup{TGroup}"/> for
    /// the device against the groups of the devices probed before it (exactly the state the kernel saw). Not thread-safe.
    /// </summary>
    public IReadOnlyList<GroupStep> Explain(PciAddress address)
    {
        if (_explain.TryGetValue(address, out var s)) return s;
        if (!Machine.Topology.TryFind(address, out var dev)) return Array.Empty<GroupStep>();
        var steps = GroupingEngine.ExplainDevice(this, dev, _byIndex, _managed);
        _explain[address] = steps;
        return steps;
    }

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
        var devices = machine.Topology.Devices;
        var byIndex = new ModelGroup?[devices.Count];
        var groups = new List<ModelGroup>();
        if (activation.Assumed) messages.Add(activation.Reason);

        if (!activation.Active)
            return Finish(new GroupingResult(machine, activation, null, groups, byIndex, null, messages), options);

        var ctx = GroupingContext.Create(machine, cmd, true, options);
        if (activation.Kind == IommuKind.Virtio)
            messages.Add("virtio-iommu groups devices as their drivers bind: group members are the kernel's, but its group numbers depend on driver bind order and may differ from these");
        messages.AddRange(ctx.Acs.Override.Messages);
        messages.AddRange(ctx.Acs.Messages);

        var managed = ManagedSet(machine, options.ForceIommuActive);
        var ids = new IdAllocator();
        Func<PciDevice, ModelGroup?> lookup = d => byIndex[d.ProbeIndex];
        Func<ModelGroup> alloc = () =>
        {
            var g = new ModelGroup(ids.Allocate());
            groups.Add(g);
            return g;
        };

        // iommu_probe_device over the bus in probe order (bus_iommu_probe): each device joins or creates its group.
        // SR-IOV VFs come into being after boot, so they are grouped last (see ProbeSequence).
        var sequence = ProbeSequence(machine.Topology, options.VfEnableOrder, out var rank);
        foreach (var d in sequence)
        {
            if (managed is not null && !managed[d.ProbeIndex]) continue;
            ctx.TouchedUnknown = false;
            ctx.UnknownTouched.Clear();
            var g = PciGrouping.DeviceGroup(d, ctx, lookup, alloc, trace: null);
            byIndex[d.ProbeIndex] = g;
            g._devices.Add(d);
            if (ctx.TouchedUnknown)
            {
                g.UnknownFacts = true;
                foreach (var u in ctx.UnknownTouched)
                    if (!g._unknown.Contains(u)) g._unknown.Add(u);
            }
        }

        int unknownGroups = 0;
        foreach (var g in groups)
        {
            g.Fingerprint = FingerprintOf(g.Devices);
            if (g.UnknownFacts) unknownGroups++;
        }
        if (unknownGroups > 0)
            messages.Add($"{unknownGroups} group(s) depend on facts the source does not show (extended capabilities such as ACS, or bridge bus ranges): read the machine as root (iommu snapshot, or lspci -vv) for a reliable answer");
        return Finish(new GroupingResult(machine, activation, ctx, groups, byIndex, managed, messages) { Rank = rank }, options);
    }

    /// <summary>
    /// The order the kernel adds devices to groups: every boot-time function in probe order, then the SR-IOV VFs, PF by
    /// PF (in <paramref name="vfOrder"/>, then probe order) and VF index by VF index. <paramref name="rank"/> is each
    /// device's position in that order, by probe index.
    /// </summary>
    internal static List<PciDevice> ProbeSequence(PciTopology topo, IReadOnlyList<PciAddress>? vfOrder, out int[] rank)
    {
        var devices = topo.Devices;
        var seq = new List<PciDevice>(devices.Count);
        List<PciDevice>? vfs = null;
        foreach (var d in devices)
        {
            if (d.IsVirtualFunction) (vfs ??= new List<PciDevice>()).Add(d);
            else seq.Add(d);
        }
        if (vfs is not null)
        {
            var pfRank = new Dictionary<int, int>();
            if (vfOrder is not null)
                for (int i = 0; i < vfOrder.Count; i++)
                    if (topo.Find(vfOrder[i]) is { } pf) pfRank.TryAdd(pf.ProbeIndex, i);
            int Key(PciDevice vf) { int pf = vf.PhysicalFunction!.ProbeIndex; return pfRank.TryGetValue(pf, out int r) ? r : vfOrder?.Count + pf ?? pf; }
            vfs.Sort((a, b) =>
            {
                int c = Key(a).CompareTo(Key(b));
                return c != 0 ? c : a.VfIndex.CompareTo(b.VfIndex);
            });
            seq.AddRange(vfs);
        }
        rank = new int[devices.Count];
        for (int i = 0; i < seq.Count; i++) rank[seq[i].ProbeIndex] = i;
        return seq;
    }

    private static GroupingResult Finish(GroupingResult r, GroupingOptions options)
    {
        if (options.RecordExplanations)
            foreach (var d in r.Machine.Topology.Devices) r.Explain(d.Address);
        return r;
    }

    /// <summary>Replays the grouping of one device with a trace (see <see cref="GroupingResult.Explain"/>).</summary>
    internal static IReadOnlyList<GroupStep> ExplainDevice(GroupingResult r, PciDevice d, ModelGroup?[] byIndex, bool[]? managed)
    {
        if (!r.IommuActive || r.Context is null)
            return [new GroupStep(GroupStepKind.NoGroup, d.Address, $"no IOMMU is active: {r.Activation.Reason}")];
        if (managed is not null && !managed[d.ProbeIndex])
            return [new GroupStep(GroupStepKind.NoGroup, d.Address, $"{GroupTrace.A(d)} is not managed by any IOMMU unit (no iommu link, absent from every unit's device list): the kernel gives it no group")];
        var ctx = r.Context;
        var trace = new GroupTrace();
        if (ctx.Acs.Note(d) is { } note) trace.Add(GroupStepKind.AcsSetting, d, $"{GroupTrace.A(d)}: {note}");
        var final = byIndex[d.ProbeIndex]!;
        var rank = r.Rank!;
        int me = rank[d.ProbeIndex];
        // The state the kernel saw: devices probed earlier have their final groups, later ones none.
        bool saveTouched = ctx.TouchedUnknown;
        ctx.TouchedUnknown = false;
        ctx.UnknownTouched.Clear();
        var g = PciGrouping.DeviceGroup(d, ctx, x => rank[x.ProbeIndex] < me ? byIndex[x.ProbeIndex] : null, () => final, trace);
        System.Diagnostics.Debug.Assert(ReferenceEquals(g, final), "replay must reach the group the device got");
        if (ctx.TouchedUnknown)
            trace.Add(GroupStepKind.UnknownFacts, d, $"facts are missing for {string.Join(", ", ctx.UnknownTouched.Select(GroupTrace.A))} (capabilities or bridge bus ranges not in the source, e.g. lspci run without root or without -v): this placement is a guess");
        ctx.TouchedUnknown = saveTouched;
        var steps = new List<GroupStep>(trace.Steps);
        bool created = final.Devices.Count > 0 && final.Devices[0] == d;
        steps.Add(new GroupStep(created ? GroupStepKind.NewGroup : GroupStepKind.JoinExistingGroup, d.Address,
            created ? $"{GroupTrace.A(d)} is the first member of group {final.Id}" : $"{GroupTrace.A(d)} is in group {final.Id}"));
        return steps;
    }

    /// <summary>
    /// Devices some IOMMU unit manages: those with an <c>iommu</c> link or listed by a unit. Null means "all" (the source
    /// shows no units, or a prediction was forced).
    /// </summary>
    private static bool[]? ManagedSet(Machine machine, bool forced)
    {
        if (machine.IommuUnits.Count == 0) return null;
        var topo = machine.Topology;
        var set = new bool[topo.Count];
        bool any = false;
        foreach (var u in machine.IommuUnits)
            foreach (var a in u.Devices)
                if (topo.TryFind(a, out var d)) { set[d.ProbeIndex] = true; any = true; }
        foreach (var d in topo.Devices)
            if (d.Facts.IommuUnit is not null) { set[d.ProbeIndex] = true; any = true; }
        if (!any) return null; // units without device lists: assume they manage everything
        if (forced)
        {
            // A forced prediction still leaves out the IOMMU's own function (virtio-iommu) when units name PCI functions.
            Array.Fill(set, true);
            foreach (var u in machine.IommuUnits)
                if (PciAddress.TryParse(u.Name, out var self) && topo.TryFind(self, out var sd)) set[sd.ProbeIndex] = false;
        }
        return set;
    }

    /// <summary>
    /// A stable fingerprint of a set of devices: the first 12 hex digits of SHA-256 over the sorted lines
    /// <c>dddd:bb:dd.f vvvv:dddd</c>. It does not depend on group numbers or member order.
    /// </summary>
    public static string FingerprintOf(IEnumerable<PciDevice> devices)
    {
        var list = devices as IReadOnlyList<PciDevice> ?? devices.ToList();
        PciDevice[] sorted = new PciDevice[list.Count];
        for (int i = 0; i < sorted.Length; i++) sorted[i] = list[i];
        if (sorted.Length > 1) Array.Sort(sorted, static (a, b) => a.Address.CompareTo(b.Address));
        // Each line: "dddd:bb:dd.f vvvv:dddd" (domain printed with at least 4 hex digits), joined by '\n'.
        const int MaxLine = 8 + 1 + 2 + 1 + 2 + 1 + 1 + 1 + 4 + 1 + 4 + 1;
        int cap = checked(sorted.Length * MaxLine);
        byte[]? rented = cap > 1024 ? System.Buffers.ArrayPool<byte>.Shared.Rent(cap) : null;
        Span<byte> buf = rented ?? stackalloc byte[1024];
        int n = 0;
        for (int i = 0; i < sorted.Length; i++)
        {
            var d = sorted[i];
            if (i > 0) buf[n++] = (byte)'\n';
            var a = d.Address;
            n += Hex(buf[n..], (uint)a.Domain, 4);
            buf[n++] = (byte)':'; n += Hex(buf[n..], a.Bus, 2);
            buf[n++] = (byte)':'; n += Hex(buf[n..], a.Device, 2);
            buf[n++] = (byte)'.'; n += Hex(buf[n..], a.Function, 1);
            buf[n++] = (byte)' '; n += Hex(buf[n..], d.VendorId, 4);
            buf[n++] = (byte)':'; n += Hex(buf[n..], d.DeviceId, 4);
        }
        Span<byte> hash = stackalloc byte[32];
        Sha256.HashData(buf[..n], hash); // managed: the platform SHA-256 needs OpenSSL (see Pci/Sha256.cs)
        if (rented is not null) System.Buffers.ArrayPool<byte>.Shared.Return(rented);
        return Convert.ToHexStringLower(hash[..6]);
    }

    private static int Hex(Span<byte> dst, uint v, int digits)
    {
        // Like printf "%0Nx": at least N digits, more when the value needs them.
        int need = 1;
        for (uint t = v >> 4; t != 0; t >>= 4) need++;
        int len = Math.Max(digits, need);
        for (int i = len - 1; i >= 0; i--, v >>= 4) dst[i] = (byte)"0123456789abcdef"[(int)(v & 0xf)];
        return len;
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
