using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
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
/// Translated = IOTLB lookup, then on a miss a page-table walk that fills the IOTLB with the leaf it found (4 KiB,
/// or a 2 MiB slice of a large page).</para>
/// <para><b>Threading:</b> <see cref="Translate"/> takes no lock unless it faults (context entries are immutable objects published with
/// volatile writes; the IOTLB is thread-safe). <see cref="SetContext"/> may run concurrently with DMA: a request sees
/// either the old or the new entry. Faults are recorded under <c>_faultLock</c> (cold path); the fault handler and the
/// interrupt handler are called outside any lock, possibly from several threads at once.</para>
/// <para>Changing a context does not flush the IOTLB: entries are tagged by domain id, so a device moved to another
/// domain cannot hit the old domain's entries; flush a domain before reusing its id for a different table.</para>
/// <para><b>Domain-selective flush in O(1):</b> IOTLB entries carry the domain's current <i>tag</i>
/// (<see cref="IotlbTagOf"/>, kept by the <see cref="Iotlb"/>), initially the domain id. <see cref="FlushDomain"/>
/// gives the domain a fresh tag, which makes every entry it had unreachable at once, the way hardware retires an
/// ASID/DID. The IOTLB set is chosen by the stable domain id, so an IOTLB hit is one probe whose address does not wait
/// for the tag.</para>
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

    /// <summary>Domain ids are 16-bit, like a VT-d DID or an SMMU ASID/VMID.</summary>
    public const int MaxDomainId = 0xffff;

    // The context table, inline in this object (reached without a load of its own or a null check) and never null:
    // an empty slot holds IommuContext.Absent, which GetContext shows as null.
    private ContextTable _contexts;

    // The domain id of each slot's context (Iotlb.NoDomain, which never hits, when it is not Translated or absent),
    // inline in this object like the contexts: the hit path reads only this, never the context (see Translate).
    // Written with the context slot under _contextWriteLock, so the two always end up describing the same context.
    private SlotDomainTable _slotDomains;
    private readonly Lock _contextWriteLock = new();

    [InlineArray(1 << 16)]
    private struct ContextTable
    {
        private IommuContext _first;
    }

    [InlineArray(1 << 16)]
    private struct SlotDomainTable
    {
        private uint _first;
    }
    private readonly Iotlb _iotlb;
    // The IOTLB's small-array base and mask (Iotlb.SmallBase/SmallMask, fixed for its life), kept here so the hit
    // path reaches the entry, the domain tag, the epoch and the hit stripes without loading the Iotlb object.
    private readonly nint _tlbSmall;
    private readonly int _tlbMask;
    // The same for the 64 KiB block array (TranslateRange's one-block case).
    private readonly nint _tlbBlock;
    private readonly int _tlbBlockMask;

    // _faultLock guards _faults, _interrupts (bounded logs).
    private readonly Lock _faultLock = new();
    private readonly Queue<DmaFault> _faults = new();
    private readonly Queue<MsiMessage> _interrupts = new();
    private long _faultCount;
    private long _interruptCount;

    /// <summary>Creates a unit with an empty context table (every requester faults NoContext) and an empty IOTLB.</summary>
    /// <param name="iotlbSets">Sets of the IOTLB (see <see cref="Iotlb"/>).</param>
    /// <param name="name">Name for messages, e.g. "dmar0".</param>
    /// <param name="domainIds">How many domain ids the unit supports (VT-d CAP.ND: 2^(4 + 2*ND), 16..65536); drivers
    /// hand out 1..domainIds-1 (id 0 is reserved, as VT-d reserves DID 0 under caching mode).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="domainIds"/> is outside 2..65536.</exception>
    public IommuHardware(int iotlbSets = 4096, string name = "dmar0", int domainIds = MaxDomainId + 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(domainIds, 2);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(domainIds, MaxDomainId + 1);
        _iotlb = new Iotlb(iotlbSets);
        // A 4 KiB hit is then never an interrupt request, so Translate tests the window only off its hit path.
        _iotlb.SetUncachedWindow(MsiWindowStart, MsiWindowSize);
        _tlbSmall = _iotlb.SmallBase;
        _tlbMask = _iotlb.SmallMask;
        _tlbBlock = _iotlb.BlockBase;
        _tlbBlockMask = _iotlb.BlockMask;
        for (int i = 0; i < LeaseCells; i++)
            LeaseCellAt(i) = new LeaseCell(overflow: false);
        for (int rid = 0; rid < 1 << 16; rid++)
        {
            ContextSlot((ushort)rid) = IommuContext.Absent;
            SlotDomainRef((ushort)rid) = Iotlb.NoDomain;
        }
        Name = name;
        DomainIdCount = domainIds;
    }

    /// <summary>The unit's name, for messages (<c>dmar0</c>).</summary>
    public string Name { get; }

    /// <summary>Domain ids the unit supports (ids 0..DomainIdCount-1; 0 is reserved).</summary>
    public int DomainIdCount { get; }

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
    /// after DMA aliasing). A translated context's domain id was checked when it was made
    /// (<see cref="IommuContext.Translated"/>).</summary>
    public void SetContext(ushort requesterId, IommuContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        WriteContext(requesterId, context);
    }

    /// <summary>Removes the context entry: the requester then faults with <see cref="DmaFaultReason.NoContext"/>.</summary>
    public void ClearContext(ushort requesterId) => WriteContext(requesterId, IommuContext.Absent);

    /// <summary>Publishes a context and its slot domain id (what the hit path reads) as one change: writers are
    /// serialized, so two concurrent writes of one slot cannot leave the domain id of one with the context of the
    /// other. A request in flight sees the old or the new entry.</summary>
    private void WriteContext(ushort requesterId, IommuContext context)
    {
        uint domain = context.Kind == IommuContextKind.Translated ? (uint)context.DomainId : Iotlb.NoDomain;
        lock (_contextWriteLock)
        {
            Volatile.Write(ref SlotDomainRef(requesterId), domain);
            BetweenContextWritesForTests?.Invoke();
            Volatile.Write(ref ContextSlot(requesterId), context);
        }
    }

    /// <summary>Test hook: called by a context write between the slot domain id and the context, so a test can hold a
    /// write half done while another writer runs.</summary>
    internal Action? BetweenContextWritesForTests { get; set; }

    /// <summary>The current context entry, or null.</summary>
    public IommuContext? GetContext(ushort requesterId)
    {
        IommuContext ctx = Volatile.Read(ref ContextSlot(requesterId));
        return ReferenceEquals(ctx, IommuContext.Absent) ? null : ctx;
    }

    /// <summary>
    /// Translates one DMA request of <paramref name="requesterId"/> at <paramref name="iova"/>. The result is valid up to
    /// the end of the 4 KiB page containing <paramref name="iova"/>. A fault is recorded and reported before returning.
    /// </summary>
    /// <param name="write">True for a DMA write (device to memory), false for a read.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public DmaTranslation Translate(ushort requesterId, ulong iova, bool write)
    {
        // The IOTLB base first: a field at a small offset, so this load is also the null check of the unit and the
        // slot load at a large offset needs no explicit one.
        nint tlbSmall = _tlbSmall;
        // The hit reads the slot's domain id only, not the context: the slot holds the id of a Translated context and
        // Iotlb.NoDomain (which never hits) for any other, written together with the context (WriteContext), so the
        // probe's address waits for one load off the unit, and the context object (often out of L1 after a bulk copy)
        // is not read at all.
        uint domainId = Volatile.Read(ref SlotDomainRef(requesterId));
        // One probe of the 4 KiB entry, whose data word carries the permission bits, so the check is one test and no
        // out-parameter leaves registers. The MSI window (VT-d 3.14: requests to 0xFEEx_xxxx are interrupt requests,
        // never DMA-remapped) needs no test here: the IOTLB never caches a 4 KiB page of it (SetUncachedWindow), so such
        // a request always takes TranslateSlow. Anything else (large page, miss, permission fault, no translated
        // context) is TranslateSlow too.
        // SAFETY of the unchecked probe: slot domain ids are 0..MaxDomainId or Iotlb.NoDomain.
        if (Iotlb.HitAt(tlbSmall, _tlbMask, domainId, iova, Iotlb.DataBit(write ? IommuProt.Write : IommuProt.Read), out ulong data))
        {
            return new DmaTranslation(Iotlb.PhysOf(data, iova, 12), DmaTranslationKind.Memory, DmaFaultReason.None);
        }
        return TranslateSlow(requesterId, iova, write);
    }

    /// <summary>Translate when the hit test failed: the MSI window, a context that is not Translated, then the 4 KiB
    /// entry again (a hit without the permission faults), the 2 MiB slice array, the walk.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private DmaTranslation TranslateSlow(ushort requesterId, ulong iova, bool write)
    {
        IommuContext ctx = Volatile.Read(ref ContextSlot(requesterId));
        // VT-d 3.14: requests to 0xFEEx_xxxx are interrupt requests, never DMA-remapped (wrap-around makes this one compare).
        if (iova - MsiWindowStart < MsiWindowSize)
            return TranslateMsiWindow(requesterId, iova, write);
        if (ctx.Kind != IommuContextKind.Translated)
            return TranslateUntranslated(ctx, requesterId, iova, write);
        // Probed again under the context's own domain id (the slot's may have been a SetContext in flight).
        ulong data = _iotlb.ProbeSmall(ctx.DomainId, iova);
        ulong need = Iotlb.DataBit(write ? IommuProt.Write : IommuProt.Read);
        if (data != 0)
        {
            Iotlb.CountHitAt(_tlbSmall, iova);
            if ((data & need) != 0)
                return new DmaTranslation(Iotlb.PhysOf(data, iova, 12), DmaTranslationKind.Memory, DmaFaultReason.None);
            return RaiseFault(requesterId, iova, write, DmaFaultReason.Permission, ctx.DomainId);
        }
        data = _iotlb.ProbeLarge(ctx.DomainId, iova);
        if (data == 0)
        {
            _iotlb.CountMiss(iova);
            return WalkAndFill(ctx, requesterId, iova, write);
        }
        Iotlb.CountHitAt(_tlbSmall, iova);
        if ((data & need) != 0)
            return new DmaTranslation(Iotlb.PhysOf(data, iova, 21), DmaTranslationKind.Memory, DmaFaultReason.None);
        return RaiseFault(requesterId, iova, write, DmaFaultReason.Permission, ctx.DomainId);
    }

    /// <summary>
    /// Translates the first page of a <paramref name="length"/>-byte request like <see cref="Translate"/> and, when it is
    /// memory, extends <paramref name="run"/> over the following pages while they translate (IOTLB, else a walk that
    /// fills it) to physically contiguous addresses with the needed permission. The run stops before the first page that
    /// does not; that page's fault, if any, is raised only when the caller translates it next. The bus copies a run with
    /// one bulk copy, and looks the context and IOTLB tag up once per run instead of once per page.
    /// </summary>
    /// <remarks>A 64 KiB-aligned piece of at least 64 KiB is first looked up as one block entry (one probe for 16
    /// pages); a block translated page by page that turns out contiguous (16 pages to one 64 KiB-aligned physical
    /// block) is cached as one, as <see cref="TranslateRange"/> does.</remarks>
    /// <param name="run">Bytes from <paramref name="iova"/> covered by the result (at least up to the first page end, or
    /// <paramref name="length"/>).</param>
    internal DmaTranslation TranslateRun(ushort requesterId, ulong iova, int length, bool write, out int run)
    {
        const int Block = (int)Iotlb.BlockSize;
        IommuContext ctx = Volatile.Read(ref ContextSlot(requesterId));
        ulong need = Iotlb.DataBit(write ? IommuProt.Write : IommuProt.Read);
        ulong first;
        long generation = 0;
        ulong blockAt = 1; // iova of the block being translated page by page (1 = none: never block aligned)
        if (ctx.Kind == IommuContextKind.Translated && length >= Block && IsBlockStart(ctx, iova))
        {
            ulong bd = _iotlb.ProbeBlock(ctx.DomainId, iova); // SAFETY of the unchecked id as in Translate
            if ((bd & need) != 0)
            {
                first = Iotlb.PhysOf(bd, iova, Iotlb.BlockSizeShift);
                run = Block;
                if (length == Block)
                    return new DmaTranslation(first, DmaTranslationKind.Memory, DmaFaultReason.None);
                return ExtendRun(ctx, iova, length, need, first, ref run);
            }
            generation = _iotlb.Generation;
            blockAt = iova;
        }
        DmaTranslation t = Translate(requesterId, iova, write);
        run = (int)Math.Min((ulong)length, GranuleMask + 1 - (iova & GranuleMask));
        if (t.Kind != DmaTranslationKind.Memory || run >= length)
            return t;
        ctx = Volatile.Read(ref ContextSlot(requesterId));
        if (ctx.Kind != IommuContextKind.Translated && ctx.Kind != IommuContextKind.Identity)
            return t; // the context changed under the request: let the next page fault on its own
        if (ctx.Kind == IommuContextKind.Identity)
        {
            ExtendIdentity(iova, length, ref run);
            return t;
        }
        ExtendRun(ctx, iova, length, need, t.Phys, ref run, blockAt, generation);
        return t;
    }

    /// <summary>Whether <paramref name="iova"/> starts a 64 KiB block that can be cached whole: block aligned, inside
    /// the aperture, outside the MSI window (1 MiB aligned, so a block is wholly in or out).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsBlockStart(IommuContext ctx, ulong iova) =>
        (iova & (Iotlb.BlockSize - 1)) == 0 && (iova >> ctx.ApertureShift) == 0 && iova - MsiWindowStart >= MsiWindowSize;

    /// <summary>An identity context: the run goes on up to the MSI window.</summary>
    private static void ExtendIdentity(ulong iova, int length, ref int run)
    {
        while (run < length)
        {
            ulong a = iova + (ulong)run;
            if (a - MsiWindowStart < MsiWindowSize)
                break; // interrupt window: not memory
            run += Math.Min(length - run, (int)GranuleMask + 1);
        }
    }

    /// <summary>Extends a translated run that covers [iova, iova + run) and translated to <paramref name="first"/>:
    /// whole 64 KiB blocks by one probe, else page by page (a walk on a miss, quietly); stops at the first piece that
    /// is not contiguous or lacks the permission (<paramref name="need"/>, a data-word bit).
    /// <paramref name="blockAt"/>/<paramref name="generation"/>: a block whose pages are being translated one by one
    /// since <paramref name="generation"/> was read, cached whole if they turn out contiguous.</summary>
    private DmaTranslation ExtendRun(IommuContext ctx, ulong iova, int length, ulong need, ulong first, ref int run,
        ulong blockAt = 1, long generation = 0)
    {
        const int Block = (int)Iotlb.BlockSize;
        int domainId = ctx.DomainId;
        ulong expect = first + (ulong)run;
        while (run < length)
        {
            ulong a = iova + (ulong)run;
            if (a - MsiWindowStart < MsiWindowSize)
                break; // interrupt window: not memory
            if (length - run >= Block && IsBlockStart(ctx, a))
            {
                ulong bd = _iotlb.ProbeBlock(domainId, a);
                if ((bd & need) != 0)
                {
                    if (Iotlb.PhysOf(bd, a, Iotlb.BlockSizeShift) != expect)
                        break;
                    run += Block;
                    expect += Block;
                    continue;
                }
                generation = _iotlb.Generation;
                blockAt = a;
            }
            if (!_iotlb.TryLookupChecked(domainId, a, out ulong phys, out IommuProt prot) && !TryWalkAndFillQuiet(ctx, a, out phys, out prot))
                break;
            if ((Iotlb.DataBit(prot) & need) == 0 || phys != expect)
                break;
            int n = Math.Min(length - run, (int)GranuleMask + 1);
            run += n;
            expect += (ulong)n;
            // The last page of a block translated page by page, all contiguous (the run would have stopped otherwise):
            // cache the block when its physical start is 64 KiB aligned.
            if (a == blockAt + Iotlb.BlockSize - (GranuleMask + 1) && ((expect - Iotlb.BlockSize) & (Iotlb.BlockSize - 1)) == 0)
                TryFillBlock(ctx, blockAt, expect - Iotlb.BlockSize, generation);
        }
        return new DmaTranslation(first, DmaTranslationKind.Memory, DmaFaultReason.None);
    }

    // Range leases (see TranslateRange): a translation handed out before an invalidation must not be used after the
    // invalidation returns. A lease holds one of LeaseCells cells (LeaseCell objects, each value alone on its 128
    // bytes): it claims a free cell (0) with one CAS, writing the lease epoch it read before, and frees it with one
    // plain release store; nothing else writes a held cell. The lease keeps only the cell object (what its Dispose
    // needs, and what keeps the cell alive), so a caller's `using` saves one reference. An invalidation, once its entries are cleared,
    // bumps _leaseEpoch (a full fence) and waits for every cell that holds an epoch older than the new one. Why that
    // is enough: the claim's CAS is a full fence too, so either the invalidation's scan sees the claim (and waits),
    // or the claim comes after the scan read the cell, hence after the bump, and the lease's table and IOTLB reads
    // see the invalidation. A lease claimed after the bump holds the new epoch or a newer one and is not waited for,
    // so leases taken continually cannot starve an invalidation. When every cell is taken (more than LeaseCells
    // leases at once), a lease counts itself in the overflow: two reader counts, SRCU style (a lease counts itself
    // in the current slot's overflow cell; an invalidation flips the slot and waits for the old one to drain). All of it is only
    // paid once some lease was ever taken (_leasesUsed), the overflow's part once it was used (_leaseOverflowUsed).
    private const int LeaseCells = 16;
    private LeaseCellTable _leaseCells; // inline, like the contexts: a cell is one load from the unit
    private long _leaseEpoch = 1;
    private readonly LeaseCell[] _leaseOverflow = [new(overflow: true), new(overflow: true)];

    [InlineArray(LeaseCells)]
    private struct LeaseCellTable
    {
        private LeaseCell _first;
    }
    private int _leaseSlot;
    private volatile bool _leasesUsed;
    private volatile bool _leaseOverflowUsed;
    private readonly Lock _leaseFlipLock = new();

    /// <summary>
    /// Translates [<paramref name="iova"/>, <paramref name="iova"/> + <paramref name="length"/>) for a device that
    /// will access guest memory itself (a VMM's zero-copy path, as OpenVMM does): fills <paramref name="runs"/> with
    /// physically contiguous pieces and keeps them valid until the returned lease is disposed. An invalidation
    /// (<see cref="FlushRange"/>, <see cref="FlushDomain"/>, <see cref="FlushAll"/>, so every strict unmap and every
    /// flush-queue flush) waits for the leases taken before it, so the mapping cannot be pulled from under the access.
    /// </summary>
    /// <returns>The lease: <see cref="DmaRangeLease.Fault"/> is the fault of the first untranslatable page (recorded and
    /// reported as by <see cref="Translate"/>), <see cref="DmaRangeLease.Count"/> the runs filled and
    /// <see cref="DmaRangeLease.Bytes"/> the bytes they cover (less than <paramref name="length"/> after a fault, or when
    /// <paramref name="runs"/> is full). The MSI window is not memory: a range reaching it stops there.</returns>
    /// <remarks><para>A 64 KiB-aligned block whose 16 pages map to one 64 KiB-aligned physical block is cached whole in
    /// the IOTLB the first time it is translated, so later ranges over it cost one probe per 64 KiB.</para>
    /// <para>Hold leases briefly and never unmap on the thread that holds one: the unmap would wait for itself.</para></remarks>
    public DmaRangeLease TranslateRange(ushort requesterId, ulong iova, int length, bool write, Span<DmaRun> runs)
    {
        if (!_leasesUsed) _leasesUsed = true; // first: a field at a small offset, so also the unit's null check
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        // The cell of the requester first (devices on different threads take different cells), else any free one
        // (out of line, so the common case has no overflow slot to carry: it is 0).
        long epoch = Volatile.Read(ref _leaseEpoch);
        LeaseCell cell = LeaseCellAt(requesterId);
        if (!TryClaimLeaseCell(cell, epoch))
            return TranslateRangeContended(requesterId, iova, length, write, runs, epoch);
        // A range of exactly one 64 KiB block cached in the IOTLB (a zero-copy path's common request): one probe, with
        // few live values; anything else is the general loop (which probes blocks too, through TranslateRun). Like the
        // hit of Translate it reads the slot's domain id only (Iotlb.NoDomain for a context that is not Translated,
        // which never hits), not the context: a block is cached only once a walk translated all of it, so a hit is
        // inside the aperture, and never in the MSI window (the IOTLB refuses such blocks, SetUncachedWindow).
        int count = 0, done = 0;
        uint domainId = Volatile.Read(ref SlotDomainRef(requesterId));
        if (length == (int)Iotlb.BlockSize && (iova & (Iotlb.BlockSize - 1)) == 0 && runs.Length != 0)
        {
            // SAFETY of the unchecked id as in Translate.
            ulong bd = Iotlb.ProbeBlockAt(_tlbSmall, _tlbBlock, _tlbBlockMask, (int)domainId, iova);
            if ((bd & Iotlb.DataBit(write ? IommuProt.Write : IommuProt.Read)) != 0)
            {
                runs[0] = new DmaRun(Iotlb.PhysOf(bd, iova, Iotlb.BlockSizeShift), length);
                return new DmaRangeLease(cell, DmaFaultReason.None, 1, length);
            }
        }
        return TranslateRangeRest(requesterId, iova, length, write, runs, cell, count, done);
    }

    /// <summary><see cref="TranslateRange"/> when the requester's lease cell was taken: another cell or the overflow
    /// counts, then the general loop.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private DmaRangeLease TranslateRangeContended(ushort requesterId, ulong iova, int length, bool write, Span<DmaRun> runs, long epoch)
    {
        LeaseCell cell = ClaimLeaseSlow(requesterId, epoch);
        return TranslateRangeRest(requesterId, iova, length, write, runs, cell, 0, 0);
    }

    /// <summary>The general loop of <see cref="TranslateRange"/> from <paramref name="done"/> bytes on, with
    /// <paramref name="count"/> runs filled, under the lease already taken (its cell).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private DmaRangeLease TranslateRangeRest(ushort requesterId, ulong iova, int length, bool write, Span<DmaRun> runs,
        LeaseCell cell, int count, int done)
    {
        DmaFaultReason fault = DmaFaultReason.None;
        while (done < length && count < runs.Length)
        {
            ulong a = iova + (ulong)done;
            if (a - MsiWindowStart < MsiWindowSize) break; // the interrupt window is not memory
            // One run per physically contiguous piece; cached 64 KiB blocks cost one probe each (TranslateRun).
            DmaTranslation t = TranslateRun(requesterId, a, length - done, write, out int run);
            if (t.Kind != DmaTranslationKind.Memory)
            {
                fault = t.Fault;
                break;
            }
            Append(runs, ref count, t.Phys, run);
            done += run;
        }
        return new DmaRangeLease(cell, fault, count, done);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Append(Span<DmaRun> runs, ref int count, ulong phys, int length)
    {
        if (count > 0 && runs[count - 1].Phys + (ulong)runs[count - 1].Length == phys)
            runs[count - 1] = runs[count - 1] with { Length = runs[count - 1].Length + length };
        else
            runs[count++] = new DmaRun(phys, length);
    }

    /// <summary>Caches the 64 KiB block at <paramref name="iova"/> (block aligned, <paramref name="phys"/> 64 KiB
    /// aligned) as one IOTLB entry when the table maps its 16 pages contiguously; the permission cached is what every
    /// page allows. <paramref name="generation"/> was read before the pages were translated, so an invalidation since
    /// drops the fill.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void TryFillBlock(IommuContext ctx, ulong iova, ulong phys, long generation)
    {
        IommuProt all = IommuProt.Read | IommuProt.Write | IommuProt.Cache | IommuProt.NoExec | IommuProt.Mmio | IommuProt.Priv;
        for (ulong off = 0; off < Iotlb.BlockSize; off += GranuleMask + 1)
        {
            if (!ctx.Table!.TryIovaToPhys(iova + off, out ulong p, out IommuProt prot) || p != phys + off) return;
            all &= prot;
        }
        if ((all & (IommuProt.Read | IommuProt.Write)) != 0)
            _iotlb.FillBlock(ctx.DomainId, iova, phys, all, generation);
    }

    /// <summary>Lease cell <c>index % LeaseCells</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref LeaseCell LeaseCellAt(int index) =>
        // SAFETY: _leaseCells has exactly LeaseCells entries and the index is masked below that (no bounds check).
        ref Unsafe.Add(ref Unsafe.As<LeaseCellTable, LeaseCell>(ref _leaseCells), index & (LeaseCells - 1));

    /// <summary>Claims <paramref name="cell"/> for a lease that read <paramref name="epoch"/>: one CAS (a full fence)
    /// when the cell is free.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TryClaimLeaseCell(LeaseCell cell, long epoch) =>
        Volatile.Read(ref cell.Value) == 0 && Interlocked.CompareExchange(ref cell.Value, epoch, 0) == 0;

    /// <summary>The requester's cell was taken: any other free cell, else the overflow cell of the current slot,
    /// counted in.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private LeaseCell ClaimLeaseSlow(ushort requesterId, long epoch)
    {
        for (int i = 1; i < LeaseCells; i++)
        {
            LeaseCell cell = LeaseCellAt(requesterId + i);
            if (TryClaimLeaseCell(cell, epoch)) return cell;
        }
        if (!_leaseOverflowUsed) _leaseOverflowUsed = true;
        while (true)
        {
            int slot = Volatile.Read(ref _leaseSlot) & 1;
            LeaseCell overflow = _leaseOverflow[slot];
            Interlocked.Increment(ref overflow.Value);
            if ((Volatile.Read(ref _leaseSlot) & 1) == slot) return overflow;
            Interlocked.Decrement(ref overflow.Value); // an invalidation flipped meanwhile: count in the new slot
        }
    }

    /// <summary>Ends a lease: frees its cell (one release store), or uncounts it from its overflow cell.</summary>
    internal static void ReleaseLease(LeaseCell cell)
    {
        if (!cell.IsOverflow)
            Volatile.Write(ref cell.Value, 0); // only the lease writes its cell
        else
            Interlocked.Decrement(ref cell.Value);
    }

    /// <summary>After an invalidation: wait until no lease taken before it is held (nothing to do without leases).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void WaitForLeases()
    {
        // The check inline (a strict unmap on a unit without leases pays one load, not a call), the wait out of line.
        if (_leasesUsed) WaitForLeasesTakenBefore();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WaitForLeasesTakenBefore()
    {
        long epoch = Interlocked.Increment(ref _leaseEpoch);
        var spin = new SpinWait();
        for (int i = 0; i < LeaseCells; i++)
        {
            ref long cell = ref LeaseCellAt(i).Value;
            while (true)
            {
                long held = Volatile.Read(ref cell);
                if (held == 0 || held >= epoch) break;
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }
        if (!_leaseOverflowUsed) return;
        lock (_leaseFlipLock)
        {
            int old = Volatile.Read(ref _leaseSlot) & 1;
            Interlocked.Increment(ref _leaseSlot);
            while (Volatile.Read(ref _leaseOverflow[old].Value) != 0) spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    /// <summary>The walk of <see cref="WalkAndFill"/> without raising a fault: false when the page is not mapped.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool TryWalkAndFillQuiet(IommuContext ctx, ulong iova, out ulong phys, out IommuProt prot) =>
        Walk(ctx, iova, out phys, out prot) == DmaFaultReason.None;

    /// <summary>
    /// The table walk of an IOTLB miss: <see cref="DmaFaultReason.OutsideAperture"/> above the format's input size (the
    /// walk would index past the top level; VT-d "address beyond MGAW"), <see cref="DmaFaultReason.NotPresent"/> when
    /// nothing maps <paramref name="iova"/>, else None after caching the leaf it found (large pages included, as
    /// 2 MiB slices). Permissions are the caller's to check.
    /// </summary>
    private DmaFaultReason Walk(IommuContext ctx, ulong iova, out ulong phys, out IommuProt prot)
    {
        if ((iova >> ctx.ApertureShift) != 0)
        {
            phys = 0;
            prot = IommuProt.None;
            return DmaFaultReason.OutsideAperture;
        }
        // Read the invalidation generation before walking: if an unmap's flush lands between the walk and the fill,
        // the fill is dropped instead of caching a translation that was just invalidated (domain flushes included).
        long generation = _iotlb.Generation;
        if (!ctx.Table!.TryIovaToPhys(iova, out phys, out prot, out ulong pageSize))
            return DmaFaultReason.NotPresent;
        _iotlb.Fill(ctx.DomainId, iova, pageSize, phys, prot, generation);
        return DmaFaultReason.None;
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
    public void FlushRange(int domainId, ulong iova, ulong size)
    {
        _iotlb.InvalidateRange(domainId, iova, size);
        WaitForLeases();
    }

    /// <summary>Invalidates every IOTLB entry of <paramref name="domainId"/> (domain-selective, flush_iotlb_all), in
    /// O(1) by retiring the domain's tag (see remarks).</summary>
    public void FlushDomain(int domainId)
    {
        CheckDomainId(domainId);
        _iotlb.InvalidateDomain(domainId);
        WaitForLeases();
    }

    /// <summary>
    /// The invalidation interface the DMA layer and flush queues use for <paramref name="domainId"/> on this unit: a
    /// range is <see cref="FlushRange"/>, everything is <see cref="FlushDomain"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="domainId"/> is outside 0..<see cref="MaxDomainId"/>.</exception>
    public IIotlbInvalidator InvalidatorFor(int domainId)
    {
        CheckDomainId(domainId);
        return new DomainInvalidator(this, domainId);
    }

    private sealed class DomainInvalidator(IommuHardware unit, int domainId) : IIotlbInvalidator
    {
        public void InvalidateRange(ulong iova, ulong size) => unit.FlushRange(domainId, iova, size);

        public void InvalidateAll() => unit.FlushDomain(domainId);

        public override string ToString() => $"{unit.Name} domain {domainId}";
    }

    /// <summary>The tag the IOTLB currently files <paramref name="domainId"/>'s entries under (the domain id until its
    /// first <see cref="FlushDomain"/>).</summary>
    public int IotlbTagOf(int domainId) => _iotlb.TagOf(domainId);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref uint SlotDomainRef(ushort requesterId) =>
        // SAFETY: _slotDomains has exactly 2^16 entries and a ushort index is below 2^16 (skips the bounds check).
        ref Unsafe.Add(ref Unsafe.As<SlotDomainTable, uint>(ref _slotDomains), requesterId);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref IommuContext ContextSlot(ushort requesterId) =>
        // SAFETY: _contexts has exactly 2^16 entries and a ushort index is below 2^16 (skips the bounds check).
        ref Unsafe.Add(ref Unsafe.As<ContextTable, IommuContext>(ref _contexts), requesterId);

    /// <summary>The one domain-id check (contexts, DMA APIs, flush queues, flushes): 0..<see cref="MaxDomainId"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Outside that range.</exception>
    internal static void CheckDomainId(int domainId)
    {
        if ((uint)domainId > MaxDomainId)
            ThrowHelper.ThrowDomainIdOutOfRange(domainId);
    }

    /// <summary>Invalidates the whole IOTLB (global invalidation).</summary>
    public void FlushAll()
    {
        _iotlb.InvalidateAll();
        WaitForLeases();
    }

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
        DmaFaultReason miss = Walk(ctx, iova, out ulong phys, out IommuProt prot);
        if (miss != DmaFaultReason.None)
            return RaiseFault(requesterId, iova, write, miss, ctx.DomainId);
        IommuProt need = write ? IommuProt.Write : IommuProt.Read;
        if ((prot & need) != need)
            return RaiseFault(requesterId, iova, write, DmaFaultReason.Permission, ctx.DomainId);
        return new DmaTranslation(phys, DmaTranslationKind.Memory, DmaFaultReason.None);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private DmaTranslation TranslateUntranslated(IommuContext ctx, ushort requesterId, ulong iova, bool write)
    {
        if (ReferenceEquals(ctx, IommuContext.Absent))
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

/// <summary>One physically contiguous piece of a translated range: guest physical address and length in bytes.</summary>
public readonly record struct DmaRun(ulong Phys, int Length);

/// <summary>
/// The result of <see cref="IommuHardware.TranslateRange"/>: the runs stay valid (no invalidation of them completes)
/// until <see cref="Dispose"/>. Dispose exactly once.
/// </summary>
public struct DmaRangeLease : IDisposable
{
    private LeaseCell? _cell;

    internal DmaRangeLease(LeaseCell cell, DmaFaultReason fault, int count, int bytes)
    {
        _cell = cell;
        Fault = fault;
        Count = count;
        Bytes = bytes;
    }

    /// <summary>None, or the fault that stopped the translation.</summary>
    public DmaFaultReason Fault { get; }

    /// <summary>Runs filled in the caller's span.</summary>
    public int Count { get; }

    /// <summary>Bytes from the start of the range that the runs cover.</summary>
    public int Bytes { get; }

    /// <summary>Ends the lease: invalidations waiting for it may complete.</summary>
    public void Dispose()
    {
        if (_cell is { } cell)
            IommuHardware.ReleaseLease(cell);
        _cell = null;
    }
}

/// <summary>One range-lease cell of a unit (see <c>IommuHardware.TranslateRange</c>): <see cref="Value"/> is the epoch
/// its lease read (0 = free), or, for an overflow cell, the number of leases counted in it. The value sits 64 bytes
/// into a 136-byte object, so two cells' values are never on one 128-byte pair of lines (the adjacent-line prefetcher
/// pairs 64-byte lines).</summary>
[StructLayout(LayoutKind.Explicit, Size = 136)]
internal sealed class LeaseCell(bool overflow)
{
    [FieldOffset(64)]
    public long Value;

    [FieldOffset(72)]
    public readonly bool IsOverflow = overflow;
}
