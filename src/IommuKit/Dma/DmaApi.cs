using System.Numerics;
using System.Runtime.CompilerServices;
using IommuKit.Core;
using IommuKit.Paging;

namespace IommuKit.Dma;

/// <summary>
/// The DMA API of one device over its domain: drivers/iommu/dma-iommu.c (<c>iommu_dma_map_page</c>,
/// <c>iommu_dma_unmap_page</c>, <c>iommu_dma_map_sg</c>, <c>iommu_dma_alloc</c>) for a Translated domain, pass-through
/// for an identity domain, and physical addresses that fault for a blocked one.
/// </summary>
/// <remarks>
/// <para><b>Ownership:</b> the page table, IOVA allocator and flush queue belong to the domain and may be shared by the
/// DmaApi of every device in it (one per device, as the kernel's per-device DMA ops over the domain's cookie). A Lazy
/// DmaApi created without a flush queue creates and owns one (disposed with it).</para>
/// <para><b>Rules:</b> direction becomes permission (dma_info_to_prot: ToDevice = read, FromDevice = write,
/// Bidirectional = both); buffers keep their offset inside the IOVA granule (iova_offset); the IOVA limit is the DMA mask
/// clipped by the bus limit and the table's aperture (spec 10.3); 64-bit devices first try below 4 GiB without flushing
/// the caches and, on the first failure, stop doing so for good (pci_32bit_workaround, spec 10.3); reserved regions are
/// reserved in the allocator at construction (spec 8.4); strict unmap invalidates the IOTLB range before the IOVA is
/// freed, lazy unmap queues it (spec 10.4).</para>
/// <para><b>Errors:</b> every map, unmap, alloc and free returns an <see cref="IommuResult"/>, like the rest of the
/// core: <see cref="Errno.Ok"/>, or the errno and one line naming the device and the reason (EINVAL for an impossible
/// buffer or an empty list, ENOMEM when the IOVA space below the mask is exhausted or no pages are left, EIO when the
/// table refuses or, without translation, the mask cannot reach the buffer, ENOENT when unmapping what this API did not
/// map; nothing is changed then). A failed map leaves its out address at <see cref="MappingError"/>
/// (DMA_MAPPING_ERROR). Exceptions are for programming errors only: null arguments, a direction of
/// <see cref="DmaDirection.None"/>, a coherent allocation without an <see cref="IDmaPageAllocator"/>. Success
/// allocates nothing.</para>
/// <para><b>Threading:</b> the map and unmap methods may be called from many threads at once: the table, allocator,
/// IOTLB and flush queue are thread-safe, and the only state the DmaApi changes while mapping is the 32-bit-first flag
/// (a benign race, as in the kernel). Its settings (<see cref="DmaMask"/>, <see cref="CoherentDmaMask"/>,
/// <see cref="MaxSegmentSize"/>, <see cref="SegmentBoundaryMask"/>, <see cref="Log"/>) are the driver's to set before it
/// maps, as dma_set_mask is called at probe; changing them while other threads map is not supported (a map may see
/// the new mask with the old limit).</para>
/// </remarks>
public sealed class DmaApi : IDisposable
{
    /// <summary>DMA_MAPPING_ERROR: the DMA address a failed map leaves in its out parameter.</summary>
    public const ulong MappingError = ulong.MaxValue;

    /// <summary>The default maximum DMA segment size of a PCI device (pci_device_add: dma_set_max_seg_size 64 KiB).</summary>
    public const uint DefaultMaxSegmentSize = 65536;

    /// <summary>The default segment boundary of a PCI device (pci_device_add: dma_set_seg_boundary 0xffffffff).</summary>
    public const ulong DefaultSegmentBoundaryMask = 0xffff_ffff;

    private const ulong Dma32Limit = 0xffff_ffff;

    private readonly IIotlbInvalidator _iotlb;
    private readonly IIoPageTable _table;
    private readonly IovaAllocator _iovad;
    private readonly DmaMode _mode;
    private readonly FlushQueue? _fq;
    private readonly bool _ownsFq;
    private readonly IDmaPageAllocator? _memory;
    private readonly ulong _granule;
    private readonly ulong _granuleMask;
    private readonly int _shift;
    private readonly ulong _apertureEnd;
    private ulong _dmaMask;
    private ulong _dmaLimit; // DmaLimitFor(_dmaMask), kept with the mask so the map path does not recompute it
    private ulong _coherentDmaMask;
    private readonly ulong _busDmaLimit;
    private volatile bool _pci32bitWorkaround;

