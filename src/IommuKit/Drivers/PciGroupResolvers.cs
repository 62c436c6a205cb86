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

    /// <summary>
    /// A recorded partition with the kernel's numbers (<see cref="Machine.KernelGroups"/>): like
    /// <see cref="Partition"/>, but a set's group gets the number the kernel gave it, and a device in no set gets a
    /// group numbered above every recorded one, so that the replayed core's group ids are the kernel's. A number that
    /// cannot be had (in use, or beyond <see cref="IommuCore.MaxGroupId"/>) falls back to the lowest free id.
    /// </summary>
    public static PciGroupResolver Numbered(IEnumerable<KernelGroup> groups, PciTopology topology)
    {
        ArgumentNullException.ThrowIfNull(groups);
        ArgumentNullException.ThrowIfNull(topology);
        var setOf = new Dictionary<PciAddress, KernelGroup>();
        int above = 0;
        foreach (var g in groups)
        {
            foreach (var a in g.Devices) setOf[a] = g;
            above = Math.Max(above, g.Id + 1 > 0 ? g.Id + 1 : int.MaxValue);
        }
        return (pci, ctx) =>
        {
            if (!setOf.TryGetValue(pci.Address, out var set))
                return ctx.AllocateInRange(above, IommuCore.MaxGroupId - 1) ?? ctx.Allocate();
            foreach (var a in set.Devices)
            {
                if (a == pci.Address || topology.Find(a) is not { } other) continue;
                if (ctx.GroupOf(other) is { } g) return g;
            }
            return ctx.AllocateInRange(set.Id, set.Id) ?? ctx.Allocate();
        };
    }
}
