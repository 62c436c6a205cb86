namespace IommuKit.Dma;

/// <summary>DMA transfer direction, the kernel's <c>enum dma_data_direction</c> (same values).</summary>
public enum DmaDirection
{
    /// <summary>DMA_BIDIRECTIONAL: the device reads and writes (read + write permission).</summary>
    Bidirectional = 0,
    /// <summary>DMA_TO_DEVICE: memory to device; the device only reads (read permission).</summary>
    ToDevice = 1,
    /// <summary>DMA_FROM_DEVICE: device to memory; the device only writes (write permission).</summary>
    FromDevice = 2,
    /// <summary>DMA_NONE: not valid for a mapping.</summary>
    None = 3,
}

/// <summary>How a device's DMA API is backed: the default-domain types of spec 4.1 as the DMA layer sees them.</summary>
public enum DmaMode
{
    /// <summary>IOMMU_DOMAIN_DMA: translated; every unmap invalidates the IOTLB before the IOVA is reused.</summary>
    Strict,
    /// <summary>IOMMU_DOMAIN_DMA_FQ: translated; unmaps are queued in a <see cref="FlushQueue"/> (stale window).</summary>
    Lazy,
    /// <summary>IOMMU_DOMAIN_IDENTITY: DMA address = physical address; nothing is mapped.</summary>
    Identity,
    /// <summary>IOMMU_DOMAIN_BLOCKED: the API hands out physical addresses but every DMA faults at the IOMMU.</summary>
    Blocked,
}

/// <summary>
/// A range to keep out of the IOVA space of a DMA domain (spec 8.4, iova_reserve_iommu_regions): every reserved region
/// of the device except software-managed MSI windows, plus host-bridge windows. Bytes, half-open
/// [Start, Start + Length).
/// </summary>
/// <param name="SoftwareMsi">A SW_MSI region: not reserved in the IOVA space (the MSI cookie maps it on demand).</param>
public readonly record struct IovaReservedRegion(ulong Start, ulong Length, bool SoftwareMsi = false);

/// <summary>
/// One scatter-gather entry (<c>struct scatterlist</c>): the caller fills <see cref="Phys"/> and <see cref="Length"/>;
/// <see cref="DmaApi.MapSg"/> fills <see cref="DmaAddress"/>/<see cref="DmaLength"/> of the first N entries, where N is
/// the number of DMA segments it returns (segments may be merged). Pass the same entries to
/// <see cref="DmaApi.UnmapSg"/>.
/// </summary>
public struct ScatterEntry
{
    /// <summary>Physical address of the buffer segment (any byte alignment).</summary>
    public ulong Phys;
    /// <summary>Length of the segment in bytes.</summary>
    public uint Length;
    /// <summary>DMA address of DMA segment i (valid for i &lt; the count MapSg returned).</summary>
    public ulong DmaAddress;
    /// <summary>Length of DMA segment i in bytes; 0 for entries beyond the count.</summary>
    public uint DmaLength;

    // Layout of this entry inside the list's single IOVA allocation, kept for UnmapSg: byte offset of its first
    // granule and the granule-aligned length mapped there.
    internal ulong IovaOffset;
    internal ulong MappedLength;

    /// <summary>An entry for <paramref name="length"/> bytes at physical address <paramref name="phys"/>.</summary>
    public ScatterEntry(ulong phys, uint length)
    {
        Phys = phys;
        Length = length;
        DmaAddress = 0;
        DmaLength = 0;
        IovaOffset = 0;
        MappedLength = 0;
    }
}
