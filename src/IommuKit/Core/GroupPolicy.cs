using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Core;

/// <summary>
/// How the core treats the devices of one IOMMU group (<see cref="IommuCore.Policy"/>). <see cref="Linux"/>, the
/// default, is the kernel's rule: one domain for the whole group. <see cref="SplitByRequesterId"/> lets the owner of a
/// whole group give different domains to its requester-ID units (<see cref="RequesterIdUnits"/>): the devices the
/// IOMMU tells apart but that are grouped only because they are not isolated from each other (acs-path, multifunction
/// bonds). Devices sharing a requester ID (alias, quirk bonds) always share a domain. See docs/core.md
/// "The two bonds inside a group".
/// </summary>
/// <remarks>Thread-safe: the grouping context (not thread-safe, it memoizes) is used under a leaf lock, taken with a
/// group lock held (lock order: group lock → policy lock).</remarks>
public sealed class GroupPolicy
{
    private readonly GroupingContext? _grouping;
    private readonly object _lock = new(); // leaf: guards the grouping context's memo tables

    private GroupPolicy(GroupingContext? grouping) => _grouping = grouping;

    /// <summary>The kernel's behaviour: one domain per group; attaching one device of a shared group is EINVAL.</summary>
    public static GroupPolicy Linux { get; } = new(null);

    /// <summary>
    /// Opt-in: requester-ID units of a wholly owned group may be attached to different domains. <paramref name="grouping"/>
    /// is the context the groups were formed with (the one the driver's <c>device_group</c> used).
    /// </summary>
    public static GroupPolicy SplitByRequesterId(GroupingContext grouping)
    {
        ArgumentNullException.ThrowIfNull(grouping);
        return new GroupPolicy(grouping);
    }

    /// <summary>Units of a group may be given different domains.</summary>
    public bool SplitsByRequesterId => _grouping is not null;

    public override string ToString() => SplitsByRequesterId ? "split-by-requester-id" : "linux";

    /// <summary>
    /// The requester-ID units and bonds of a group's members (in join order), or null when the policy does not split
    /// a member is not a PCI function of the policy's topology (a platform device: no alias walk to consult), or the
    /// group is above <see cref="RequesterIdUnits.MaxMembers"/>.
    /// </summary>
    internal GroupUnits? UnitsOf(IReadOnlyList<IommuDevice> members)
    {
        if (_grouping is not { } ctx || members.Count == 0 || members.Count > RequesterIdUnits.MaxMembers) return null;
        var pci = new List<PciDevice>(members.Count);
        foreach (var d in members)
        {
            if (d.Pci is not { } p || ctx.Topology.Find(p.Address) != p) return null;
            pci.Add(p);
        }
        lock (_lock) return RequesterIdUnits.Of(pci, ctx);
    }
}
