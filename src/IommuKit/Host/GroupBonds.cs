using System.Runtime.CompilerServices;
using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Host;

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
        ArgumentNullException.ThrowIfNull(group);
        var model = report.Model;
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
    public static IReadOnlyList<(PciAddress Member, BondKind Kind, string Text)> MemberBonds(GroupUnits units, PciAddress device)
    {
        ArgumentNullException.ThrowIfNull(units);
        var list = new List<(PciAddress, BondKind, string)>();
        if (units.UnitOf(device) is not { } mine) return list;
        foreach (var unit in units.Units)
        {
            foreach (var other in unit.Devices)
            {
                if (other == device) continue;
                if (unit.Index == mine.Index)
                {
                    var inside = units.Bonds.FirstOrDefault(b => !b.BetweenUnits && b.DeviceUnit == mine.Index && (b.Device == other || b.Other == other))
                        ?? units.Bonds.First(b => !b.BetweenUnits && b.DeviceUnit == mine.Index);
                    string via = inside.Via?.ToShortString() ?? "?";
                    list.Add((other, inside.Kind, inside.Kind == BondKind.Quirk
                        ? $"{device.ToShortString()} and {other.ToShortString()} share a requester ID by a DMA alias quirk of {via}: the IOMMU cannot tell them apart"
                        : $"{device.ToShortString()} and {other.ToShortString()} reach the IOMMU with a requester ID they share through {via}: the IOMMU cannot tell them apart"));
                    continue;
                }
                var step = FirstBondOnPath(units, mine.Index, unit.Index);
                string v = step?.Via?.ToShortString() ?? "?";
                var kind = step?.Kind ?? BondKind.AcsPath;
                list.Add((other, kind, kind == BondKind.Multifunction
                    ? $"{device.ToShortString()} and {other.ToShortString()} share no requester ID; they are together because {v} is multifunction without ACS"
                    : $"{device.ToShortString()} and {other.ToShortString()} share no requester ID; they are together because {v} lacks ACS isolation"));
            }
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

    /// <summary>One line per bond, for explanations: "01:00.0 and 01:00.1 share no requester ID; they are together because 01:00.0 is multifunction without ACS".</summary>
    public static string Describe(GroupBond bond)
    {
        string a = bond.Device.ToShortString(), b = bond.Other.ToShortString(), via = bond.Via?.ToShortString() ?? "?";
        return bond.Kind switch
        {
            BondKind.Alias => $"{a} and {b} reach the IOMMU with a shared requester ID (alias through {via}): the IOMMU cannot tell them apart, they must share one domain",
            BondKind.Quirk => $"{a} and {b} share a requester ID by a DMA alias quirk of {via}: the IOMMU cannot tell them apart, they must share one domain",
            BondKind.AcsPath => $"{a} and {b} share no requester ID; they are together because {via} lacks ACS isolation (peer-to-peer DMA between them bypasses the IOMMU)",
            _ => $"{a} and {b} share no requester ID; they are together because {via} is multifunction without ACS (peer-to-peer DMA between functions bypasses the IOMMU)",
        };
    }
}
