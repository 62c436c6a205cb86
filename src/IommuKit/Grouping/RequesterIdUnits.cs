using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>
/// Why two devices of one IOMMU group are together. Linux gives a group one domain whatever the reason; the reasons
/// differ in what the IOMMU can see (docs/core.md "The two bonds inside a group").
/// </summary>
public enum BondKind
{
    /// <summary>
    /// The devices share a requester ID through the alias walk (<c>pci_for_each_dma_alias</c>, spec 2.2): a bridge takes
    /// ownership of the requests (PCIe-to-PCI, PCI-to-PCIe or conventional bridge) or the DMA is issued by another device
    /// (VMD, <c>pci_real_dma_dev</c>). The IOMMU cannot tell them apart: they must share one domain.
    /// </summary>
    Alias,
    /// <summary>
    /// A bridge or port on the path lacks ACS isolation (<c>pci_acs_path_enabled</c>, spec 2.4 step 3): the devices can
    /// reach each other by peer-to-peer DMA the IOMMU never sees, but the IOMMU tells their requests apart.
    /// </summary>
    AcsPath,
    /// <summary>
    /// Functions of one multifunction device without ACS (<c>get_pci_function_alias_group</c>, spec 2.4 step 5): possible
    /// peer-to-peer inside the device; distinct requester IDs.
    /// </summary>
    Multifunction,
    /// <summary>
    /// A DMA alias quirk (<c>pci_add_dma_alias</c>, spec 2.8) makes one device issue requests with another's ID (or a
    /// phantom devfn): the IOMMU cannot tell them apart, like <see cref="Alias"/>.
    /// </summary>
    Quirk,
}

/// <summary>Extension methods of <see cref="BondKind"/>.</summary>
public static class BondKindExtensions
{
    /// <summary>The JSON/CLI name: <c>alias</c>, <c>acs-path</c>, <c>multifunction</c>, <c>quirk</c>.</summary>
    public static string Name(this BondKind kind) => kind switch
    {
        BondKind.Alias => "alias",
        BondKind.AcsPath => "acs-path",
        BondKind.Multifunction => "multifunction",
        _ => "quirk",
    };

    /// <summary>The devices share a requester ID (<see cref="BondKind.Alias"/>, <see cref="BondKind.Quirk"/>): one domain is forced.</summary>
    public static bool SharesRequesterId(this BondKind kind) => kind is BondKind.Alias or BondKind.Quirk;
}

/// <summary>
/// A set of devices of a group that the IOMMU cannot tell apart: every requester ID any of them reaches the IOMMU with
/// (through <see cref="PciGrouping.ForEachDmaAlias{TVisitor}"/>) is shared within the set, or a member's DMA is issued as
/// another member (a bridge taking ownership, a VMD device). A unit is what must share one domain.
/// </summary>
/// <param name="Index">Position in <see cref="GroupUnits.Units"/>.</param>
/// <param name="Devices">Members, in the group's order.</param>
/// <param name="RequesterIds">The requester IDs the IOMMU sees for them (bus &lt;&lt; 8 | devfn), ascending.</param>
public sealed record RequesterIdUnit(int Index, IReadOnlyList<PciAddress> Devices, IReadOnlyList<ushort> RequesterIds);

/// <summary>
/// One reason two devices are in one group, from the grouping mechanism's own facts: <see cref="Device"/> and
/// <see cref="Other"/> are joined by rule <see cref="Kind"/>, which names <see cref="Via"/> (the bridge that owns the
/// requests, the port without ACS, the multifunction function without ACS, or the aliased device).
/// </summary>
/// <param name="DeviceUnit">Index of <see cref="Device"/>'s unit; equal to <paramref name="OtherUnit"/> for alias/quirk bonds.</param>
public sealed record GroupBond(BondKind Kind, PciAddress Device, PciAddress Other, PciAddress? Via, int DeviceUnit, int OtherUnit)
{
    /// <summary>For alias and quirk bonds: how the shared requester ID arises (the bridge kind of <see cref="Via"/>, a quirk, or the device's own ID reached as a VMD's).</summary>
    public DmaAliasVia? Through { get; init; }

    /// <summary>For alias and quirk bonds: the requester ID the two devices share at the IOMMU.</summary>
    public ushort? RequesterId { get; init; }

    /// <summary>The bond joins two different requester-ID units (acs-path, multifunction), not devices inside one.</summary>
    public bool BetweenUnits => DeviceUnit != OtherUnit;
}

/// <summary>The requester-ID units of one group and the bonds that hold it together (<see cref="RequesterIdUnits.Of"/>).</summary>
public sealed class GroupUnits
{
    private readonly Dictionary<PciAddress, int> _unitOf;

    internal GroupUnits(IReadOnlyList<RequesterIdUnit> units, IReadOnlyList<GroupBond> bonds, Dictionary<PciAddress, int> unitOf)
    {
        Units = units;
        Bonds = bonds;
        _unitOf = unitOf;
    }

    /// <summary>The units, ordered by their first member in the group's order.</summary>
    public IReadOnlyList<RequesterIdUnit> Units { get; }

