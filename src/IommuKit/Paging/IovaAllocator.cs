using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace IommuKit.Paging;

/// <summary>
/// An IOVA allocator with the kernel's observable behaviour (drivers/iommu/iova.c, spec 10.2): the iova_domain plus
/// its per-CPU range caches ("rcaches"), but with an O(log n) worst-case tree search instead of the rbtree gap walk.
/// All quantities are in pages of <see cref="Granule"/> bytes ("pfn" = IOVA / granule); bounds are inclusive like the
/// kernel's <c>pfn_lo</c>/<c>pfn_hi</c>/<c>limit_pfn</c>.
/// </summary>
/// <remarks>
/// <para>Worked example: granule 4096, start pfn 1, nothing allocated. <c>Alloc(3, 0xFFFFF)</c> rounds 3 pages up to 4
/// (sizes below 32 pages are rounded to a power of two), aligns to 4 and allocates top-down: pfns 0xFFFFC..0xFFFFF,
/// returning 0xFFFFC. <c>Alloc(33, 0xFFFFF)</c> keeps 33 pages, aligns to 64: 0xFFFC0..0xFFFE0 (0xFFFC0 + 33 - 1),
/// the highest 64-aligned start whose run stays below the last allocation.</para>
/// <para>Locking (order: per-CPU cache lock, then depot lock, then tree lock; never the reverse, since the tree code
/// never calls back into the caches): the free-space tree and the reserved list are guarded by <c>_treeLock</c>
/// (the kernel's <c>iova_rbtree_lock</c>); each CPU's cache of a size class by its own spin lock (the kernel's
/// per-CPU <c>cpu_rcache->lock</c>); each depot by its own lock. The fast path (a cache hit) takes one uncontended
/// spin lock and allocates nothing.</para>
/// <para>Differences from the kernel, on purpose: the tree search is O(log n) (see <see cref="IovaFreeTree"/>);
/// <c>max32_alloc_size</c> is not modelled (the search is already O(log n)); the depot is bounded at
/// <see cref="MaxDepotMagazines"/> per size class and trimmed synchronously instead of by the 100 ms delayed worker;
/// sizes above <see cref="MaxAllocPages"/> fail.</para>
/// </remarks>
public sealed class IovaAllocator
{
    /// <summary>IOVA_RANGE_CACHE_MAX_SIZE: size classes 1, 2, 4, 8, 16 and 32 pages are cached per CPU.</summary>
    public const int RangeCacheMaxSize = 6;
    /// <summary>IOVA_MAG_SIZE: pfns per magazine.</summary>
    public const int MagazineSize = 127;
    /// <summary>Cap on full magazines in one size class's depot (the old MAX_GLOBAL_MAGS); the rest go back to the tree.</summary>
    public const int MaxDepotMagazines = 32;
    /// <summary>Largest allocation, in pages (2^31: 8 TiB with 4 KiB pages). Larger requests fail (return 0).</summary>
    public const ulong MaxAllocPages = 1UL << 31;
    /// <summary>Cap on <see cref="Reserve"/> calls kept (reserved regions of one domain).</summary>
    public const int MaxReservedRanges = 4096;

    private readonly object _treeLock = new();
    private readonly IovaFreeTree _tree = new();           // guarded by _treeLock
    private readonly List<(ulong Lo, ulong Hi)> _reserved = []; // guarded by _treeLock
    private readonly IovaRcache[] _rcaches;
    private readonly IovaRcache _rcache1; // _rcaches[0], the one-page class, without the array load
    private readonly int _shift;
    private readonly ulong _maxPfn;
    private volatile bool _reservedOverLive; // a Reserve covered allocated space: frees must be clipped (slow path)

    /// <summary>A new allocator over pfns [<paramref name="startPfn"/>, (2^64 / granule) - 2].</summary>
    /// <param name="granule">Page size in bytes (the domain's smallest page size), a power of two.</param>
    /// <param name="startPfn">Lowest pfn ever handed out, at least 1 (pfn 0 means failure, as in the kernel).</param>
    /// <exception cref="ArgumentOutOfRangeException">granule not a power of two, or startPfn is 0 or beyond the space.</exception>
    public IovaAllocator(ulong granule, ulong startPfn)
    {
        if (granule == 0 || !BitOperations.IsPow2(granule) || granule < 2)
            throw new ArgumentOutOfRangeException(nameof(granule), granule, "IOVA granule must be a power of two >= 2 bytes");
        _shift = BitOperations.TrailingZeroCount(granule);
        // The kernel's anchor node sits at pfn ~0 (IOVA_ANCHOR); keep the top pfn out like it does.
        _maxPfn = (ulong.MaxValue >> _shift) - 1;
        if (startPfn == 0 || startPfn > _maxPfn)
            throw new ArgumentOutOfRangeException(nameof(startPfn), startPfn, "IOVA start pfn must be in 1..max pfn");
        Granule = granule;
        StartPfn = startPfn;
        _tree.Insert(startPfn, _maxPfn);
        _rcaches = new IovaRcache[RangeCacheMaxSize];
        for (int i = 0; i < _rcaches.Length; i++) _rcaches[i] = new IovaRcache(this, 1UL << i);
        _rcache1 = _rcaches[0];
    }