    /// <summary>Sets up the DMA API of one device (iommu_dma_init_domain + iommu_setup_dma_ops).</summary>
    /// <param name="iotlb">Invalidates the domain's IOTLB entries wherever the domain is attached (strict unmaps and the
    /// flush queue go there): <c>IommuHardware.InvalidatorFor(domainId)</c> for one emulated unit, or a core
    /// <c>IommuDomain</c>, which fans out to every unit it is attached to.</param>
    /// <param name="table">The domain's page table (its lowest page size must equal the allocator's granule).</param>
    /// <param name="iovad">The domain's IOVA allocator.</param>
    /// <param name="mode">Strict, Lazy, Identity or Blocked.</param>
    /// <param name="dmaMask">The device's DMA mask (dma_set_mask), e.g. 0xffffffff for 32-bit, ulong.MaxValue for 64.</param>
    /// <param name="reservedRegions">Ranges kept out of the IOVA space (spec 8.4); SW_MSI ones are skipped.</param>
    /// <param name="flushQueue">The domain's flush queue for Lazy mode; created (and owned) when null.</param>
    /// <param name="memory">Where coherent buffers are allocated (<see cref="AllocCoherent"/>); optional otherwise.</param>
    /// <param name="forceDac">iommu.forcedac=1: skip the 32-bit-first attempt.</param>
    /// <param name="busDmaLimit">The bus DMA limit (bus_dma_limit), 0 = none.</param>
    /// <param name="deviceName">For messages.</param>
    /// <exception cref="ArgumentException">The allocator's granule differs from the table's smallest page, or the
    /// allocator refuses a reservation (its cap on reserved ranges).</exception>
    public DmaApi(IIotlbInvalidator iotlb, IIoPageTable table, IovaAllocator iovad, DmaMode mode, ulong dmaMask,
        IReadOnlyList<IovaReservedRegion>? reservedRegions = null, FlushQueue? flushQueue = null,
        IDmaPageAllocator? memory = null, bool forceDac = false, ulong busDmaLimit = 0, string deviceName = "device")
    {
        ArgumentNullException.ThrowIfNull(iotlb);
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(iovad);
        _iotlb = iotlb;
        _table = table;
        _iovad = iovad;
        _mode = mode;
        _memory = memory;
        _busDmaLimit = busDmaLimit;
        DeviceName = deviceName;

        // iommu_dma_init_domain: the granule is the smallest page size and must match the IOVA domain's.
        ulong bitmap = table.PageSizeBitmap;
        _granule = bitmap & (~bitmap + 1);
        if (_granule == 0 || _granule != iovad.Granule)
            ThrowHelper.ThrowArgument(nameof(iovad),
                $"IOVA granule 0x{iovad.Granule:x} does not match the table's smallest page 0x{_granule:x} (Incompatible range for DMA domain)");
        _granuleMask = _granule - 1;
        _shift = BitOperations.TrailingZeroCount(_granule);
        _apertureEnd = table.IovaBits >= 64 ? ulong.MaxValue : (1UL << table.IovaBits) - 1;
        SetMasks(dmaMask);
        // Every PCI device starts with pci_32bit_workaround = !forcedac (spec 10.1).
        _pci32bitWorkaround = !forceDac;

        if (mode == DmaMode.Lazy)
        {
            _fq = flushQueue ?? new FlushQueue(iotlb, iovad);
            _ownsFq = flushQueue is null;
        }

        if (mode is DmaMode.Strict or DmaMode.Lazy && reservedRegions is not null)
            ReserveRegions(reservedRegions);
    }

    /// <summary>Name used in messages.</summary>
    public string DeviceName { get; }

    /// <summary>Strict, Lazy, Identity or Blocked, as constructed.</summary>
    public DmaMode Mode => _mode;

    /// <summary>The IOVA granule in bytes (smallest page size of the table).</summary>
    public ulong Granule => _granule;

    /// <summary>The flush queue (Lazy mode only).</summary>
    public FlushQueue? FlushQueue => _fq;

    /// <summary>Maximum length of one merged DMA segment of <see cref="MapSg"/> (dma_get_max_seg_size).</summary>
    public uint MaxSegmentSize { get; set; } = DefaultMaxSegmentSize;

