using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using IommuKit.Paging;

namespace IommuKit.Dma;

/// <summary>
/// The DMA-FQ flush queue of one domain (drivers/iommu/dma-iommu.c <c>queue_iova</c>, <c>fq_ring_free_locked</c>,
/// <c>fq_flush_iotlb</c>, <c>fq_flush_timeout</c>; spec 10.4). Lazy unmaps enqueue (pfn, pages) instead of invalidating
/// the IOTLB; an IOVA is returned to the allocator only after a domain-wide IOTLB flush that started after it was queued.
/// </summary>
/// <remarks>
/// <para><b>Rules (spec 10.4):</b> one ring per CPU of <see cref="DefaultEntries"/> (256) entries, full when
/// <c>(tail + 1) &amp; mask == head</c> (so 255 usable). On enqueue: free every entry whose counter is below the
/// flush-finish count; if the ring is still full, flush (start++, flush the domain's IOTLB, finish++) and free again; add
/// the entry tagged with the flush-start count; arm the timer if it is not armed. When the timer fires
/// (<see cref="DefaultTimeout"/>, 10 ms): flush, then free the eligible entries of every ring.</para>
/// <para><b>The stale window:</b> between an unmap and the flush that covers it, the IOTLB may still hold the old
/// translation and the device can still use it. It is bounded by 255 entries per CPU and by the timeout (plus timer
/// latency); <see cref="PendingCount"/> shows it.</para>
/// <para><b>Threading:</b> each ring has its own spin lock (the kernel's <c>fq-&gt;lock</c>); a thread uses the ring of
/// the CPU it runs on (<see cref="Thread.GetCurrentProcessorId"/>). Counters are atomics. No lock is held while the
/// IOTLB is flushed except the enqueuing ring's (as in the kernel). The clock is a <see cref="TimeProvider"/>, so tests
/// can fire the timeout deterministically.</para>
/// </remarks>
public sealed class FlushQueue : IDisposable
{
    /// <summary>IOVA_DEFAULT_FQ_SIZE.</summary>
    public const int DefaultEntries = 256;
    /// <summary>IOVA_DEFAULT_FQ_TIMEOUT (10 ms).</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMilliseconds(10);

    private readonly IIotlbInvalidator _iotlb;
    private readonly IovaAllocator _iovad;
    private readonly Ring[] _rings;
    private readonly int _ringMask; // ring count - 1 (PerCpu.SlotCount)
    private readonly ITimer _timer;
    private readonly TimeSpan _timeout;
    private long _flushStartCount;
    private long _flushFinishCount;
    private int _timerOn;
    private bool _disposed;