    /// <summary>Page size in bytes.</summary>
    public ulong Granule { get; }

    /// <summary>Lowest pfn handed out.</summary>
    public ulong StartPfn { get; }

    /// <summary>Highest pfn that can ever be handed out.</summary>
    public ulong MaxPfn => _maxPfn;

    /// <summary>
    /// Allocates <paramref name="pages"/> pages (rounded up to a power of two below 32 pages), aligned to the next power
    /// of two of that size, as high as possible with the last page at or below <paramref name="limitPfn"/> (inclusive).
    /// Tries the per-CPU cache first for 1..32 pages, then the tree; on failure, if <paramref name="flushRcache"/>,
    /// returns every cached range to the tree and searches once more. Mirrors <c>alloc_iova_fast</c>.
    /// </summary>
    /// <returns>The first pfn, or 0 when nothing fits (also for 0 pages or more than <see cref="MaxAllocPages"/>).</returns>
    public ulong Alloc(ulong pages, ulong limitPfn, bool flushRcache = true)
    {
        // One page (a streaming 4 KiB map, the common case): size 1, class 0, without the rounding arithmetic.
        if (pages == 1)
        {
            ulong one = _rcache1.Get(limitPfn, 1);
            return one != 0 ? one : AllocFromTree(1, limitPfn, flushRcache);
        }
        return AllocAny(pages, limitPfn, flushRcache);
    }

    private ulong AllocAny(ulong pages, ulong limitPfn, bool flushRcache)
    {
        if (pages == 0 || pages > MaxAllocPages) return 0;
        ulong size = RoundedSize(pages);
        int log = BitOperations.Log2(size - 1) + 1; // order_base_2(size)
        if (size == 1) log = 0;
        if (log < RangeCacheMaxSize)
        {
            ulong pfn = _rcaches[log].Get(limitPfn, size);
            if (pfn != 0) return pfn;
        }
        return AllocFromTree(size, limitPfn, flushRcache);
    }

    /// <summary>The tree search after a cache miss; on failure, if allowed, every cache is flushed and it searches once
    /// more.</summary>
    private ulong AllocFromTree(ulong size, ulong limitPfn, bool flushRcache)
    {
        ulong r = TreeAlloc(size, limitPfn);
        if (r == 0 && flushRcache)
        {
            FlushCaches();
            r = TreeAlloc(size, limitPfn);
        }
        return r;
    }

    /// <summary>
    /// Frees what <see cref="Alloc"/> returned: <paramref name="pfn"/> and the same <paramref name="pages"/> count (it is
    /// rounded the same way). 1..32-page ranges go to this CPU's cache first (<c>free_iova_fast</c>).
    /// </summary>
    /// <exception cref="InvalidOperationException">The range (or part of it) is already free, or outside the space
    /// (detected when the range reaches the tree; a double free that stays in a cache is not detected).</exception>
    public void Free(ulong pfn, ulong pages)
    {
        IovaRcache? rc = CacheForFree(pages, out ulong size);
        if (rc is not null && rc.Insert(pfn)) return;
        TreeFree(pfn, size);
    }

    /// <summary>The rcache a freed range of <paramref name="pages"/> goes to, or null for the tree
    /// (<c>free_iova_fast</c>'s choice); <paramref name="size"/> is the rounded size.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private IovaRcache? CacheForFree(ulong pages, out ulong size)
    {
        if (pages == 1)
        {
            size = 1;
            return _reservedOverLive ? null : _rcache1;
        }
        if (pages == 0 || pages > MaxAllocPages) throw new ArgumentOutOfRangeException(nameof(pages));
        size = RoundedSize(pages);
        int log = size == 1 ? 0 : BitOperations.Log2(size - 1) + 1;
        return log < RangeCacheMaxSize && !_reservedOverLive ? _rcaches[log] : null;
    }

