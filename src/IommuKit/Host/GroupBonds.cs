using System.Runtime.CompilerServices;
using IommuKit.Grouping;

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
    /// result has no grouping context (IOMMU off). Computed on first use and cached. Not thread-safe (the grouping
    /// context's memo tables are filled lazily).
    /// </summary>
    public static GroupUnits? Units(this GroupingResult result, ModelGroup group)
    {
        ArgumentNullException.ThrowIfNull(result);
        ArgumentNullException.ThrowIfNull(group);
        if (result.Context is not { } ctx) return null;
        if (s_cache.TryGetValue(group, out var u)) return u;
        u = RequesterIdUnits.Of(group.Devices, ctx);
        s_cache.AddOrUpdate(group, u);
        return u;
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