    /// <summary>DMA segments never cross a multiple of (mask + 1) (dma_get_seg_boundary); mask + 1 is a power of two.</summary>
    public ulong SegmentBoundaryMask { get; set; } = DefaultSegmentBoundaryMask;

    /// <summary>Called with each notice the kernel would log (e.g. "Using 64-bit DMA addresses").</summary>
    public Action<string>? Log { get; set; }

    /// <summary>True while streaming and coherent allocations first try below 4 GiB (pci_32bit_workaround). Cleared
    /// for good the first time such a try fails.</summary>
    public bool TriesBelow4GFirst => _pci32bitWorkaround;

    /// <summary>The streaming DMA mask (dma_set_mask). Setting it also sets the coherent mask, like dma_set_mask_and_coherent.</summary>
    public ulong DmaMask
    {
        get => _dmaMask;
        set => SetMasks(value);
    }

    /// <summary>The coherent DMA mask (dma_set_coherent_mask), used by <see cref="AllocCoherent"/>.</summary>
    public ulong CoherentDmaMask
    {
        get => _coherentDmaMask;
        set
        {
            CheckMask(value);
            _coherentDmaMask = value;
        }
    }

    /// <summary>
    /// The highest IOVA this device may be given for <paramref name="mask"/>: the mask, the bus DMA limit and the aperture
    /// end, whichever is lowest (iommu_dma_alloc_iova, spec 10.3).
    /// </summary>
    public ulong DmaLimitFor(ulong mask)
    {
        ulong limit = mask;
        if (_busDmaLimit != 0 && _busDmaLimit < limit)
            limit = _busDmaLimit;
        return Math.Min(limit, _apertureEnd);
    }

    /// <summary>
    /// Maps [phys, phys + size) for DMA in <paramref name="dir"/> (dma_map_page / iommu_dma_map_page) and sets
    /// <paramref name="dmaAddress"/> to the DMA address (same offset inside the granule as <paramref name="phys"/>).
    /// Fails with EINVAL (empty or impossible buffer), ENOMEM (no IOVA space below the mask) or EIO (the table refuses;
    /// without translation, the mask cannot reach the buffer); <paramref name="dmaAddress"/> is then
    /// <see cref="MappingError"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dir"/> is <see cref="DmaDirection.None"/>.</exception>
    public IommuResult MapSingle(ulong phys, ulong size, DmaDirection dir, out ulong dmaAddress)
    {
        Errno e = MapCore(phys, size, DirectionToProt(dir), _dmaMask, _dmaLimit, out dmaAddress);
        return e == Errno.Ok ? default : MapFailed(e, phys, size, _dmaMask);
    }

