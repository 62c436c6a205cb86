namespace IommuKit.Paging;

/// <summary>
/// Invalidates the IOTLB entries one domain left in the hardware it is attached to: the kernel's
/// <c>iommu_iotlb_sync</c> for a gathered range and <c>iommu_flush_iotlb_all</c>. The DMA layer and the flush queue
/// call it after clearing page-table entries; an emulated unit (<c>Simulation.IommuHardware.InvalidatorFor</c>), a
/// core domain attached to several units (<c>Core.IommuDomain</c>) or a VMM's own IOMMU model implements it.
/// </summary>
/// <remarks>Implementations must be thread-safe: unmaps on many threads and the flush queue's timer call it at once.
/// After a call returns, no translation of the invalidated range that was cached before the call may be used.</remarks>
public interface IIotlbInvalidator
{
    /// <summary>Invalidates cached translations overlapping [<paramref name="iova"/>, <paramref name="iova"/> +
    /// <paramref name="size"/>) (bytes; page-selective invalidation).</summary>
    void InvalidateRange(ulong iova, ulong size);

    /// <summary>Invalidates every cached translation of the domain (domain-selective invalidation).</summary>
    void InvalidateAll();
}
