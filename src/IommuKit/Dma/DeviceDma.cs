using System.Runtime.CompilerServices;
using IommuKit.Core;
using IommuKit.Paging;

namespace IommuKit.Dma;

/// <summary>Gives a device of an <see cref="IommuCore"/> its DMA API (<c>iommu_setup_dma_ops</c>).</summary>
public static class IommuCoreDmaExtensions
{
    /// <summary>
    /// The DMA API of <paramref name="device"/>, bound to its group's current default domain and following it: after
    /// a type change the next call maps into the new default domain (what a driver re-probed after
    /// <c>iommu_group_store_type</c> sees); while the group is owned by a user (VFIO) the API refuses; after
    /// <see cref="IommuCore.RemoveDevice"/> or <see cref="DeviceDma.Dispose"/> it refuses for good.
    /// </summary>
    /// <param name="memory">Where <see cref="DeviceDma.AllocCoherent"/> takes pages; optional.</param>
    /// <param name="clock">The flush queue's clock for DMA-FQ domains (<see cref="TimeProvider.System"/> when null; a
    /// <c>FakeTimeProvider</c> lets a test fire the 10 ms flush timeout by hand).</param>
    /// <param name="dmaMask">The device's DMA mask (<c>dma_set_mask</c>).</param>
    /// <exception cref="ArgumentNullException">A null core or device.</exception>
    public static DeviceDma DmaApiFor(this IommuCore core, IommuDevice device, IDmaPageAllocator? memory = null,
        TimeProvider? clock = null, ulong dmaMask = ulong.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(core);
        ArgumentNullException.ThrowIfNull(device);
        return new DeviceDma(core, device, memory, clock ?? TimeProvider.System, dmaMask);
    }
}

/// <summary>
/// One device's DMA API over whatever default domain its group has now (drivers/iommu/dma-iommu.c behind
/// <c>dma_map_page</c>): strict for a DMA domain, lazy (flush queue) for DMA-FQ, pass-through for identity. Get it
/// with <see cref="IommuCoreDmaExtensions.DmaApiFor"/>.
/// </summary>
/// <remarks>
/// <para><b>Following the group:</b> every call compares the device's attached domain with the one this API is bound
/// to (one reference compare on the hot path). When the default domain changed (a sysfs type write allocated a new one
/// and freed the old), the API rebinds: IOVAs handed out before belong to the freed domain, the device faults on them,
/// and <see cref="UnmapSingle"/> refuses them with <see cref="Errno.ENOENT"/>. While the group's current domain is not
/// its default one (a VFIO owner attached its blocking or user domain) maps fail and unmaps return
/// <see cref="Errno.EBUSY"/>; after the device left the core, or after <see cref="Dispose"/>, <see cref="Errno.ENODEV"/>.</para>
/// <para><b>Errors:</b> every call returns an <see cref="IommuResult"/> (the errno and a one-line reason), as
/// <see cref="DmaApi"/> does; exceptions are for programming errors only (a direction of None, a coherent allocation
/// without a page allocator).</para>
/// <para><b>Sharing:</b> the IOVA allocator and flush queue belong to the domain (the kernel's <c>iommu_dma_cookie</c>)
/// and are shared by every device of the group. Invalidations go to the domain, which fans out to every IOMMU unit it
/// is attached to (<see cref="IommuDomain.InvalidateRange"/>).</para>
/// <para><b>Threading:</b> map and unmap may run on many threads; a rebind is serialised by a lock and publishes the
/// new binding atomically.</para>
/// </remarks>
public sealed class DeviceDma : IDisposable
{
    private static readonly ConditionalWeakTable<IommuDomain, DomainCookie> s_cookies = new();

    private readonly IommuCore _core;
    private readonly IommuDevice _device;
    private readonly IDmaPageAllocator? _memory;
    private readonly TimeProvider _clock;
    private readonly Lock _bindLock = new();
    private volatile Binding? _binding;
    private ulong _dmaMask;
    private volatile bool _disposed;

    internal DeviceDma(IommuCore core, IommuDevice device, IDmaPageAllocator? memory, TimeProvider clock, ulong dmaMask)
    {
        _core = core;
        _device = device;
        _memory = memory;
        _clock = clock;
        _dmaMask = dmaMask;
    }

