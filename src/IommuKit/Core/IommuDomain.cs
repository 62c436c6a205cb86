using IommuKit.Paging;

namespace IommuKit.Core;

/// <summary>
/// An IOMMU domain (<c>struct iommu_domain</c>): type, owning driver, page sizes, aperture and, for paging domains,
/// the IO page table. Static domains (a driver's identity or blocked singleton) have <see cref="IsStatic"/> set.
/// </summary>
/// <remarks>
/// <see cref="Type"/> changes in place only for the DMA→DMA-FQ upgrade and the DMA-FQ→DMA downgrade, both under the
/// lock of the group using the domain. The page table is created by the driver, possibly on first attach (VT-d width
/// settles then), so <see cref="PageTable"/> may be null for a paging domain that was never attached.
/// </remarks>
public sealed class IommuDomain : IIotlbInvalidator
{
    private static int s_nextId;
    private volatile IIoPageTable? _pageTable;
    private volatile int _type;
    // The IOTLBs this domain may have entries in: one per IOMMU unit it is attached to, added by the driver on the
    // first attach to a unit and removed on the last detach. Copy-on-write under _iotlbLock (leaf), read lock-free.
    private readonly Lock _iotlbLock = new();
    private volatile IIotlbInvalidator[] _iotlbs = [];

    /// <param name="owner">The driver whose ops allocated it; null for static domains shared by a driver.</param>
    public IommuDomain(IommuDomainType type, IIommuDriver? owner, ulong pageSizeBitmap = 0, ulong apertureStart = 0, ulong apertureEnd = 0,
        bool forceAperture = false, IIoPageTable? pageTable = null, bool isStatic = false)
    {
        _type = (int)type;
        Owner = owner;
        PageSizeBitmap = pageTable?.PageSizeBitmap ?? pageSizeBitmap;
        ApertureStart = apertureStart;
        ApertureEnd = apertureEnd;
        ForceAperture = forceAperture;
        _pageTable = pageTable;
        IsStatic = isStatic;
        Id = Interlocked.Increment(ref s_nextId);
    }

    /// <summary>A process-unique number for messages and sysfs-style output. Not a hardware domain id: those belong to
    /// an IOMMU unit (a VT-d DID, an SMMU ASID), are handed out by the driver on attach and reused.</summary>
    public int Id { get; }
    /// <summary>The domain type; changes in place only between DMA and DMA-FQ (see remarks).</summary>
    public IommuDomainType Type { get => (IommuDomainType)_type; internal set => _type = (int)value; }
    /// <summary>The driver whose ops allocated it; null for domains no driver owns.</summary>
    public IIommuDriver? Owner { get; }
    /// <summary>Supported page sizes (bit n = 2^n bytes); the lowest set bit is the mapping granule; 0 for non-paging domains.</summary>
    public ulong PageSizeBitmap { get; internal set; }
    /// <summary>The mapping granule: the lowest set bit of <see cref="PageSizeBitmap"/> (<c>1UL &lt;&lt; __ffs(pgsize_bitmap)</c>), 0 when empty.</summary>
    public ulong MinPageSize => PageSizeBitmap & (~PageSizeBitmap + 1);
    /// <summary>Aperture first and last (inclusive) IOVA, <c>geometry.aperture_start/end</c>.</summary>
    public ulong ApertureStart { get; internal set; }
    /// <summary>Last IOVA of the aperture (inclusive), <c>geometry.aperture_end</c>.</summary>
    public ulong ApertureEnd { get; internal set; }

    /// <summary>The IOVA width the VT-d driver settled the domain at on its first attach (0 before); guarded by that
    /// driver's lock. A field, not a side table: a weak table entry per domain made every GC of a large boot slow.</summary>
    internal int SettledIovaBits;
    /// <summary><c>geometry.force_aperture</c>: the aperture is enforced by the hardware.</summary>
    public bool ForceAperture { get; internal set; }
    /// <summary>A driver's static singleton (identity, blocked or platform); never freed.</summary>
    public bool IsStatic { get; }

    /// <summary>The IO page table of a paging domain, null until the driver creates it.</summary>
    public IIoPageTable? PageTable => _pageTable;

    /// <summary>The flush queue was initialised (<c>iommu_dma_init_fq</c>).</summary>
    public bool FlushQueueReady { get; internal set; }

