using System.Runtime.CompilerServices;
using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>Why another member shares the asked device's group: its bond kind and one sentence (<see cref="GroupBonds.MemberBonds"/>).</summary>
public sealed record MemberBond(PciAddress Member, BondKind Kind, string Text);

/// <summary>
/// Members of a group that a VMM with a virtual IOMMU must put in one guest address space (<see cref="MustShare"/>: they
/// share a requester ID), or that could each have their own (bonded only by acs-path/multifunction). All of a group's
/// members still go to the same VM: peer-to-peer between them bypasses the IOMMU.
/// </summary>
public sealed record GuestAddressSpace(IReadOnlyList<PciAddress> Devices, bool MustShare, string Reason);

/// <summary>
/// The requester-ID units and bonds of the model's groups (<see cref="RequesterIdUnits"/>): which members the IOMMU
/// cannot tell apart (they must share a domain) and which are merely not isolated from each other.
/// </summary>
public static class GroupBonds
{
    private static readonly ConditionalWeakTable<ModelGroup, GroupUnits> s_cache = new();

    /// <summary>
    /// The units and bonds of <paramref name="group"/>, derived from the grouping rules that formed it; null when the
    /// result has no grouping context (IOMMU off) or the group is above <see cref="RequesterIdUnits.MaxMembers"/>. Computed on first use and cached. Not thread-safe (the grouping
    /// context's memo tables are filled lazily).
    /// </summary>
    public static GroupUnits? Units(this GroupingResult result, ModelGroup group)
    {
        ArgumentNullException.ThrowIfNull(result);
        ArgumentNullException.ThrowIfNull(group);
        if (result.Context is not { } ctx || group.Devices.Count > RequesterIdUnits.MaxMembers) return null;
        if (s_cache.TryGetValue(group, out var u)) return u;
        u = RequesterIdUnits.Of(group.Devices, ctx);
        s_cache.AddOrUpdate(group, u);
        return u;
    }

    /// <summary>
    /// The units and bonds of a shown group (<see cref="GroupReport"/>): the model's own group's when it has the same
    /// members, otherwise (a kernel group the model disagrees with) derived for the members in the kernel's probe order,
    /// where bonds then follow the model's rules and may not span the group. Null when the IOMMU is off in the model or
    /// the group is larger than <see cref="RequesterIdUnits.MaxMembers"/>.
    /// </summary>
    public static GroupUnits? UnitsOf(HostReport report, GroupReport group)
    {
        ArgumentNullException.ThrowIfNull(report);
        return UnitsOf(report.Model, group);
    }