    /// <summary>The device this API maps for.</summary>
    public IommuDevice Device => _device;

    /// <summary>The domain the last call was bound to (null before the first call or when refused).</summary>
    public IommuDomain? Domain => _binding?.Domain;

    /// <summary>The mode of the current binding: Strict (DMA), Lazy (DMA-FQ), Identity; Blocked before any binding.</summary>
    public DmaMode Mode => _binding?.Mode ?? DmaMode.Blocked;

    /// <summary>The flush queue of a lazy binding (shared by the domain's devices), else null.</summary>
    public FlushQueue? FlushQueue => _binding?.Api?.FlushQueue;

    /// <summary>
    /// <c>dma_map_single</c>: maps [phys, phys + size) for DMA in <paramref name="dir"/> into the group's current default
    /// domain and sets <paramref name="dmaAddress"/> (<see cref="DmaApi.MappingError"/> on failure). Fails with ENODEV
    /// (device gone or API disposed), EBUSY (a user domain owns the group), or <see cref="DmaApi.MapSingle"/>'s errno.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dir"/> is <see cref="DmaDirection.None"/>.</exception>
    public IommuResult MapSingle(ulong phys, ulong size, DmaDirection dir, out ulong dmaAddress)
    {
        var b = Bind(out IommuResult refused);
        if (b is null)
        {
            dmaAddress = DmaApi.MappingError;
            return refused;
        }
        if (b.Api is null) return MapDirect(phys, size, dir, out dmaAddress);
        return b.Api.MapSingle(phys, size, dir, out dmaAddress);
    }

    /// <summary>
    /// <c>dma_unmap_single</c> of what <see cref="MapSingle"/> returned. Fails with ENOENT when the address is not
    /// mapped in the current default domain (it was mapped into a domain a type change has freed since), EBUSY or
    /// ENODEV as for <see cref="MapSingle"/>. Strict: invalidates every unit the domain is attached to before the IOVA
    /// is reused; lazy: queues the IOVA.
    /// </summary>
    public IommuResult UnmapSingle(ulong dmaAddress, ulong size, DmaDirection dir)
    {
        var b = Bind(out IommuResult refused);
        if (b is null) return refused;
        if (b.Api is null) return IommuResult.Ok;
        return b.Api.UnmapSingle(dmaAddress, size, dir);
    }

    /// <summary><c>dma_alloc_coherent</c> in the current default domain (see <see cref="DmaApi.AllocCoherent"/>):
    /// <paramref name="phys"/> is the buffer's CPU address and <paramref name="dmaHandle"/> its DMA address (0 and
    /// <see cref="DmaApi.MappingError"/> on failure).</summary>
    /// <exception cref="InvalidOperationException">No page allocator was given (a setup error).</exception>
    public IommuResult AllocCoherent(ulong size, out ulong phys, out ulong dmaHandle)
    {
        dmaHandle = DmaApi.MappingError;
        phys = 0;
        if (_memory is null) throw new InvalidOperationException($"{_device.Name}: coherent allocations need a page allocator");
        var b = Bind(out IommuResult refused);
        if (b is null) return refused;
        if (b.Api is not null) return b.Api.AllocCoherent(size, out phys, out dmaHandle);
        ulong pages = size == 0 ? 0 : _memory.AllocatePages((size + 4095) & ~4095UL);
        if (pages == 0)
            return IommuResult.Fail(size == 0 ? Errno.EINVAL : Errno.ENOMEM, $"{_device.Name}: coherent allocation of 0x{size:x} bytes: {(size == 0 ? "empty" : "no pages left")}");
        phys = dmaHandle = pages;
        return IommuResult.Ok;
    }

    /// <summary>Stops the API: every later call is refused with ENODEV. The domain's shared state stays with the domain.</summary>
    public void Dispose() => _disposed = true;

