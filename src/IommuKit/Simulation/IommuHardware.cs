using System.Runtime.CompilerServices;
using IommuKit.Paging;

namespace IommuKit.Simulation;

/// <summary>
/// One emulated IOMMU unit (a VT-d DRHD / AMD-Vi / SMMU instance): a context table keyed by the 16-bit requester ID, an
/// <see cref="Iotlb"/> tagged by domain id, a fault log with a fault handler, and the interrupt (MSI) window.
/// </summary>
/// <remarks>
/// <para><b>Translate</b> (the hardware's DMA-remapping path): writes into the MSI window 0xfee00000-0xfeefffff are
/// interrupt requests and are never translated (VT-d 3.14 "Handling Requests to Interrupt Address Range"); otherwise the
/// requester's context entry decides: none = fault NoContext, Blocked = fault Blocked, Identity = pass-through,
/// Translated = IOTLB lookup, then on a miss a page-table walk that fills the IOTLB with the 4 KiB page.</para>
/// <para><b>Threading:</b> <see cref="Translate"/> takes no lock (context entries are immutable objects published with
/// volatile writes; the IOTLB is thread-safe). <see cref="SetContext"/> may run concurrently with DMA: a request sees
/// either the old or the new entry. Faults are recorded under <c>_faultLock</c> (cold path); the fault handler and the
/// interrupt handler are called outside any lock, possibly from several threads at once.</para>
/// <para>Changing a context does not flush the IOTLB: entries are tagged by domain id, so a device moved to another
/// domain cannot hit the old domain's entries; flush a domain before reusing its id for a different table.</para>
/// </remarks>
public sealed class IommuHardware
{
    /// <summary>First address of the x86 interrupt (MSI) window.</summary>
    public const ulong MsiWindowStart = 0xfee0_0000;
    /// <summary>Size of the MSI window in bytes (0xfee00000-0xfeefffff inclusive).</summary>
    public const ulong MsiWindowSize = 0x10_0000;
    /// <summary>Faults kept in <see cref="Faults"/>; older ones are dropped (real units have a few fault recording registers).</summary>
    public const int MaxFaultLog = 1024;
    /// <summary>Interrupts kept in <see cref="Interrupts"/>.</summary>
    public const int MaxInterruptLog = 1024;

    private const ulong GranuleMask = 4096 - 1;

    private readonly IommuContext?[] _contexts = new IommuContext?[1 << 16];
    private readonly Iotlb _iotlb;

    // _faultLock guards _faults, _interrupts (bounded logs).
    private readonly Lock _faultLock = new();
    private readonly Queue<DmaFault> _faults = new();
    private readonly Queue<MsiMessage> _interrupts = new();
    private long _faultCount;
    private long _interruptCount;

    /// <summary>Creates a unit with an empty context table (every requester faults NoContext) and an empty IOTLB.</summary>
    /// <param name="iotlbSets">Sets of the IOTLB (see <see cref="Iotlb"/>).</param>
    /// <param name="name">Name for messages, e.g. "dmar0".</param>
    public IommuHardware(int iotlbSets = 4096, string name = "dmar0")
    {
        _iotlb = new Iotlb(iotlbSets);
        Name = name;
    }

    public string Name { get; }

    /// <summary>The unit's IOTLB (owned by this unit).</summary>
    public Iotlb Iotlb => _iotlb;

    /// <summary>Called for every fault after it is recorded (the kernel's report_iommu_fault). May run concurrently.</summary>
    public Action<DmaFault>? FaultHandler { get; set; }

    /// <summary>Called for every interrupt message (write into the MSI window). May run concurrently.</summary>
    public Action<MsiMessage>? InterruptHandler { get; set; }

    /// <summary>Total faults since creation (including those dropped from the bounded log).</summary>
    public long FaultCount => Interlocked.Read(ref _faultCount);

    /// <summary>Total interrupt messages since creation.</summary>
    public long InterruptCount => Interlocked.Read(ref _interruptCount);

    /// <summary>Snapshot of the last <see cref="MaxFaultLog"/> faults, oldest first.</summary>
    public IReadOnlyList<DmaFault> Faults
    {
        get { lock (_faultLock) return _faults.ToArray(); }
    }

    /// <summary>Snapshot of the last <see cref="MaxInterruptLog"/> interrupt messages, oldest first.</summary>
    public IReadOnlyList<MsiMessage> Interrupts
    {
        get { lock (_faultLock) return _interrupts.ToArray(); }
    }

    /// <summary>Installs the context entry for <paramref name="requesterId"/> (the ID the IOMMU sees: bus &lt;&lt; 8 | devfn,
    /// after DMA aliasing).</summary>
    public void SetContext(ushort requesterId, IommuContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Volatile.Write(ref _contexts[requesterId], context);
    }

    /// <summary>Removes the context entry: the requester then faults with <see cref="DmaFaultReason.NoContext"/>.</summary>
    public void ClearContext(ushort requesterId) => Volatile.Write(ref _contexts[requesterId], null);

    /// <summary>The current context entry, or null.</summary>
    public IommuContext? GetContext(ushort requesterId) => Volatile.Read(ref _contexts[requesterId]);