    /// <summary>
    /// Frees a run of ranges like <see cref="Free"/> does, one by one, but keeps this CPU's cache lock of a size class
    /// across consecutive ranges of that class instead of taking it per range: what the flush queue does with the up to
    /// 255 ranges one flush releases (the kernel's fq_ring_free_locked frees them one by one, each taking the
    /// cpu_rcache lock). Dispose it to release the lock.
    /// </summary>
    internal FreeBatch BeginFreeBatch() => new(this);

    /// <summary>See <see cref="BeginFreeBatch"/>. A ref struct: used in one method, on one thread.</summary>
    internal ref struct FreeBatch(IovaAllocator owner)
    {
        private IovaRcache? _rc;
        private CpuRcache? _cpu;
        private ulong _pages; // the page count of the last range cached under _cpu's lock (0 = none)

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Free(ulong pfn, ulong pages)
        {
            // The common case inline: a range of the same page count as the last one (so the same size class, whose
            // CPU cache is locked already), caching still allowed, room in the loaded magazine.
            if (_cpu is { } cpu && pages == _pages && !owner._reservedOverLive)
            {
                IovaMagazine loaded = cpu.Loaded;
                if (!loaded.IsFull)
                {
                    loaded.Push(pfn);
                    return;
                }
            }
            FreeAny(pfn, pages);
        }

        private void FreeAny(ulong pfn, ulong pages)
        {
            IovaRcache? rc = owner.CacheForFree(pages, out ulong size);
            if (rc is null)
            {
                Dispose(); // no CPU cache lock held across the tree lock of a range that is not cached
                owner.TreeFree(pfn, size);
                return;
            }
            if (!ReferenceEquals(rc, _rc))
            {
                Dispose();
                _cpu = rc.EnterThisCpu();
                _rc = rc;
            }
            _pages = pages;
            // Room in the loaded magazine, or the rest (swaps and the depot) in InsertLocked.
            IovaMagazine loaded = _cpu!.Loaded;
            if (!loaded.IsFull)
            {
                loaded.Push(pfn);
                return;
            }
            IovaMagazine? trim = rc.InsertLocked(_cpu, pfn);
            if (trim is not null) rc.ReturnToTree(trim);
        }

        public void Dispose()
        {
            _cpu?.Lock.Exit();
            _cpu = null;
            _rc = null;
            _pages = 0;
        }
    }

    /// <summary>
    /// Reserves pfns [<paramref name="pfnLo"/>, <paramref name="pfnHi"/>] (inclusive) so they are never handed out
    /// (<c>reserve_iova</c>). Parts outside the allocator's space are ignored. Returns false for an inverted range or
    /// when <see cref="MaxReservedRanges"/> is reached.
    /// </summary>
    public bool Reserve(ulong pfnLo, ulong pfnHi)
    {
        if (pfnLo > pfnHi) return false;
        FlushCaches(); // cached ranges inside the reservation must not be handed out again
        lock (_treeLock)
        {
            if (_reserved.Count >= MaxReservedRanges) return false;
            _reserved.Add((pfnLo, pfnHi));
            ulong lo = Math.Max(pfnLo, StartPfn), hi = Math.Min(pfnHi, _maxPfn);
            if (lo > hi) return true;
            ulong carved = CarveLocked(lo, hi);
            if (carved != hi - lo + 1) _reservedOverLive = true; // part of it is allocated now: clip it when freed
            return true;
        }
    }

    /// <summary>Returns every cached range (all CPUs, all depots) to the tree (<c>free_cpu_cached_iovas</c> +
    /// <c>free_global_cached_iovas</c>).</summary>
    public void FlushCaches()
    {
        foreach (var rc in _rcaches) rc.Flush();
    }

    /// <summary>The page count an allocation of <paramref name="pages"/> really takes (and <see cref="Free"/> gives back).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong RoundedSize(ulong pages) =>
        // alloc_iova_fast: "if (size < (1 << (IOVA_RANGE_CACHE_MAX_SIZE - 1))) size = roundup_pow_of_two(size)"
        pages < (1UL << (RangeCacheMaxSize - 1)) ? BitOperations.RoundUpToPowerOf2(pages) : pages;