    /// <summary>
    /// Alias and quirk bonds inside units (a spanning forest of each unit), then the bonds between units: for every
    /// device that joined a group holding a device of another unit, the rule that made it join (a spanning tree of units).
    /// </summary>
    public IReadOnlyList<GroupBond> Bonds { get; }

    /// <summary>The unit of a member, or null for a device not in the group.</summary>
    public RequesterIdUnit? UnitOf(PciAddress device) => _unitOf.TryGetValue(device, out int u) ? Units[u] : null;

    /// <summary>The bonds that touch a unit and join it to another one.</summary>
    public IEnumerable<GroupBond> BondsOfUnit(int unit)
    {
        foreach (var b in Bonds)
            if (b.BetweenUnits && (b.DeviceUnit == unit || b.OtherUnit == unit)) yield return b;
    }

    /// <summary>The bonds that name a device (as either side).</summary>
    public IEnumerable<GroupBond> BondsOf(PciAddress device)
    {
        foreach (var b in Bonds)
            if (b.Device == device || b.Other == device) yield return b;
    }
}

/// <summary>
/// Derives the requester-ID units and bonds of a group from the grouping mechanism itself: units from the one alias walk
/// (<see cref="PciGrouping.ForEachDmaAlias{TVisitor}"/>), bonds between units from the typed steps
/// (<see cref="GroupStep"/>) of <see cref="PciGrouping.DeviceGroup{TGroup}"/> replayed for each member in probe order.
/// No rule is decided twice: a bond's kind is the rule the mechanism applied when the device joined.
/// </summary>
public static class RequesterIdUnits
{
    /// <summary>Most members a group may have for this analysis (a cap on what input can grow).</summary>
    public const int MaxMembers = 4096;

    /// <summary>
    /// The units and bonds of the group made of <paramref name="members"/>, given in the order the kernel probed them
    /// (the group's join order). Replaying <c>pci_device_group</c> for member i with only members 0..i-1 grouped sees
    /// exactly what the kernel saw up to the join: any device that had a group earlier in the walk would have been
    /// joined instead, so it was in this group.
    /// </summary>
    /// <exception cref="ArgumentException">More than <see cref="MaxMembers"/> members, or a device twice.</exception>
    public static GroupUnits Of(IReadOnlyList<PciDevice> members, GroupingContext ctx)
    {
        ArgumentNullException.ThrowIfNull(members);
        ArgumentNullException.ThrowIfNull(ctx);
        if (members.Count > MaxMembers) throw new ArgumentException($"a group of {members.Count} devices is above the cap of {MaxMembers}", nameof(members));
        int n = members.Count;
        var index = new Dictionary<PciDevice, int>(n);
        for (int i = 0; i < n; i++)
            if (!index.TryAdd(members[i], i)) throw new ArgumentException($"{members[i].Address} is listed twice", nameof(members));

        // 1. Units: the alias walk of every member. A member visited by another's walk (the bridge that owns its
        //    requests, its real DMA device) is an alias; a requester ID reached by two members is shared.
        var uf = new UnionFind(n);
        var bonds = new List<GroupBond>();
        // The first member to reach each requester ID, how, and as which device (the bridge owning the requests).
        var ridOwner = new Dictionary<long, (int Member, DmaAliasVia Via, int Visited)>(); // key: PCI segment << 16 | requester ID
        var rids = new List<ushort>[n];
        var pending = new List<(BondKind Kind, int A, int B, PciAddress Via, DmaAliasVia Through, ushort Rid)>();
        for (int i = 0; i < n; i++)
        {
            var walk = new UnitWalk(index);
            PciGrouping.ForEachDmaAlias(members[i], ctx, ref walk);
            rids[i] = walk.Rids;
            foreach (var (segment, rid, via, visited) in walk.Visits)
            {
                // Visiting another member: that member owns (VMD) or takes ownership of (a bridge) the requests.
                if (visited >= 0 && visited != i)
                    pending.Add((BondKind.Alias, i, visited, members[visited].Address, via, rid));
                long key = ((long)segment << 16) | rid;
                if (ridOwner.TryGetValue(key, out var first))
                {
                    if (first.Member == i) continue;
                    // Both reach the IOMMU with this ID: by a DMA alias quirk when either side got it from one.
                    if (via == DmaAliasVia.AliasQuirk) pending.Add((BondKind.Quirk, i, first.Member, members[i].Address, via, rid));
                    else if (first.Via == DmaAliasVia.AliasQuirk) pending.Add((BondKind.Quirk, i, first.Member, members[first.Member].Address, first.Via, rid));
                    else pending.Add((BondKind.Alias, i, first.Member, members[visited >= 0 ? visited : i].Address, via, rid));
                }
                else ridOwner[key] = (i, via, visited);
            }
        }
        foreach (var (kind, a, b, via, through, rid) in pending)
        {
            if (uf.Union(a, b))
                bonds.Add(new GroupBond(kind, members[a].Address, members[b].Address, via, -1, -1) { Through = through, RequesterId = rid });
        }

        // Number the units by first member.
        var unitIndex = new int[n];
        var roots = new Dictionary<int, int>();
        var unitDevices = new List<List<PciAddress>>();
        var unitRids = new List<SortedSet<ushort>>();
        for (int i = 0; i < n; i++)
        {
            int r = uf.Find(i);
            if (!roots.TryGetValue(r, out int u))
            {
                u = unitDevices.Count;
                roots[r] = u;
                unitDevices.Add([]);
                unitRids.Add([]);
            }
            unitIndex[i] = u;
            unitDevices[u].Add(members[i].Address);
            foreach (var rid in rids[i]) unitRids[u].Add(rid);
        }

        // 2. Bonds between units: replay each member's grouping and read the rule that found the group it joined.
        var joined = new UnionFind(unitDevices.Count);
        for (int i = 1; i < n; i++)
        {
            var trace = new GroupTrace();
            int me = i;
            var token = new object();
            ctx.TouchedUnknown = false;
            ctx.UnknownTouched.Clear();
            PciGrouping.DeviceGroup(members[i], ctx, x => index.TryGetValue(x, out int k) && k < me ? token : null, () => token, trace);
            if (JoinOf(trace.Steps) is not { } join) continue; // a new group in the replay: the member did not join through the rule (recorded partition)
            if (!index.TryGetValue(ctx.Topology[join.Other], out int j)) continue;
            int ui = unitIndex[i], uj = unitIndex[j];
            if (ui == uj || !joined.Union(ui, uj)) continue;
            var kind = join.Kind;
            var via = join.Via;
            // An alias or quirk rule that joined a device of another unit was applied to the bridge the ACS climb
            // reached, not to the device: the bond between the two units is the climb's.
            if (kind.SharesRequesterId()) { kind = BondKind.AcsPath; via = join.AcsPort ?? via; }
            bonds.Add(new GroupBond(kind, members[i].Address, members[j].Address, via, ui, uj));
        }
        for (int k = 0; k < bonds.Count; k++)
        {
            var b = bonds[k];
            if (b.DeviceUnit < 0)
            {
                int u = unitIndex[index[ctx.Topology[b.Device]]];
                bonds[k] = b with { DeviceUnit = u, OtherUnit = u };
            }
        }

        var units = new RequesterIdUnit[unitDevices.Count];
        for (int u = 0; u < units.Length; u++) units[u] = new RequesterIdUnit(u, unitDevices[u], [.. unitRids[u]]);
        var unitOf = new Dictionary<PciAddress, int>(n);
        for (int i = 0; i < n; i++) unitOf[members[i].Address] = unitIndex[i];
        return new GroupUnits(units, bonds, unitOf);
    }

