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
    public static PciGroupResolver Kernel(GroupingContext grouping)
    {
        // The two callbacks of the last context, made once: a core passes the same context to every probe, and a
        // boot of 131,072 devices otherwise allocated three objects per device for them.
        ContextCallbacks? last = null;
        return (pci, ctx) =>
        {
            var c = Volatile.Read(ref last);
            if (c is null || !ReferenceEquals(c.Context, ctx)) Volatile.Write(ref last, c = new ContextCallbacks(ctx));
            return PciGrouping.DeviceGroup(pci, grouping, c.GroupOf, c.Allocate);
        };
    }

    private sealed class ContextCallbacks
    {
        public ContextCallbacks(IGroupContext context)
        {
            Context = context;
            GroupOf = p => context.GroupOf(p);
            Allocate = () => context.Allocate();
        }

        public IGroupContext Context { get; }
        public Func<PciDevice, IommuGroup?> GroupOf { get; }
        public Func<IommuGroup> Allocate { get; }
    }

    /// <summary>
    /// A recorded partition (for instance the groups a kernel reported): a device joins the group of any probed
    /// device of its set, else a new group; a device in no set gets its own group.
    /// </summary>
    public static PciGroupResolver Partition(IEnumerable<IReadOnlyList<PciAddress>> sets, PciTopology topology)
    {
        ArgumentNullException.ThrowIfNull(sets);
        return FromSets(sets.Select(s => (Number: (int?)null, Devices: s)), topology);
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
        return FromSets(groups.Select(g => (Number: (int?)g.Id, g.Devices)), topology);
    }

    /// <summary>
    /// The one partition replay: a device joins the group of any probed device of its set; else a new group, under the
    /// set's number when it has one (<see cref="IGroupContext.AllocateInRange"/>, the kernel's <c>ida_alloc_range</c>),
    /// and for a device in no set above every recorded number (the lowest free id when there are none).
    /// </summary>
    private static PciGroupResolver FromSets(IEnumerable<(int? Number, IReadOnlyList<PciAddress> Devices)> sets, PciTopology topology)
    {
        ArgumentNullException.ThrowIfNull(topology);
        var setOf = new Dictionary<PciAddress, (int? Number, IReadOnlyList<PciAddress> Devices)>();
        int above = 0;
        foreach (var s in sets)
        {
            foreach (var a in s.Devices) setOf[a] = s;
            if (s.Number is { } n) above = Math.Max(above, n < int.MaxValue ? n + 1 : int.MaxValue);
        }
        return (pci, ctx) =>
        {
            if (!setOf.TryGetValue(pci.Address, out var set))
                return (above > 0 ? ctx.AllocateInRange(above, IommuCore.MaxGroupId - 1) : null) ?? ctx.Allocate();
            foreach (var a in set.Devices)
            {
                if (a == pci.Address || topology.Find(a) is not { } other) continue;
                if (ctx.GroupOf(other) is { } g) return g;
            }
            return (set.Number is { } id ? ctx.AllocateInRange(id, id) : null) ?? ctx.Allocate();
        };
    }
}
