using IommuKit.Core;
using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Drivers;

/// <summary>
/// How a driver finds the group of a PCI device: the kernel's <c>pci_device_group</c> through the grouping engine,
/// a recorded partition (the kernel's own groups from a snapshot), or one group per device.
/// </summary>
public delegate IommuGroup PciGroupResolver(PciDevice pci, IGroupContext context);

/// <summary>Ready-made <see cref="PciGroupResolver"/>s.</summary>
public static class PciGroupResolvers
{
    /// <summary>Every device alone (<c>generic_device_group</c>).</summary>
    public static PciGroupResolver OnePerDevice { get; } = (_, ctx) => ctx.Allocate();

    /// <summary>The kernel's <c>pci_device_group</c> (grouping engine) over <paramref name="grouping"/>.</summary>
    public static PciGroupResolver Kernel(GroupingContext grouping) =>
        (pci, ctx) => PciGrouping.DeviceGroup(pci, grouping, p => ctx.GroupOf(p), () => ctx.Allocate());

    /// <summary>
    /// A recorded partition (for instance the groups a kernel reported): a device joins the group of any probed
    /// device of its set, else a new group; a device in no set gets its own group.
    /// </summary>
    public static PciGroupResolver Partition(IEnumerable<IReadOnlyList<PciAddress>> sets, PciTopology topology)
    {
        var setOf = new Dictionary<PciAddress, IReadOnlyList<PciAddress>>();
        foreach (var s in sets) foreach (var a in s) setOf[a] = s;
        return (pci, ctx) =>
        {
            if (setOf.TryGetValue(pci.Address, out var set))
            {
                foreach (var a in set)
                {
                    if (a == pci.Address || topology.Find(a) is not { } other) continue;
                    if (ctx.GroupOf(other) is { } g) return g;
                }
            }
            return ctx.Allocate();
        };
    }
}