    /// <summary>
    /// Translates one DMA request of <paramref name="requesterId"/> at <paramref name="iova"/>. The result is valid up to
    /// the end of the 4 KiB page containing <paramref name="iova"/>. A fault is recorded and reported before returning.
    /// </summary>
    /// <param name="write">True for a DMA write (device to memory), false for a read.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public DmaTranslation Translate(ushort requesterId, ulong iova, bool write)
    {
        // VT-d 3.14: requests to 0xFEEx_xxxx are interrupt requests, never DMA-remapped (wrap-around makes this one compare).
        if (iova - MsiWindowStart < MsiWindowSize)
            return TranslateMsiWindow(requesterId, iova, write);
        IommuContext? ctx = Volatile.Read(ref _contexts[requesterId]);
        if (ctx is not null && ctx.Kind == IommuContextKind.Translated)
        {
            if (_iotlb.TryLookup(ctx.DomainId, iova, out ulong phys, out IommuProt prot))
            {
                IommuProt need = write ? IommuProt.Write : IommuProt.Read;
                if ((prot & need) == need)
                    return new DmaTranslation(phys, DmaTranslationKind.Memory, DmaFaultReason.None);
                return RaiseFault(requesterId, iova, write, DmaFaultReason.Permission, ctx.DomainId);
            }
            return WalkAndFill(ctx, requesterId, iova, write);
        }
        return TranslateUntranslated(ctx, requesterId, iova, write);
    }

    /// <summary>Records an interrupt message (called by the bus for a write into the MSI window) and calls
    /// <see cref="InterruptHandler"/>.</summary>
    public void DeliverInterrupt(ushort requesterId, ulong address, uint data)
    {
        var msg = new MsiMessage(requesterId, address, data);
        Interlocked.Increment(ref _interruptCount);
        lock (_faultLock)
        {
            if (_interrupts.Count == MaxInterruptLog)
                _interrupts.Dequeue();
            _interrupts.Enqueue(msg);
        }
        InterruptHandler?.Invoke(msg);
    }

    /// <summary>Invalidates the IOTLB entries of <paramref name="domainId"/> overlapping [iova, iova + size)
    /// (page-selective invalidation, the kernel's iotlb_sync for a gathered range).</summary>
    public void FlushRange(int domainId, ulong iova, ulong size) => _iotlb.InvalidateRange(domainId, iova, size);

    /// <summary>Invalidates every IOTLB entry of <paramref name="domainId"/> (domain-selective, flush_iotlb_all).</summary>
    public void FlushDomain(int domainId) => _iotlb.InvalidateDomain(domainId);

    /// <summary>Invalidates the whole IOTLB (global invalidation).</summary>
    public void FlushAll() => _iotlb.InvalidateAll();

    /// <summary>Forgets the recorded faults and interrupts (counters keep counting).</summary>
    public void ClearLogs()
    {
        lock (_faultLock)
        {
            _faults.Clear();
            _interrupts.Clear();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private DmaTranslation WalkAndFill(IommuContext ctx, ushort requesterId, ulong iova, bool write)
    {
        // Above the format's input size: the walk would index past the top level (VT-d: address beyond MGAW).
        if ((iova >> ctx.ApertureShift) != 0)
            return RaiseFault(requesterId, iova, write, DmaFaultReason.OutsideAperture, ctx.DomainId);
        // Read the invalidation generation before walking: if an unmap's flush lands between the walk and the fill,
        // the fill is dropped instead of caching a translation that was just invalidated.
        long generation = _iotlb.Generation;
        if (!ctx.Table!.TryIovaToPhys(iova, out ulong phys, out IommuProt prot))
            return RaiseFault(requesterId, iova, write, DmaFaultReason.NotPresent, ctx.DomainId);
        // Cache the 4 KiB page that contains the IOVA: TryIovaToPhys does not report the leaf size, and a 4 KiB entry
        // is always correct (a large page just takes several entries).
        _iotlb.Fill(ctx.DomainId, iova & ~GranuleMask, GranuleMask + 1, phys & ~GranuleMask, prot, generation);
        IommuProt need = write ? IommuProt.Write : IommuProt.Read;
        if ((prot & need) != need)
            return RaiseFault(requesterId, iova, write, DmaFaultReason.Permission, ctx.DomainId);
        return new DmaTranslation(phys, DmaTranslationKind.Memory, DmaFaultReason.None);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private DmaTranslation TranslateUntranslated(IommuContext? ctx, ushort requesterId, ulong iova, bool write)
    {
        if (ctx is null)
            return RaiseFault(requesterId, iova, write, DmaFaultReason.NoContext, -1);
        if (ctx.Kind == IommuContextKind.Identity)
            return new DmaTranslation(iova, DmaTranslationKind.Memory, DmaFaultReason.None);
        return RaiseFault(requesterId, iova, write, DmaFaultReason.Blocked, -1);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private DmaTranslation TranslateMsiWindow(ushort requesterId, ulong iova, bool write)
    {
        // Interrupt requests bypass DMA remapping whatever the context (interrupt remapping is a separate table);
        // a read of the window is not a valid request (VT-d: unsupported request, reported as a fault).
        if (write)
            return new DmaTranslation(iova, DmaTranslationKind.Interrupt, DmaFaultReason.None);
        return RaiseFault(requesterId, iova, write, DmaFaultReason.Permission, GetContext(requesterId)?.DomainId ?? -1);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private DmaTranslation RaiseFault(ushort requesterId, ulong iova, bool write, DmaFaultReason reason, int domainId)
    {
        var fault = new DmaFault(requesterId, iova, write, reason, domainId);
        Interlocked.Increment(ref _faultCount);
        lock (_faultLock)
        {
            if (_faults.Count == MaxFaultLog)
                _faults.Dequeue();
            _faults.Enqueue(fault);
        }
        FaultHandler?.Invoke(fault);
        return new DmaTranslation(0, DmaTranslationKind.Fault, reason);
    }
}