    private ulong TreeAlloc(ulong size, ulong limitPfn)
    {
        // Size-aligned: align_mask <<= fls_long(size - 1) (iova.c __alloc_and_insert_iova_range).
        int k = size == 1 ? 0 : BitOperations.Log2(size - 1) + 1;
        if (k >= IovaFreeTree.Classes || limitPfn < StartPfn) return 0;
        ulong limit = Math.Min(limitPfn, _maxPfn);
        lock (_treeLock)
        {
            int n = _tree.FindHighest(size, k, limit, out ulong pfn);
            if (n == 0) return 0;
            CarveFromLocked(n, pfn, pfn + size - 1);
            return pfn;
        }
    }

    /// <summary>Removes [lo, hi] from free block <paramref name="n"/>, which contains it.</summary>
    private void CarveFromLocked(int n, ulong lo, ulong hi)
    {
        Debug.Assert(Monitor.IsEntered(_treeLock));
        ulong bLo = _tree.Lo(n), bHi = _tree.Hi(n);
        Debug.Assert(bLo <= lo && hi <= bHi);
        bool left = bLo < lo, right = hi < bHi;
        if (!left && !right) _tree.Delete(bLo);
        else if (left && !right) _tree.Update(bLo, bLo, lo - 1);
        else if (!left) _tree.Update(bLo, hi + 1, bHi); // key moves up inside its own gap: order unchanged
        else
        {
            _tree.Update(bLo, bLo, lo - 1);
            _tree.Insert(hi + 1, bHi);
        }
    }

    /// <summary>Removes every free pfn in [lo, hi]; returns how many were free.</summary>
    private ulong CarveLocked(ulong lo, ulong hi)
    {
        Debug.Assert(Monitor.IsEntered(_treeLock));
        ulong carved = 0;
        while (true)
        {
            int n = _tree.Floor(hi);
            if (n == 0 || _tree.Hi(n) < lo) return carved;
            ulong cLo = Math.Max(lo, _tree.Lo(n)), cHi = Math.Min(hi, _tree.Hi(n));
            carved += cHi - cLo + 1;
            CarveFromLocked(n, cLo, cHi);
        }
    }

    internal void TreeFree(ulong pfn, ulong size)
    {
        ulong end = pfn + size - 1;
        if (end < pfn || pfn < StartPfn || end > _maxPfn)
            throw new InvalidOperationException($"IOVA free of pfns 0x{pfn:x}+0x{size:x}: outside the allocator's space");
        lock (_treeLock)
        {
            if (_reservedOverLive) FreeClippedLocked(pfn, end);
            else FreeRangeLocked(pfn, end);
        }
    }

    private void FreeClippedLocked(ulong lo, ulong hi)
    {
        // Free only the parts of [lo, hi] outside every reserved range (at most MaxReservedRanges of them).
        foreach (var (rLo, rHi) in _reserved)
        {
            if (rHi < lo || rLo > hi) continue;
            if (rLo > lo) FreeClippedLocked(lo, rLo - 1);
            if (rHi < hi) FreeClippedLocked(rHi + 1, hi);
            return;
        }
        FreeRangeLocked(lo, hi);
    }

    private void FreeRangeLocked(ulong pfn, ulong end)
    {
        Debug.Assert(Monitor.IsEntered(_treeLock));
        _tree.Neighbours(pfn, out int p, out int s);
        if ((p != 0 && _tree.Hi(p) >= pfn) || (s != 0 && _tree.Lo(s) <= end))
            throw new InvalidOperationException($"IOVA double free: pfns 0x{pfn:x}..0x{end:x} are (partly) free already");
        bool mergeL = p != 0 && _tree.Hi(p) + 1 == pfn;
        bool mergeR = s != 0 && _tree.Lo(s) == end + 1;
        if (mergeL && mergeR)
        {
            ulong sHi = _tree.Hi(s);
            _tree.Delete(_tree.Lo(s));
            _tree.Update(_tree.Lo(p), _tree.Lo(p), sHi);
        }
        else if (mergeL) _tree.Update(_tree.Lo(p), _tree.Lo(p), end);
        else if (mergeR) _tree.Update(_tree.Lo(s), pfn, _tree.Hi(s));
        else _tree.Insert(pfn, end);
    }

    /// <summary>Tree-only allocation (no per-CPU cache, no flush): the rcache-miss path, for benchmarks and tests.</summary>
    internal ulong AllocTree(ulong pages, ulong limitPfn) =>
        pages == 0 || pages > MaxAllocPages ? 0 : TreeAlloc(RoundedSize(pages), limitPfn);

    /// <summary>Tree-only free (bypasses the per-CPU cache), the counterpart of <see cref="AllocTree"/>.</summary>
    internal void FreeTree(ulong pfn, ulong pages) => TreeFree(pfn, RoundedSize(pages));

