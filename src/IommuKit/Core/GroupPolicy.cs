using IommuKit.Pci;

namespace IommuKit.Core;

/// <summary>
/// One requester-ID unit of a group as the core needs it: members the IOMMU cannot tell apart (they must share a
/// domain). Derived outside the core from the grouping mechanism (<c>Grouping.RequesterIdUnits</c>, through
/// <c>Host.RequesterIdPolicy</c>), so Core does not depend on Grouping.
/// </summary>
/// <param name="Devices">The members of the unit.</param>
/// <param name="SharedBecause">For a unit of several devices: why they share a requester ID ("alias through 02:00.0"); null for one device.</param>
/// <param name="InseparableBecause">Non-null when the unit is joined to the rest of the group by a bond that shares a
/// requester ID (alias, quirk): it cannot have a domain of its own. Null when only acs-path/multifunction bonds join it.</param>
public sealed record RequesterIdUnitInfo(IReadOnlyList<PciAddress> Devices, string? SharedBecause = null, string? InseparableBecause = null);

/// <summary>
/// The requester-ID units of a group's members (given in join order), or null when they cannot be told (a member the
/// resolver does not know). Called with the group lock held: it must not call into the core.
/// </summary>
public delegate IReadOnlyList<RequesterIdUnitInfo>? RequesterIdUnitResolver(IReadOnlyList<PciDevice> members);

/// <summary>
/// How the core treats the devices of one IOMMU group (<see cref="IommuCore.Policy"/>). <see cref="Linux"/>, the
/// default, is the kernel's rule: one domain for the whole group. <see cref="SplitByRequesterId"/> lets the owner of a
/// whole group give different domains to its requester-ID units: the devices the IOMMU tells apart but that are grouped
/// only because they are not isolated from each other (acs-path, multifunction bonds). Devices sharing a requester ID
/// (alias, quirk bonds) always share a domain. See docs/core.md "The two bonds inside a group".
/// </summary>
public sealed class GroupPolicy
{
    /// <summary>Most members a group may have for the split (a cap on what input can grow).</summary>
    public const int MaxMembers = 4096;

    private readonly RequesterIdUnitResolver? _units;

    private GroupPolicy(RequesterIdUnitResolver? units) => _units = units;

    /// <summary>The kernel's behaviour: one domain per group; attaching one device of a shared group is EINVAL.</summary>
    public static GroupPolicy Linux { get; } = new(null);

    /// <summary>
    /// Opt-in: requester-ID units of a wholly owned group may be attached to different domains. <paramref name="units"/>
    /// tells a group's units (for PCI groups formed by <c>pci_device_group</c>: <c>Host.RequesterIdPolicy.SplitByRequesterId</c>).
    /// </summary>
    public static GroupPolicy SplitByRequesterId(RequesterIdUnitResolver units)
    {
        ArgumentNullException.ThrowIfNull(units);
        return new GroupPolicy(units);
    }

    /// <summary>Units of a group may be given different domains.</summary>
    public bool SplitsByRequesterId => _units is not null;

    /// <summary><c>linux</c> or <c>split-by-requester-id</c>.</summary>
    public override string ToString() => SplitsByRequesterId ? "split-by-requester-id" : "linux";

    /// <summary>
    /// The requester-ID units of a group's members (in join order), or null when the policy does not split, a member is
    /// not a PCI function (a platform device: no alias walk to consult), the group is above <see cref="MaxMembers"/>, or
    /// the resolver cannot tell.
    /// </summary>
    internal IReadOnlyList<RequesterIdUnitInfo>? UnitsOf(IReadOnlyList<IommuDevice> members)
    {
        if (_units is not { } resolve || members.Count == 0 || members.Count > MaxMembers) return null;
        var pci = new List<PciDevice>(members.Count);
        foreach (var d in members)
        {
            if (d.Pci is not { } p) return null;
            pci.Add(p);
        }
        return resolve(pci);
    }

    /// <summary>The unit holding <paramref name="address"/>, or null.</summary>
    internal static RequesterIdUnitInfo? UnitOf(IReadOnlyList<RequesterIdUnitInfo> units, PciAddress address)
    {
        foreach (var u in units)
            foreach (var a in u.Devices)
                if (a == address) return u;
        return null;
    }
}