    /// <summary>The units and bonds of <paramref name="group"/> from the model's result (<see cref="UnitsOf(HostReport, GroupReport)"/>).</summary>
    public static GroupUnits? UnitsOf(GroupingResult model, GroupReport group)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(group);
        if (model.Context is not { } ctx || model.Host is not { } host || group.Devices.Count == 0) return null;
        if (group.Devices.Count > RequesterIdUnits.MaxMembers) return null;
        if (model.GroupOf(group.Devices[0].Address) is { } mg && mg.Devices.Count == group.Devices.Count &&
            group.Devices.All(d => model.GroupOf(d.Address) == mg))
            return model.Units(mg);
        var rank = host.Sequence.Rank;
        var members = group.Devices.OrderBy(d => rank[d.ProbeIndex] < 0 ? int.MaxValue : rank[d.ProbeIndex]).ThenBy(d => d.Address).ToList();
        return RequesterIdUnits.Of(members, ctx);
    }

    /// <summary>
    /// Why each other member is with <paramref name="device"/>, one sentence per member: the bond on the path between
    /// their units (alias/quirk inside a unit, else the first acs-path/multifunction bond leaving the device's unit
    /// toward the member's), in group order.
    /// </summary>
    public static IReadOnlyList<MemberBond> MemberBonds(GroupUnits units, PciAddress device)
    {
        ArgumentNullException.ThrowIfNull(units);
        var list = new List<MemberBond>();
        if (units.UnitOf(device) is not { } mine) return list;
        foreach (var unit in units.Units)
        {
            foreach (var other in unit.Devices)
            {
                if (other == device) continue;
                if (unit.Index == mine.Index)
                {
                    // The bond between the two if there is one, else one naming the other member.
                    var inside = units.Bonds.FirstOrDefault(x => !x.BetweenUnits && (x.Device == other && x.Other == device || x.Device == device && x.Other == other))
                        ?? units.Bonds.FirstOrDefault(x => !x.BetweenUnits && x.DeviceUnit == mine.Index && (x.Device == other || x.Other == other))
                        ?? units.Bonds.First(x => !x.BetweenUnits && x.DeviceUnit == mine.Index);
                    string text = inside.Via == other || inside.Via == device
                        ? $"{(inside.Via == other ? device : other).ToShortString()} reaches the IOMMU through {inside.Via!.Value.ToShortString()}, which {OwnerRole(inside)}: they cannot be told apart"
                        : $"{device.ToShortString()} and {other.ToShortString()} {SharedIdReason(inside)}: they cannot be told apart";
                    list.Add(new MemberBond(other, inside.Kind, text));
                    continue;
                }
                var step = FirstBondOnPath(units, mine.Index, unit.Index);
                string v = step?.Via?.ToShortString() ?? "?";
                var kind = step?.Kind ?? BondKind.AcsPath;
                list.Add(new MemberBond(other, kind, kind == BondKind.Multifunction
                    ? $"{device.ToShortString()} and {other.ToShortString()} share no requester ID; they are together because {v} is multifunction without ACS"
                    : $"{device.ToShortString()} and {other.ToShortString()} share no requester ID; they are together because {v} lacks ACS isolation"));
            }
        }
        return list;
    }

    /// <summary>
    /// The guest address spaces a VMM with a virtual IOMMU (nested translation, iommufd) needs for a group: one per
    /// requester-ID unit. A unit of several devices must share one (the IOMMU cannot tell them apart); single-device
    /// units of a shared group could each have their own. Empty for a group of one device (nothing to choose).
    /// </summary>
    public static IReadOnlyList<GuestAddressSpace> AddressSpaces(GroupUnits units)
    {
        ArgumentNullException.ThrowIfNull(units);
        var list = new List<GuestAddressSpace>();
        if (units.Units.Sum(u => u.Devices.Count) < 2) return list;
        foreach (var u in units.Units)
        {
            if (u.Devices.Count > 1)
            {
                var b = units.Bonds.First(x => !x.BetweenUnits && x.DeviceUnit == u.Index);
                list.Add(new GuestAddressSpace(u.Devices, true,
                    $"{string.Join(", ", u.Devices.Select(a => a.ToShortString()))} share a requester ID ({b.Kind.Name()} through {b.Via?.ToShortString()}): one guest address space"));
                continue;
            }
            var bond = units.BondsOfUnit(u.Index).FirstOrDefault();
            string why = bond switch
            {
                null => "no bond known",
                { Kind: BondKind.Multifunction } => $"in the group because {bond.Via?.ToShortString()} is multifunction without ACS",
                _ => $"in the group because {bond.Via?.ToShortString()} lacks ACS isolation",
            };
            list.Add(new GuestAddressSpace(u.Devices, false,
                $"{u.Devices[0].ToShortString()} has a requester ID of its own ({why}): it could have its own guest address space, in the same VM"));
        }
        return list;
    }

    /// <summary>The first bond on the path from unit <paramref name="from"/> to unit <paramref name="to"/> (the bonds between units form a tree): the one leaving the asked device's unit.</summary>
    private static GroupBond? FirstBondOnPath(GroupUnits units, int from, int to)
    {
        // Breadth-first over the unit tree; the bonds between units form a spanning tree, so the path is unique.
        var prev = new Dictionary<int, GroupBond>();
        var queue = new Queue<int>();
        queue.Enqueue(from);
        var seen = new HashSet<int> { from };
        while (queue.Count > 0)
        {
            int u = queue.Dequeue();
            if (u == to) break;
            foreach (var b in units.BondsOfUnit(u))
            {
                int v = b.DeviceUnit == u ? b.OtherUnit : b.DeviceUnit;
                if (!seen.Add(v)) continue;
                prev[v] = b;
                queue.Enqueue(v);
            }
        }
        if (!prev.TryGetValue(to, out var bond)) return null;
        for (int u = to; ;)
        {
            var b = prev[u];
            int back = b.DeviceUnit == u ? b.OtherUnit : b.DeviceUnit;
            if (back == from) return b;
            u = back;
        }
    }

    private static string OwnerRole(GroupBond bond)
    {
        string rid = bond.RequesterId is { } r ? $"{r >> 8:x2}:{(r >> 3) & 0x1f:x2}.{r & 7:x}" : "its requester ID";
        return bond.Through switch
        {
            DmaAliasVia.PciBridge or DmaAliasVia.HiddenPcieBridge => $"takes ownership of its requests as {rid} (PCIe-to-PCI bridge)",
            DmaAliasVia.PcieBridge or DmaAliasVia.ConventionalBridge => $"forwards its requests with its own ID {rid}",
            DmaAliasVia.AliasQuirk => $"shares requester ID {rid} with it by a DMA alias quirk",
            _ => $"issues its DMA ({rid})",
        };
    }

    /// <summary>Why two devices of one unit reach the IOMMU with one requester ID, from an alias or quirk bond.</summary>
    public static string SharedIdReason(GroupBond bond)
    {
        ArgumentNullException.ThrowIfNull(bond);
        string via = bond.Via?.ToShortString() ?? "?";
        string rid = bond.RequesterId is { } r ? $"{r >> 8:x2}:{(r >> 3) & 0x1f:x2}.{r & 7:x}" : "one requester ID";
        return bond.Through switch
        {
            DmaAliasVia.PciBridge => $"are behind PCIe-to-PCI bridge {via} and reach the IOMMU as {rid}",
            DmaAliasVia.HiddenPcieBridge => $"are behind bridge {via} (a PCIe-to-PCI bridge hiding its PCIe capability) and reach the IOMMU as {rid}",
            DmaAliasVia.PcieBridge => $"are behind PCI-to-PCIe bridge {via}, whose requests carry its own ID {rid}",
            DmaAliasVia.ConventionalBridge => $"are behind conventional PCI bridge {via}, whose requests carry its own ID {rid}",
            DmaAliasVia.AliasQuirk => $"share requester ID {rid} by a DMA alias quirk of {via}",
            _ => $"reach the IOMMU as {via} ({rid}), the device that issues their DMA",
        };
    }
}