    private IommuResult MapDirect(ulong phys, ulong size, DmaDirection dir, out ulong dmaAddress)
    {
        _ = DmaApi.DirectionToProt(dir); // a bad direction is the same programming error in every mode
        // dma-direct (identity domain): the address must be reachable with the mask; no bounce buffering.
        if (size == 0 || size - 1 > _dmaMask || phys > _dmaMask - (size - 1))
        {
            dmaAddress = DmaApi.MappingError;
            return IommuResult.Fail(size == 0 ? Errno.EINVAL : Errno.EIO,
                $"{_device.Name}: DMA map of 0x{size:x} bytes at 0x{phys:x}: {(size == 0 ? "empty buffer" : $"not reachable with DMA mask 0x{_dmaMask:x} (no bounce buffering)")}");
        }
        dmaAddress = phys;
        return IommuResult.Ok;
    }

    /// <summary>The binding for the device's current domain, rebinding when it changed; null (and the reason in
    /// <paramref name="refused"/>) when refused.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Binding? Bind(out IommuResult refused)
    {
        refused = default;
        var b = _binding;
        var attached = _device.AttachedDomain;
        if (b is not null && ReferenceEquals(attached, b.Domain) && attached.Type == b.Type && !_disposed && !attached.Freed &&
            _device.Group is not null)
            return b;
        return Rebind(out refused);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private Binding? Rebind(out IommuResult refused)
    {
        refused = default;
        lock (_bindLock)
        {
            if (_disposed || _device.Group is not { } group || _device.IommuDriver is null)
            {
                _binding = null;
                refused = IommuResult.Fail(Errno.ENODEV, _disposed
                    ? $"{_device.Name}: this DMA API was disposed"
                    : $"{_device.Name}: the device is not behind an IOMMU of this core any more");
                return null;
            }
            var state = group.Snapshot();
            if (state.Domain is null || state.Domain != state.DefaultDomain || _device.AttachedDomain != state.DefaultDomain)
            {
                _binding = null;
                // A user (VFIO) owns the group: the kernel unbinds the DMA-API driver first.
                refused = IommuResult.Fail(Errno.EBUSY, $"{_device.Name}: group {group.Id} is attached to a domain other than its default one (owned by a user such as VFIO)");
                return null;
            }
            var dom = state.DefaultDomain;
            if (_binding is { } cur && cur.Domain == dom && cur.Type == dom.Type) return cur;
            DmaApi? api = null;
            DmaMode mode;
            switch (dom.Type)
            {
                case IommuDomainType.Identity or IommuDomainType.Platform:
                    mode = DmaMode.Identity;
                    break;
                case IommuDomainType.Dma or IommuDomainType.DmaFq when dom.PageTable is { } table:
                {
                    mode = dom.Type == IommuDomainType.DmaFq ? DmaMode.Lazy : DmaMode.Strict;
                    var cookie = s_cookies.GetValue(dom, d => new DomainCookie(d, table, _clock));
                    var reserved = new List<IovaReservedRegion>();
                    foreach (var r in _core.IovaReservedRegions(_device)) reserved.Add(new IovaReservedRegion(r.Start, r.Length));
                    api = new DmaApi(dom, table, cookie.Iovad, mode, _dmaMask, reserved, cookie.FlushQueue(mode), _memory,
                        deviceName: _device.Name);
                    break;
                }
                default:
                    _binding = null;
                    refused = IommuResult.Fail(Errno.EINVAL, $"{_device.Name}: the default domain {dom} has no DMA API (type {dom.Type.SysfsName()})");
                    return null;
            }
            var b = new Binding(dom, dom.Type, mode, api);
            _binding = b;
            return b;
        }
    }

    // Type is the domain's type when bound: DMA -> DMA-FQ changes it in place, and the binding follows (lazy unmaps).
    private sealed record Binding(IommuDomain Domain, IommuDomainType Type, DmaMode Mode, DmaApi? Api);

    /// <summary>The kernel's <c>iommu_dma_cookie</c>: one IOVA allocator (and, for DMA-FQ, one flush queue) per domain.</summary>
    private sealed class DomainCookie(IommuDomain domain, IIoPageTable table, TimeProvider clock)
    {
        private readonly Lock _fqLock = new();
        private FlushQueue? _fq;

        public IovaAllocator Iovad { get; } = new(table.PageSizeBitmap & (~table.PageSizeBitmap + 1), 1);

        public FlushQueue? FlushQueue(DmaMode mode)
        {
            if (mode != DmaMode.Lazy) return null;
            lock (_fqLock) return _fq ??= new FlushQueue(domain, Iovad, clock);
        }
    }
}