    /// <summary>Free blocks in the tree (not counting cached ranges).</summary>
    internal int FreeBlockCount { get { lock (_treeLock) return _tree.Count; } }

    /// <summary>Calls <paramref name="visit"/> with every free block of the tree, ascending (tests and diagnostics).</summary>
    internal void ForEachFreeBlock(Action<ulong, ulong> visit)
    {
        lock (_treeLock) _tree.ForEach(visit);
    }

    /// <summary>Checks the tree's invariants (tests).</summary>
    internal void Validate()
    {
        lock (_treeLock) _tree.Validate();
    }
}

/// <summary>A magazine: up to <see cref="IovaAllocator.MagazineSize"/> cached pfns of one size class.</summary>
internal sealed class IovaMagazine
{
    public readonly ulong[] Pfns = new ulong[IovaAllocator.MagazineSize];
    public int Size;
    public IovaMagazine? Next; // depot / spare stack link

    public bool IsFull => Size == IovaAllocator.MagazineSize;
    public bool IsEmpty => Size == 0;

    /// <summary>Adds <paramref name="pfn"/>; the magazine is not full.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Push(ulong pfn)
    {
        Debug.Assert(!IsFull);
        // SAFETY: Size < MagazineSize = Pfns.Length (not full), so the slot is inside the array.
        Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(Pfns), Size++) = pfn;
    }

    /// <summary>iova_magazine_pop: the last pfn with pfn &lt;= limit, scanning downward; its slot takes the last one.</summary>
    public ulong Pop(ulong limit)
    {
        int i = Size - 1;
        while (Pfns[i] > limit)
        {
            if (i == 0) return 0;
            i--;
        }
        ulong pfn = Pfns[i];
        Pfns[i] = Pfns[--Size];
        return pfn;
    }
}

/// <summary>One CPU's cache of one size class: "loaded" and "prev" magazines under a spin lock.</summary>
internal sealed class CpuRcache
{
    public SpinGate Lock;
    public IovaMagazine Loaded = new();
    public IovaMagazine Prev = new();
    // Padding keeps two CPUs' locks off one cache line.
#pragma warning disable CS0169, IDE0051
    private long _p0, _p1, _p2, _p3, _p4, _p5, _p6;
#pragma warning restore CS0169, IDE0051
}

/// <summary>The range cache of one size class: per-CPU loaded/prev magazines plus a depot of full ones
/// (iova.c <c>struct iova_rcache</c>).</summary>
internal sealed class IovaRcache
{
    private readonly IovaAllocator _owner;
    private readonly ulong _classSize; // pages per cached range
    private readonly CpuRcache[] _cpus; // PerCpu.SlotCount() slots
    private readonly int _cpuMask;
    private readonly object _depotLock = new();
    private IovaMagazine? _depot;   // full magazines; guarded by _depotLock
    private int _depotSize;         // guarded by _depotLock
    private IovaMagazine? _spares;  // empty magazines kept for reuse (no allocation in steady state); _depotLock