    /// <summary>Creates the queue of one domain, flushing through <paramref name="iotlb"/> and freeing IOVAs into
    /// <paramref name="iovad"/>.</summary>
    /// <param name="timeProvider">Clock and timer; <see cref="TimeProvider.System"/> when null.</param>
    /// <param name="entriesPerQueue">Ring size, a power of two (256; the kernel's single-queue mode uses 32768).</param>
    /// <param name="timeout">Flush timeout (10 ms; single-queue mode 1000 ms).</param>
    /// <exception cref="ArgumentOutOfRangeException">A bad ring size,
    /// timeout or queue count.</exception>
    /// <param name="queueCount">Number of rings (rounded up to a power of two); 0 = one per CPU
    /// (<see cref="Environment.ProcessorCount"/>); 1 = the single shared queue of <c>shadow_on_flush</c> IOMMUs.</param>
    public FlushQueue(IIotlbInvalidator iotlb, IovaAllocator iovad, TimeProvider? timeProvider = null,
        int entriesPerQueue = DefaultEntries, TimeSpan? timeout = null, int queueCount = 0)
    {
        ArgumentNullException.ThrowIfNull(iotlb);
        ArgumentNullException.ThrowIfNull(iovad);
        if (entriesPerQueue < 2 || (entriesPerQueue & (entriesPerQueue - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(entriesPerQueue), "the ring size must be a power of two >= 2");
        ArgumentOutOfRangeException.ThrowIfNegative(queueCount);
        _iotlb = iotlb;
        _iovad = iovad;
        _timeout = timeout ?? DefaultTimeout;
        if (_timeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(timeout), "the timeout must be positive");
        int n = PerCpu.SlotCount(queueCount);
        _ringMask = n - 1;
        _rings = new Ring[n];
        for (int i = 0; i < n; i++)
            _rings[i] = new Ring(entriesPerQueue);
        TimeProvider = timeProvider ?? TimeProvider.System;
        _timer = TimeProvider.CreateTimer(static s => ((FlushQueue)s!).OnTimeout(), this,
            System.Threading.Timeout.InfiniteTimeSpan, System.Threading.Timeout.InfiniteTimeSpan);
    }

    /// <summary>The clock and timer source of the flush timeout.</summary>
    public TimeProvider TimeProvider { get; }

    /// <summary>Entries per ring (one slot is always empty, so a ring holds one fewer).</summary>
    public int EntriesPerQueue => _rings[0].Entries.Length;

    /// <summary>Number of rings (a power of two).</summary>
    public int QueueCount => _rings.Length;

    /// <summary>The flush timeout (10 ms by default).</summary>
    public TimeSpan Timeout => _timeout;

    /// <summary>Number of domain-wide IOTLB flushes started (the kernel's fq_flush_start_cnt).</summary>
    public long FlushStartCount => Volatile.Read(ref _flushStartCount);

    /// <summary>Number of domain-wide IOTLB flushes finished (fq_flush_finish_cnt).</summary>
    public long FlushFinishCount => Volatile.Read(ref _flushFinishCount);

    /// <summary>True while the timeout timer is armed.</summary>
    public bool TimerArmed => Volatile.Read(ref _timerOn) != 0;

    /// <summary>IOVA ranges queued and not yet returned to the allocator (the stale window, counting entries whose
    /// flush already happened but that no enqueue or timeout has freed yet).</summary>
    public int PendingCount
    {
        get
        {
            int total = 0;
            foreach (Ring r in _rings)
            {
                r.Lock.Enter();
                total += (r.Tail - r.Head) & r.Mask;
                r.Lock.Exit();
            }
            return total;
        }
    }

    /// <summary>Queues the IOVA range [pfn, pfn + pages) (in granules) whose page-table entries were just cleared; it is
    /// freed after the next flush (queue_iova).</summary>
    public void Queue(ulong pfn, ulong pages)
    {
        // The kernel's smp_mb() in queue_iova orders the unmap's PTE clear before a flush on another CPU can count
        // this entry as covered; here the ring lock's interlocked compare-exchange is that full barrier.
        Ring ring = RingOfThisCpu();
        ring.Lock.Enter();
        int head = ring.Head, tail = ring.Tail, next = (tail + 1) & ring.Mask;
        // The common case inline, with nothing in it that can throw (so no try/finally): nothing flushed since the
        // oldest entry was queued, and room. Otherwise QueueLocked frees, flushes when full, and frees again, as
        // queue_iova does; the order of the checks does not change what it does.
        if (next == head || (head != tail && EntryAt(ring, head).Counter < Volatile.Read(ref _flushFinishCount)))
        {
            QueueLocked(ring, pfn, pages);
        }
        else
        {
            ref Entry e = ref EntryAt(ring, tail);
            e.Pfn = pfn;
            e.Pages = pages;
            e.Counter = Volatile.Read(ref _flushStartCount);
            ring.Tail = next;
            ring.Lock.Exit();
        }
        // Avoid the shared write when the timer is already armed (the kernel's atomic_read before atomic_xchg).
        if (Volatile.Read(ref _timerOn) == 0 && Interlocked.Exchange(ref _timerOn, 1) == 0)
            ArmTimer();
    }

    /// <summary>The rest of <see cref="Queue"/> with the ring locked: free what a flush covered, flush if the ring is
    /// still full, free again, add the entry; unlocks.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void QueueLocked(Ring ring, ulong pfn, ulong pages)
    {
        try
        {
            FreeLocked(ring);
            if (((ring.Tail + 1) & ring.Mask) == ring.Head)
            {
                FlushIotlb();
                FreeLocked(ring);
            }
            ref Entry e = ref ring.Entries[ring.Tail];
            e.Pfn = pfn;
            e.Pages = pages;
            e.Counter = Volatile.Read(ref _flushStartCount);
            ring.Tail = (ring.Tail + 1) & ring.Mask;
        }
        finally
        {
            ring.Lock.Exit();
        }
    }

    /// <summary>This CPU's ring (the ring count is a power of two, so the masked index needs no bounds check).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Ring RingOfThisCpu() =>
        // SAFETY: PerCpu.Current returns a value masked by _ringMask = _rings.Length - 1.
        Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_rings), PerCpu.Current(_ringMask));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ref Entry EntryAt(Ring ring, int i) =>
        // SAFETY: i is a head or tail index, masked by ring.Mask = ring.Entries.Length - 1.
        ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(ring.Entries), i);

    /// <summary>Flushes the domain's IOTLB now and frees every queued IOVA (what the timeout does; also used before the
    /// domain is torn down, iommu_dma_free_fq).</summary>
    public void FlushAll()
    {
        FlushIotlb();
        foreach (Ring r in _rings)
        {
            r.Lock.Enter();
            try
            {
                FreeLocked(r);
            }
            finally
            {
                r.Lock.Exit();
            }
        }
    }

    /// <summary>Stops the timer after flushing everything, so no IOVA stays queued.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _timer.Dispose();
        FlushAll();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ArmTimer()
    {
        if (!_disposed)
            _timer.Change(_timeout, System.Threading.Timeout.InfiniteTimeSpan);
    }

    private void OnTimeout()
    {
        // fq_flush_timeout: disarm first, so an enqueue racing with the flush re-arms the timer.
        Volatile.Write(ref _timerOn, 0);
        FlushAll();
    }

    /// <summary>fq_flush_iotlb: start++, flush the domain's IOTLB, finish++.</summary>
    private void FlushIotlb()
    {
        Interlocked.Increment(ref _flushStartCount);
        _iotlb.InvalidateAll();
        Interlocked.Increment(ref _flushFinishCount);
    }

    /// <summary>fq_ring_free_locked: frees entries, oldest first, whose counter is below the finish count.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FreeLocked(Ring ring)
    {
        Debug.Assert(ring.Lock.IsHeld, "FreeLocked needs the ring lock");
        // Volatile.Read, not Interlocked.Read: a 64-bit read is atomic on the 64-bit platforms .NET 10 runs this on,
        // and Interlocked.Read is a locked compare-exchange (two of them cost ~10 ns per enqueue).
        long finish = Volatile.Read(ref _flushFinishCount);
        int head = ring.Head;
        if (head != ring.Tail && ring.Entries[head].Counter < finish)
            FreeFlushedLocked(ring, finish);
        // else the common case: nothing flushed since the last enqueue (checked inline, no call)
    }

    /// <summary>The body of <see cref="FreeLocked"/> once something is to be freed.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void FreeFlushedLocked(Ring ring, long finish)
    {
        int head = ring.Head;
        int tail = ring.Tail;
        int mask = ring.Mask;
        // Up to 255 ranges after a flush: one rcache lock for the run, not one per range.
        IovaAllocator.FreeBatch batch = _iovad.BeginFreeBatch();
        try
        {
            while (head != tail)
            {
                ref Entry e = ref EntryAt(ring, head);
                if (e.Counter >= finish)
                    break;
                batch.Free(e.Pfn, e.Pages);
                head = (head + 1) & mask;
                ring.Head = head; // per entry: a free that throws (double free) leaves the ring consistent
            }
        }
        finally
        {
            batch.Dispose();
        }
    }

    private struct Entry
    {
        public ulong Pfn;
        public ulong Pages;
        public long Counter;
    }

    /// <summary>One per-CPU ring; padded so two CPUs' rings do not share a cache line.</summary>
    private sealed class Ring(int size)
    {
        public readonly Entry[] Entries = new Entry[size];
        public readonly int Mask = size - 1;
        public SpinGate Lock;
        public int Head;
        public int Tail;
#pragma warning disable CS0169 // padding against false sharing between rings
        private readonly Padding _pad;
#pragma warning restore CS0169
    }

    [StructLayout(LayoutKind.Sequential, Size = 64)]
    private struct Padding;
}