    /// <summary>
    /// Unmaps what <see cref="MapSingle"/> returned (same address and size). Strict: clears the PTEs, invalidates the
    /// IOTLB range, then frees the IOVA. Lazy: clears the PTEs and queues the IOVA in the flush queue. Fails with
    /// ENOENT when [dmaAddress, dmaAddress + size) is not mapped as a whole by this API's table (a driver bug: the
    /// kernel WARNs), or EINVAL for an impossible size or a range that would split a larger mapping; nothing is changed
    /// then.
    /// </summary>
    public IommuResult UnmapSingle(ulong dmaAddress, ulong size, DmaDirection dir)
    {
        _ = dir; // the kernel uses it for cache maintenance and swiotlb only
        Errno e = UnmapCore(dmaAddress, size);
        return e == Errno.Ok ? default : UnmapFailed(e, dmaAddress, size);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private IommuResult MapFailed(Errno e, ulong phys, ulong size, ulong mask) => IommuResult.Fail(e, e switch
    {
        Errno.EINVAL => $"{DeviceName}: DMA map of 0x{size:x} bytes at 0x{phys:x}: empty or impossible buffer",
        Errno.ENOMEM => $"{DeviceName}: DMA map of 0x{size:x} bytes: no IOVA space left below the DMA limit (mask 0x{mask:x})",
        _ when _mode is DmaMode.Identity or DmaMode.Blocked =>
            $"{DeviceName}: DMA map of 0x{size:x} bytes at 0x{phys:x}: not reachable with DMA mask 0x{mask:x} (no bounce buffering)",
        _ => $"{DeviceName}: DMA map of 0x{size:x} bytes at 0x{phys:x}: the page table refused ({e})",
    });

    [MethodImpl(MethodImplOptions.NoInlining)]
    private IommuResult UnmapFailed(Errno e, ulong dmaAddress, ulong size) => IommuResult.Fail(e, e == Errno.ENOENT
        ? $"{DeviceName}: DMA unmap of 0x{size:x} bytes at 0x{dmaAddress:x}: not mapped by this DMA API (driver bug; the kernel WARNs)"
        : $"{DeviceName}: DMA unmap of 0x{size:x} bytes at 0x{dmaAddress:x}: impossible size, or it would split a larger mapping");

    /// <summary>
    /// Maps a scatter list into one contiguous IOVA range (iommu_dma_map_sg): each entry keeps its offset inside the
    /// granule and is laid out after the previous one's granule-aligned end, padded so no segment crosses
    /// <see cref="SegmentBoundaryMask"/>; then entries that continue exactly where the previous DMA segment ends are
    /// merged up to <see cref="MaxSegmentSize"/> (__finalise_sg). <paramref name="segments"/> is the number of DMA
    /// segments (written to the first entries' DmaAddress/DmaLength), 0 on failure: EINVAL (empty list or entry),
    /// ENOMEM (no IOVA space), EIO (the table refused; in Identity and Blocked modes, an entry the DMA mask cannot reach).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dir"/> is <see cref="DmaDirection.None"/>.</exception>
    public IommuResult MapSg(Span<ScatterEntry> sg, DmaDirection dir, out int segments)
    {
        int n = MapSgCore(sg, dir);
        segments = Math.Max(n, 0);
        return n > 0 ? default : SgFailed((Errno)(-n), sg.Length);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private IommuResult SgFailed(Errno e, int entries) => IommuResult.Fail(e, e switch
    {
        Errno.EINVAL => $"{DeviceName}: DMA map of a scatter list of {entries} entries: the list or an entry is empty",
        Errno.ENOMEM => $"{DeviceName}: DMA map of a scatter list of {entries} entries: no IOVA space left below the DMA limit",
        _ when _mode is DmaMode.Identity or DmaMode.Blocked =>
            $"{DeviceName}: DMA map of a scatter list of {entries} entries: an entry is not reachable with DMA mask 0x{_dmaMask:x}",
        _ => $"{DeviceName}: DMA map of a scatter list of {entries} entries: the page table refused ({e})",
    });

    /// <summary>The kernel's iommu_dma_map_sg: the segment count, or a negative errno.</summary>
    private int MapSgCore(Span<ScatterEntry> sg, DmaDirection dir)
    {
        IommuProt prot = DirectionToProt(dir);
        if (sg.IsEmpty)
            return -(int)Errno.EINVAL;
        if (_mode is DmaMode.Identity or DmaMode.Blocked)
            return MapSgDirect(sg);

        // Layout pass: offsets of each entry inside the single allocation (the kernel's first loop).
        ulong mask = SegmentBoundaryMask;
        ulong iovaLen = 0;
        for (int i = 0; i < sg.Length; i++)
        {
            ref ScatterEntry s = ref sg[i];
            if (s.Length == 0)
                return -(int)Errno.EINVAL;
            ulong off = s.Phys & _granuleMask;
            ulong sLength = AlignUp(off + s.Length);
            // Pad the previous entry so this one starts on a boundary when it would otherwise cross it. The IOVA range
            // starts on a boundary whenever its size exceeds the boundary (size alignment), so offsets suffice.
            ulong pad = (mask - iovaLen + 1) & mask;
            if (pad != 0 && pad < sLength - 1)
                iovaLen = checked(iovaLen + pad);
            s.IovaOffset = iovaLen;
            s.MappedLength = sLength;
            iovaLen = checked(iovaLen + sLength);
        }

        ulong iova = AllocIova(iovaLen, _dmaLimit);
        if (iova == 0)
            return -(int)Errno.ENOMEM;

        for (int i = 0; i < sg.Length; i++)
        {
            ref ScatterEntry s = ref sg[i];
            Errno err = _table.Map(iova + s.IovaOffset, s.Phys & ~_granuleMask, s.MappedLength, prot);
            if (err != Errno.Ok)
            {
                // Undo: nothing was handed out yet, so no IOTLB entry can exist for the new PTEs.
                for (int j = 0; j < i; j++)
                    _table.Unmap(iova + sg[j].IovaOffset, sg[j].MappedLength);
                _iovad.Free(iova >> _shift, iovaLen >> _shift);
                return -(int)Errno.EIO;
            }
        }
        return FinaliseSg(sg, iova, iovaLen);
    }

    /// <summary>Unmaps a list mapped by <see cref="MapSg"/> (pass the same entries, all of them): one IOTLB invalidation
    /// (strict) or one queue entry (lazy) for the whole IOVA range. Fails with ENOENT when the list was not mapped by
    /// this API (a driver bug): an entry whose first or last byte is not mapped is found before anything is unmapped,
    /// and nothing is changed then.</summary>
    public IommuResult UnmapSg(Span<ScatterEntry> sg, DmaDirection dir)
    {
        _ = dir;
        if (sg.IsEmpty || _mode is DmaMode.Identity or DmaMode.Blocked)
            return default;
        ulong iova = sg[0].DmaAddress & ~_granuleMask; // entry 0 always starts DMA segment 0 at IOVA offset 0
        ref ScatterEntry last = ref sg[^1];
        ulong iovaLen = last.IovaOffset + last.MappedLength;
        for (int i = 0; i < sg.Length; i++)
        {
            // Check first (the table's own lookup): a list this API did not map must change nothing.
            ulong a = iova + sg[i].IovaOffset;
            if (sg[i].MappedLength == 0 || !_table.TryIovaToPhys(a, out _, out _) ||
                !_table.TryIovaToPhys(a + sg[i].MappedLength - 1, out _, out _))
                return UnmapFailed(Errno.ENOENT, a, sg[i].MappedLength);
        }
        for (int i = 0; i < sg.Length; i++)
        {
            Errno err = _table.Unmap(iova + sg[i].IovaOffset, sg[i].MappedLength);
            if (err != Errno.Ok)
                return UnmapFailed(err == Errno.EINVAL ? Errno.EINVAL : Errno.ENOENT, iova + sg[i].IovaOffset, sg[i].MappedLength);
        }
        ReleaseIova(iova, iovaLen);
        return default;
    }

    /// <summary>
    /// Allocates a zeroed, page-aligned coherent buffer of <paramref name="size"/> bytes (rounded up to the granule) and
    /// maps it bidirectionally below <see cref="CoherentDmaMask"/> (iommu_dma_alloc): <paramref name="phys"/> is its
    /// physical (CPU) address and <paramref name="dmaHandle"/> its DMA address. Fails with EINVAL (size 0 or beyond the
    /// aperture), ENOMEM (no pages, or no IOVA space) or EIO (the table refused); then <paramref name="phys"/> is 0 and
    /// <paramref name="dmaHandle"/> is <see cref="MappingError"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">No <see cref="IDmaPageAllocator"/> was given (a setup error).</exception>
    public IommuResult AllocCoherent(ulong size, out ulong phys, out ulong dmaHandle)
    {
        if (_memory is null)
            ThrowHelper.ThrowNoMemory(DeviceName);
        dmaHandle = MappingError;
        phys = 0;
        if (size == 0 || size > _apertureEnd)
            return IommuResult.Fail(Errno.EINVAL, $"{DeviceName}: coherent allocation of 0x{size:x} bytes: empty or beyond the aperture");
        size = AlignUp(size);
        ulong pages = _memory.AllocatePages(size);
        if (pages == 0)
            return IommuResult.Fail(Errno.ENOMEM, $"{DeviceName}: coherent allocation of 0x{size:x} bytes: no pages left");
        Errno e = MapCore(pages, size, IommuProt.Read | IommuProt.Write, _coherentDmaMask, DmaLimitFor(_coherentDmaMask), out ulong dma);
        if (e != Errno.Ok)
        {
            _memory.FreePages(pages, size);
            return MapFailed(e, pages, size, _coherentDmaMask);
        }
        dmaHandle = dma;
        phys = pages;
        return default;
    }

    /// <summary>Frees a buffer from <see cref="AllocCoherent"/> (dma_free_coherent): unmaps, then returns the pages.
    /// Fails like <see cref="UnmapSingle"/> (the pages are then kept).</summary>
    /// <exception cref="InvalidOperationException">No <see cref="IDmaPageAllocator"/> was given (a setup error).</exception>
    public IommuResult FreeCoherent(ulong size, ulong phys, ulong dmaHandle)
    {
        if (_memory is null)
            ThrowHelper.ThrowNoMemory(DeviceName);
        size = AlignUp(size);
        Errno e = UnmapCore(dmaHandle, size);
        if (e != Errno.Ok)
            return UnmapFailed(e, dmaHandle, size);
        _memory.FreePages(phys, size);
        return default;
    }

    /// <summary>Disposes the flush queue if this API created it (flushing everything it holds).</summary>
    public void Dispose()
    {
        if (_ownsFq)
            _fq!.Dispose();
    }

    /// <summary>dma_info_to_prot: the permission a direction needs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static IommuProt DirectionToProt(DmaDirection dir)
    {
        switch (dir)
        {
            case DmaDirection.Bidirectional: return IommuProt.Read | IommuProt.Write;
            case DmaDirection.ToDevice: return IommuProt.Read;
            case DmaDirection.FromDevice: return IommuProt.Write;
            default:
                ThrowHelper.ThrowBadDirection(dir);
                return IommuProt.None;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Errno MapCore(ulong phys, ulong size, IommuProt prot, ulong mask, ulong limit, out ulong dma)
    {
        dma = MappingError;
        if (_mode is DmaMode.Identity or DmaMode.Blocked)
        {
            dma = MapDirect(phys, size, mask);
            return dma == MappingError ? (size == 0 ? Errno.EINVAL : Errno.EIO) : Errno.Ok;
        }
        // __iommu_dma_map: map whole granules, keep the buffer's offset inside the first one.
        ulong off = phys & _granuleMask;
        // Overflow case: size + off or the rounding passing 2^64 means an impossible buffer.
        if (size == 0 || size > ulong.MaxValue - off - _granuleMask)
            return Errno.EINVAL;
        ulong alignedSize = AlignUp(size + off);
        ulong iova = AllocIova(alignedSize, limit);
        if (iova == 0)
            return Errno.ENOMEM;
        if (_table.Map(iova, phys - off, alignedSize, prot) != Errno.Ok)
        {
            _iovad.Free(iova >> _shift, alignedSize >> _shift); // never visible to the device: no flush needed
            return Errno.EIO;
        }
        dma = iova + off;
        return Errno.Ok;
    }

    /// <summary>Ok, ENOENT (not mapped as a whole by this API's table: nothing changed) or EINVAL (impossible size, or
    /// a range that would split a larger page).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Errno UnmapCore(ulong dmaAddress, ulong size)
    {
        if (_mode is DmaMode.Identity or DmaMode.Blocked)
            return Errno.Ok;
        ulong off = dmaAddress & _granuleMask;
        ulong iova = dmaAddress - off;
        if (size == 0 || size > ulong.MaxValue - off - _granuleMask)
            return Errno.EINVAL;
        ulong alignedSize = AlignUp(size + off);
        Errno err = _table.Unmap(iova, alignedSize);
        if (err != Errno.Ok)
            return err == Errno.EINVAL ? Errno.EINVAL : Errno.ENOENT;
        ReleaseIova(iova, alignedSize);
        return Errno.Ok;
    }

    /// <summary>After the PTEs are cleared: strict = invalidate then free; lazy = queue (spec 10.4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ReleaseIova(ulong iova, ulong size)
    {
        if (_fq is not null)
        {
            _fq.Queue(iova >> _shift, size >> _shift);
        }
        else
        {
            _iotlb.InvalidateRange(iova, size);
            _iovad.Free(iova >> _shift, size >> _shift);
        }
    }

    /// <summary>iommu_dma_alloc_iova: returns the IOVA in bytes or 0. <paramref name="limit"/> is
    /// <see cref="DmaLimitFor"/> of the mask in use.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong AllocIova(ulong size, ulong limit)
    {
        ulong pages = size >> _shift;
        // Spec 10.3: a PCI device with a >32-bit limit first tries below 4 GiB without flushing the rcaches.
        if (_pci32bitWorkaround && limit > Dma32Limit)
        {
            ulong pfn32 = _iovad.Alloc(pages, Dma32Limit >> _shift, flushRcache: false);
            if (pfn32 != 0)
                return pfn32 << _shift;
            DisableDma32First(limit);
        }
        ulong pfn = _iovad.Alloc(pages, limit >> _shift, flushRcache: true);
        return pfn << _shift;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void DisableDma32First(ulong limit)
    {
        // Cleared permanently for this device; the kernel logs "Using %d-bit DMA addresses" with bits_per(limit).
        _pci32bitWorkaround = false;
        Log?.Invoke($"{DeviceName}: Using {64 - BitOperations.LeadingZeroCount(limit)}-bit DMA addresses");
    }

    private ulong MapDirect(ulong phys, ulong size, ulong mask)
    {
        // dma-direct: the address must be reachable with the mask (no bounce buffering is modelled).
        if (size == 0 || size - 1 > mask || phys > mask - (size - 1))
            return MappingError;
        return phys;
    }

    private int MapSgDirect(Span<ScatterEntry> sg)
    {
        for (int i = 0; i < sg.Length; i++)
        {
            ref ScatterEntry s = ref sg[i];
            if (s.Length == 0)
                return -(int)Errno.EINVAL; // as in translated modes (MapSg's contract)
            ulong dma = MapDirect(s.Phys, s.Length, _dmaMask);
            if (dma == MappingError)
                return -(int)Errno.EIO; // dma_direct_map_sg: not reachable with the mask
            s.DmaAddress = dma;
            s.DmaLength = s.Length;
        }
        return sg.Length;
    }

    /// <summary>__finalise_sg: fill in DMA segments, merging entries that continue the previous segment.</summary>
    private int FinaliseSg(Span<ScatterEntry> sg, ulong iova, ulong iovaLen)
    {
        ulong segMask = SegmentBoundaryMask;
        uint maxLen = MaxSegmentSize;
        int cur = -1;
        uint curLen = 0;
        int count = 0;
        for (int i = 0; i < sg.Length; i++)
        {
            ref ScatterEntry s = ref sg[i];
            ulong sIovaOff = s.Phys & _granuleMask;
            uint sLength = s.Length;
            ulong sIovaLen = (i + 1 < sg.Length ? sg[i + 1].IovaOffset : iovaLen) - s.IovaOffset;
            ulong dmaAddr = iova + s.IovaOffset;
            s.DmaAddress = MappingError;
            s.DmaLength = 0;
            // Merge when: there is a segment to append to, this entry starts on a granule, is not at a segment
            // boundary, and the result stays within the maximum segment size.
            if (curLen != 0 && sIovaOff == 0 && (dmaAddr & segMask) != 0 && maxLen - curLen >= sLength)
            {
                curLen += sLength;
            }
            else
            {
                cur++;
                curLen = sLength;
                count++;
                sg[cur].DmaAddress = dmaAddr + sIovaOff;
            }
            sg[cur].DmaLength = curLen;
            // An entry that does not end on its granule end cannot be continued.
            if (sLength + sIovaOff < sIovaLen)
                curLen = 0;
        }
        return count;
    }

    private void ReserveRegions(IReadOnlyList<IovaReservedRegion> regions)
    {
        for (int i = 0; i < regions.Count; i++)
        {
            IovaReservedRegion r = regions[i];
            if (r.SoftwareMsi || r.Length == 0)
                continue; // iova_reserve_iommu_regions skips IOMMU_RESV_SW_MSI
            // Overflow case: a region running past 2^64 is clipped at the top of the space.
            ulong last = r.Start > ulong.MaxValue - (r.Length - 1) ? ulong.MaxValue : r.Start + (r.Length - 1);
            if (r.Start > _apertureEnd)
                continue;
            last = Math.Min(last, _apertureEnd);
            if (!_iovad.Reserve(r.Start >> _shift, last >> _shift))
                ThrowHelper.ThrowArgument(nameof(regions),
                    $"{DeviceName}: failed to reserve IOVA [0x{r.Start:x}, 0x{last:x}] (the allocator's reserved-range cap was reached)");
        }
    }

    private void SetMasks(ulong mask)
    {
        CheckMask(mask);
        _dmaMask = mask;
        _dmaLimit = DmaLimitFor(mask);
        _coherentDmaMask = mask;
    }

    private void CheckMask(ulong mask)
    {
        // dma_set_mask: a mask is 2^n - 1 and must cover at least one granule.
        if (mask < _granuleMask || (mask & (mask + 1)) != 0)
            ThrowHelper.ThrowArgument(nameof(mask), $"DMA mask 0x{mask:x} is not of the form 2^n - 1 covering a granule");
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong AlignUp(ulong value) => (value + _granuleMask) & ~_granuleMask;
}