    private readonly record struct Join(BondKind Kind, PciAddress Other, PciAddress? Via, PciAddress? AcsPort);

    /// <summary>The device whose group the trace joined, and the kind of the rule that found it.</summary>
    private static Join? JoinOf(IReadOnlyList<GroupStep> steps)
    {
        BondKind kind = BondKind.Alias;
        PciAddress? via = null, acsPort = null;
        foreach (var s in steps)
        {
            switch (s.Kind)
            {
                case GroupStepKind.RealDmaDevice:
                    kind = BondKind.Alias; via = s.Origin; break;
                case GroupStepKind.BridgeAlias:
                    kind = BondKind.Alias; via = s.Device; break;
                case GroupStepKind.AcsNotIsolated:
                    kind = BondKind.AcsPath; via = s.Device; acsPort ??= s.Device; break;
                case GroupStepKind.DmaAliasOfDevice:
                    kind = BondKind.Quirk; via = s.Device; break;
                case GroupStepKind.SameSlotFunction:
                    kind = BondKind.Multifunction; via = s.Origin; break;
                case GroupStepKind.JoinExistingGroup:
                    return new Join(kind, s.Device, via ?? s.Device, acsPort);
            }
        }
        return null;
    }

    /// <summary>Collects the (segment, requester ID, how, member visited or -1) of each visit of one member's alias walk.</summary>
    private readonly struct UnitWalk(Dictionary<PciDevice, int> index) : IDmaAliasVisitor
    {
        public readonly List<(int Segment, ushort Rid, DmaAliasVia Via, int Visited)> Visits = [];
        public readonly List<ushort> Rids = [];

        public int Visit(PciDevice device, ushort requesterId, DmaAliasVia via)
        {
            Visits.Add((device.Address.Domain, requesterId, via, index.TryGetValue(device, out int k) ? k : -1));
            Rids.Add(requesterId);
            return 0;
        }

        public void TranslationRoot(PciDevice bridge) { }
    }

    private sealed class UnionFind
    {
        private readonly int[] _parent;

        public UnionFind(int n)
        {
            _parent = new int[n];
            for (int i = 0; i < n; i++) _parent[i] = i;
        }

        public int Find(int x)
        {
            while (_parent[x] != x) { _parent[x] = _parent[_parent[x]]; x = _parent[x]; }
            return x;
        }

        /// <summary>Joins the sets of a and b; false when they were one set already.</summary>
        public bool Union(int a, int b)
        {
            int ra = Find(a), rb = Find(b);
            if (ra == rb) return false;
            _parent[rb] = ra;
            return true;
        }
    }
}
