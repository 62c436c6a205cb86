namespace IommuKit.Paging;

/// <summary>IOMMU mapping permissions, the kernel's <c>IOMMU_READ</c>… values (include/linux/iommu.h).</summary>
[Flags]
public enum IommuProt
{
    /// <summary>No access.</summary>
    None = 0,
    /// <summary>IOMMU_READ: the device may read.</summary>
    Read = 0x1,
    /// <summary>IOMMU_WRITE: the device may write.</summary>
    Write = 0x2,
    /// <summary>IOMMU_CACHE: cache-coherent access.</summary>
    Cache = 0x4,
    /// <summary>IOMMU_NOEXEC: no instruction fetch.</summary>
    NoExec = 0x8,
    /// <summary>IOMMU_MMIO: device memory.</summary>
    Mmio = 0x10,
    /// <summary>IOMMU_PRIV: privileged access only.</summary>
    Priv = 0x20,
}

/// <summary>The page-table formats IommuKit implements.</summary>
public enum IoPageTableFormat
{
    /// <summary>x86-64 / VT-d second-level 4-level table: 48-bit IOVA, 4 KiB, 2 MiB and 1 GiB pages.</summary>
    X86_64Level4,
    /// <summary>x86-64 5-level table: 57-bit IOVA, same page sizes.</summary>
    X86_64Level5,
    /// <summary>ARM LPAE (VMSAv8-64) stage-1, 4 KiB granule, 48-bit IOVA: 4 KiB, 2 MiB and 1 GiB blocks.</summary>
    ArmLpae4K,
}

/// <summary>
/// An IO page table: the translation structure of one paging domain (the kernel's <c>io_pgtable_ops</c>).
/// Ranges are half-open internally; sizes are in bytes.
/// </summary>
/// <remarks>
/// Map/unmap follow iommufd's strict rules: mapping over an existing mapping is refused with
/// <see cref="Errno.EEXIST"/>, unmapping a range that is not entirely mapped is refused with <see cref="Errno.ENOENT"/>,
/// and a failed call changes nothing. Implementations are safe for concurrent use from several threads.
/// </remarks>
public interface IIoPageTable
{
    /// <summary>The PTE format of the table.</summary>
    IoPageTableFormat Format { get; }

    /// <summary>Bitmap of supported page sizes in bytes (bit n set = 2^n-byte pages); the lowest set bit is the granule.</summary>
    ulong PageSizeBitmap { get; }

    /// <summary>Width of the input address space: IOVAs are in [0, 2^IovaBits).</summary>
    int IovaBits { get; }

    /// <summary>
    /// Maps <paramref name="size"/> bytes at <paramref name="iova"/> to <paramref name="phys"/>, using the largest page
    /// sizes that alignment allows. Returns <see cref="Errno.Ok"/>, <see cref="Errno.EINVAL"/> (misaligned, zero size,
    /// overflow, outside the IOVA space, no permission), <see cref="Errno.EEXIST"/> (overlaps a mapping) or
    /// <see cref="Errno.ENOMEM"/> (a table cap was reached).
    /// </summary>
    Errno Map(ulong iova, ulong phys, ulong size, IommuProt prot);

    /// <summary>
    /// Unmaps exactly [iova, iova+size). Returns <see cref="Errno.ENOENT"/> when any page of the range is not mapped,
    /// and <see cref="Errno.EINVAL"/> when the range would split a large page or is misaligned.
    /// </summary>
    Errno Unmap(ulong iova, ulong size);

    /// <summary>Walks the table: the physical address and permissions for <paramref name="iova"/>, or false.</summary>
    bool TryIovaToPhys(ulong iova, out ulong phys, out IommuProt prot);

    /// <summary>
    /// Like <see cref="TryIovaToPhys(ulong, out ulong, out IommuProt)"/>, and also the size in bytes of the leaf page
    /// that maps <paramref name="iova"/> (4 KiB, 2 MiB or 1 GiB), so an IOTLB can cache the whole large page.
    /// </summary>
    bool TryIovaToPhys(ulong iova, out ulong phys, out IommuProt prot, out ulong pageSize)
    {
        pageSize = 4096;
        return TryIovaToPhys(iova, out phys, out prot);
    }

    /// <summary>Table pages currently allocated, the root included (1 for an empty table: empty tables are freed).</summary>
    int TablePageCount { get; }
}