    /// <summary>Set by the core when the domain was freed (<c>iommu_domain_free</c>); a freed domain must not be attached.</summary>
    public bool Freed { get; internal set; }

    /// <summary>Installs the page table once (drivers that settle the format on first attach). Returns false when one is already set.</summary>
    public bool TrySetPageTable(IIoPageTable table)
    {
        ArgumentNullException.ThrowIfNull(table);
        if (Interlocked.CompareExchange(ref _pageTable, table, null) is not null) return false;
        PageSizeBitmap = table.PageSizeBitmap;
        return true;
    }

    /// <summary>Maps through the page table: <see cref="Errno.EINVAL"/> for a non-paging domain, <see cref="Errno.ENODEV"/> when the table is not there yet.</summary>
    public Errno Map(ulong iova, ulong phys, ulong size, IommuProt prot)
    {
        if (!Type.IsPaging()) return Errno.EINVAL; // iommu_map on a non-paging domain: WARN + -EINVAL (spec 12)
        var t = _pageTable;
        return t is null ? Errno.ENODEV : t.Map(iova, phys, size, prot);
    }

    /// <summary>
    /// <c>iommu_unmap</c> + <c>iommu_iotlb_sync</c>: clears the page-table entries of [<paramref name="iova"/>,
    /// <paramref name="iova"/> + <paramref name="size"/>) and invalidates that range in the IOTLB of every unit the
    /// domain is attached to before returning, so no device can use the old translation afterwards (the kernel's
    /// <c>iommu_unmap</c> always syncs; deferring the flush is the DMA layer's choice for DMA-FQ domains, see
    /// <c>Dma.DeviceDma</c>). EINVAL for a non-paging domain, ENODEV before the table exists, the table's error (ENOENT
    /// for a range that is not mapped as a whole) otherwise.
    /// </summary>
    public Errno Unmap(ulong iova, ulong size)
    {
        if (!Type.IsPaging()) return Errno.EINVAL;
        var t = _pageTable;
        if (t is null) return Errno.ENODEV;
        var e = t.Unmap(iova, size);
        if (e == Errno.Ok) InvalidateRange(iova, size);
        return e;
    }

    /// <summary>The IOTLBs this domain is attached to (one per IOMMU unit), as the driver registered them.</summary>
    public IReadOnlyList<IIotlbInvalidator> Iotlbs => _iotlbs;

    /// <summary>
    /// For drivers: the domain got a hardware id on a unit, whose IOTLB <paramref name="iotlb"/> invalidates; from now
    /// on <see cref="Unmap"/> and the DMA layer flush it too. Call once per unit, on the first attach there.
    /// </summary>
    public void AddIotlb(IIotlbInvalidator iotlb)
    {
        ArgumentNullException.ThrowIfNull(iotlb);
        lock (_iotlbLock) _iotlbs = [.. _iotlbs, iotlb];
    }

    /// <summary>For drivers: the domain's last device on a unit left it; stop flushing that unit. False when unknown.</summary>
    public bool RemoveIotlb(IIotlbInvalidator iotlb)
    {
        lock (_iotlbLock)
        {
            int i = Array.IndexOf(_iotlbs, iotlb);
            if (i < 0) return false;
            _iotlbs = [.. _iotlbs.AsSpan(0, i), .. _iotlbs.AsSpan(i + 1)];
            return true;
        }
    }

    /// <summary><c>iommu_iotlb_sync</c> of a range on every unit the domain is attached to.</summary>
    public void InvalidateRange(ulong iova, ulong size)
    {
        foreach (var u in _iotlbs) u.InvalidateRange(iova, size);
    }

    /// <summary><c>iommu_flush_iotlb_all</c> on every unit the domain is attached to.</summary>
    public void InvalidateAll()
    {
        foreach (var u in _iotlbs) u.InvalidateAll();
    }

    /// <summary><c>iommu_iova_to_phys</c>: identity returns the IOVA itself; an unmapped address or a table-less domain gives false.</summary>
    public bool TryIovaToPhys(ulong iova, out ulong phys)
    {
        if (Type == IommuDomainType.Identity) { phys = iova; return true; }
        phys = 0;
        var t = _pageTable;
        return t is not null && t.TryIovaToPhys(iova, out phys, out _);
    }

    /// <inheritdoc/>
    public override string ToString() => $"domain#{Id} {Type.SysfsName()}";
}
