using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>
/// The requester IDs a device's DMA carries, from the one alias walk (<see cref="PciGrouping.ForEachDmaAlias"/>), for
/// callers outside grouping: the drivers' hardware contexts and the bus model.
/// </summary>
public static class DmaAliasWalk
{
    /// <summary>A grouping context for <paramref name="topology"/> that is only used for alias walks: aliases depend on
    /// the devices (quirks, bridges, VMD), not on the command line or ACS, so no machine settings are needed.</summary>
    public static GroupingContext ContextFor(PciTopology topology)
    {
        ArgumentNullException.ThrowIfNull(topology);
        var machine = new Machine { Topology = topology, Origin = "dma-alias" };
        return GroupingContext.Create(topology, AcsPolicy.Create(machine, KernelCommandLine.Empty, iommuActive: true), hasIvrs: false);
    }

    /// <summary>Every requester ID of <paramref name="device"/>'s DMA, its own (or its real DMA device's) first, each once.</summary>
    public static IReadOnlyList<ushort> RequesterIds(PciDevice device, GroupingContext context)
    {
        var rids = new List<ushort>(2);
        PciGrouping.ForEachDmaAlias(device, context, (_, rid) =>
        {
            if (!rids.Contains(rid)) rids.Add(rid);
            return 0;
        });
        return rids;
    }

    /// <summary>The requester ID the IOMMU sees for <paramref name="device"/>'s requests: the last alias of the walk (a
    /// PCIe-to-PCI bridge's alias replaces the IDs below it on the wire).</summary>
    public static ushort VisibleRequesterId(PciDevice device, GroupingContext context)
    {
        ushort last = device.Address.RequesterId;
        PciGrouping.ForEachDmaAlias(device, context, (_, rid) => { last = rid; return 0; });
        return last;
    }
}