    public IovaRcache(IovaAllocator owner, ulong classSize)
    {
        _owner = owner;
        _classSize = classSize;
        _cpus = new CpuRcache[PerCpu.SlotCount()];
        _cpuMask = _cpus.Length - 1;
        for (int i = 0; i < _cpus.Length; i++) _cpus[i] = new CpuRcache();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private CpuRcache ThisCpu() =>
        // SAFETY: PerCpu.Current returns a value masked by _cpuMask = _cpus.Length - 1.
        Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_cpus), PerCpu.Current(_cpuMask));

    /// <summary>__iova_rcache_insert. False when the range must go to the tree instead.</summary>
    public bool Insert(ulong pfn)
    {
        var c = ThisCpu();
        c.Lock.Enter();
        IovaMagazine loaded = c.Loaded;
        if (!loaded.IsFull)
        {
            // The common case inline (the swaps and the depot in InsertLocked).
            loaded.Push(pfn);
            c.Lock.Exit();
            return true;
        }
        IovaMagazine? trim = InsertLocked(c, pfn);
        c.Lock.Exit();
        if (trim is not null) ReturnToTree(trim);
        return true;
    }

    /// <summary>This CPU's cache, locked (for <see cref="IovaAllocator.FreeBatch"/>, which inserts a run of ranges
    /// under one acquisition). Release with <c>Lock.Exit()</c>.</summary>
    public CpuRcache EnterThisCpu()
    {
        var c = ThisCpu();
        c.Lock.Enter();
        return c;
    }

    /// <summary>The body of <see cref="Insert"/> with <paramref name="c"/>'s lock held. Returns a full magazine the
    /// bounded depot pushed out, which the caller hands to <see cref="ReturnToTree"/> (allowed with or without the
    /// CPU lock held: the order is CPU lock, depot lock, tree lock).</summary>
    public IovaMagazine? InsertLocked(CpuRcache c, ulong pfn)
    {
        Debug.Assert(c.Lock.IsHeld, "InsertLocked needs the CPU cache lock");
        IovaMagazine? trim = null;
        if (!c.Loaded.IsFull) { }
        else if (!c.Prev.IsFull) (c.Loaded, c.Prev) = (c.Prev, c.Loaded);
        else
        {
            lock (_depotLock)
            {
                var fresh = _spares;
                if (fresh is not null) _spares = fresh.Next;
                else fresh = new IovaMagazine(); // grows the magazine population once; recycled from then on
                fresh.Next = null;
                c.Loaded.Next = _depot;
                _depot = c.Loaded;
                _depotSize++;
                if (_depotSize > IovaAllocator.MaxDepotMagazines)
                {
                    // Bounded depot: hand the oldest-pushed-last magazine back to the tree (iova_depot_work_func).
                    trim = _depot;
                    _depot = trim.Next;
                    _depotSize--;
                }
                c.Loaded = fresh;
            }
        }
        c.Loaded.Pfns[c.Loaded.Size++] = pfn;
        return trim;
    }

    /// <summary>__iova_rcache_get: a cached pfn whose range [pfn, pfn+size-1] ends at or below the limit, or 0.</summary>
    public ulong Get(ulong limitPfn, ulong size)
    {
        // iova_rcache_get(iovad, size, limit_pfn + 1) -> __iova_rcache_get(rcache, limit_pfn + 1 - size).
        if (limitPfn + 1 < size) return 0;
        ulong popLimit = limitPfn + 1 - size;
        var c = ThisCpu();
        c.Lock.Enter();
        IovaMagazine loaded = c.Loaded;
        int top = loaded.Size - 1;
        if (top >= 0)
        {
            // The common case inline: the last pfn cached is below the limit (what Pop finds first).
            // SAFETY: 0 <= top < Size <= MagazineSize = Pfns.Length.
            ulong last = Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(loaded.Pfns), top);
            if (last <= popLimit)
            {
                loaded.Size = top;
                c.Lock.Exit();
                return last;
            }
        }
        return GetLocked(c, popLimit);
    }

    /// <summary>The rest of <see cref="Get"/> with <paramref name="c"/>'s lock held (released here).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private ulong GetLocked(CpuRcache c, ulong popLimit)
    {
        ulong pfn = 0;
        bool has = true;
        if (!c.Loaded.IsEmpty) { }
        else if (!c.Prev.IsEmpty) (c.Loaded, c.Prev) = (c.Prev, c.Loaded);
        else
        {
            lock (_depotLock)
            {
                var full = _depot;
                if (full is not null)
                {
                    _depot = full.Next;
                    _depotSize--;
                    full.Next = null;
                    c.Loaded.Next = _spares;
                    _spares = c.Loaded;
                    c.Loaded = full;
                }
                else has = false;
            }
        }
        if (has) pfn = c.Loaded.Pop(popLimit);
        c.Lock.Exit();
        return pfn;
    }

    public void ReturnToTree(IovaMagazine mag)
    {
        for (int i = 0; i < mag.Size; i++) _owner.TreeFree(mag.Pfns[i], _classSize);
        mag.Size = 0;
        lock (_depotLock)
        {
            mag.Next = _spares;
            _spares = mag;
        }
    }

    /// <summary>Empties every CPU's magazines and the depot into the tree.</summary>
    public void Flush()
    {
        foreach (var c in _cpus)
        {
            c.Lock.Enter();
            try
            {
                for (int i = 0; i < c.Loaded.Size; i++) _owner.TreeFree(c.Loaded.Pfns[i], _classSize);
                c.Loaded.Size = 0;
                for (int i = 0; i < c.Prev.Size; i++) _owner.TreeFree(c.Prev.Pfns[i], _classSize);
                c.Prev.Size = 0;
            }
            finally { c.Lock.Exit(); }
        }
        while (true)
        {
            IovaMagazine? m;
            lock (_depotLock)
            {
                m = _depot;
                if (m is null) break;
                _depot = m.Next;
                _depotSize--;
            }
            ReturnToTree(m);
        }
    }
}
