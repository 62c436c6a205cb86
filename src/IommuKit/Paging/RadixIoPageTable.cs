using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace IommuKit.Paging;

/// <summary>
/// One table page: 512 real PTEs plus, in a parallel array, the next-level tables they point at (the "physical
/// address" in a table PTE is a model address; walks follow <see cref="Child"/>).
/// </summary>
/// <remarks>
/// <para>Locking: <see cref="Lock"/>/<see cref="Unlock"/> is a per-table spin lock (<see cref="SpinGate"/>). It guards
/// every write to <see cref="Pte"/>, <see cref="Child"/>, <see cref="Used"/>, <see cref="Dead"/>, <see cref="Key"/> and <see cref="Version"/>. Reads of
/// <see cref="Pte"/>/<see cref="Child"/> are lock-free (walks). Lock order: a parent's lock may be held while taking a
/// child's (only to publish a new child); no path holds a child's lock while taking its parent's, so no deadlock.</para>
/// <para>Lifetime: a table whose last entry is cleared is marked <see cref="Dead"/>, then unlinked from its parent and
/// put in the page table's pool of free table pages. Reuse takes a new <see cref="Version"/> (odd while the identity
/// changes) and <see cref="Key"/>, and stays <see cref="Dead"/> until it is published in a parent. Lock-free holders
/// of a stale reference notice: walkers re-check the version of every table they read (seqlock), writers compare the
/// version they saw with the one under the lock. This is the kernel's "free table pages only after the walkers are
/// done" (the gather freelist) done with versions instead of a grace period.</para>
/// </remarks>
internal sealed class IoTable
{
    public const int Entries = 512;

    // The PTEs and the children are inline in the table object (not arrays of their own), so a descent from one
    // level to the next is one load (the child) instead of two (the child array, then the child): the walks of a
    // map, an unmap and an IOTLB miss are chains of these loads.
    public PteArray Pte;
    public ChildArray Child;
    /// <summary>Model physical address of this table page (what a table PTE pointing here holds).</summary>
    public readonly ulong Phys;
    /// <summary>Non-zero PTEs in this table. Guarded by the table lock.</summary>
    public int Used;
    /// <summary>True while the table is not linked in the tree: emptied and being freed, pooled, or new and not yet
    /// published. Writers that find it set walk again from the root.</summary>
    public volatile bool Dead;
    /// <summary>Identity of the table's position: (first IOVA it covers) | level. Set when (re)used.</summary>
    public ulong Key;
    /// <summary>Bumped twice each time the table page is reused (odd in between).</summary>
    public int Version;
    private SpinGate _lock;

    public IoTable(ulong phys, ulong key, bool dead)
    {
        Phys = phys;
        Key = key;
        Dead = dead;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Lock() => _lock.Enter();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Unlock() => _lock.Exit();

    public bool IsLocked => _lock.IsHeld;

    /// <summary>The 512 PTEs of a table, inline.</summary>
    [InlineArray(Entries)]
    public struct PteArray
    {
        private ulong _e;
    }

    /// <summary>The next-level table of each PTE, inline.</summary>
    [InlineArray(Entries)]
    public struct ChildArray
    {
        private IoTable? _e;
    }
}

/// <summary>Structure self-check for tests (null = sound).</summary>
internal interface IValidatable
{
    string? Validate();
}

/// <summary>The tables on the way from the root to a leaf, indexed by level (no allocation).</summary>
[InlineArray(6)]
internal struct TablePath
{
    private IoTable? _e;
}

/// <summary>The <see cref="IoTable.Version"/> each table of a <see cref="TablePath"/> had when it was read.</summary>
[InlineArray(6)]
internal struct VersionPath
{
    private int _e;
}

/// <summary>
/// A radix IO page table (4 or 5 levels of 512 entries, 4 KiB granule) shared by the x86-64 (VT-d second-level) and
/// ARM LPAE stage-1 formats; the format only changes the PTE bits (<typeparamref name="TF"/>).
/// </summary>
/// <remarks>
/// <para>Semantics (iommufd-strict, not io-pgtable's): <see cref="Map"/> over any existing mapping fails with EEXIST;
/// <see cref="Unmap"/> of a range that is not entirely mapped fails with ENOENT; an unmap that would split a large page
/// (its range starts or ends inside a 2 MiB/1 GiB page) fails with EINVAL. This last rule is IommuKit's choice: the
/// kernel's io-pgtable code (e.g. <c>arm_lpae_split_blk_unmap</c>) splits the block instead. A failed call changes
/// nothing: a failed map rolls back the part it mapped, and an unmap validates before it clears.</para>
/// <para>Concurrency: walks (<see cref="TryIovaToPhys(ulong, out ulong, out IommuProt)"/>) take no lock. Map/unmap take
/// one table's spin lock at a time (two only to publish a new child, parent then child; the pool lock is taken under a
/// table lock and nothing under it; see <see cref="IoTable"/>), so calls on disjoint ranges run in parallel except when they touch the same table page
/// for a few nanoseconds. Calls on overlapping ranges racing each other are the caller's bug: each still fails or
/// succeeds cleanly per entry, but "a failed call changes nothing" is only guaranteed for ranges nobody else touches.</para>
/// </remarks>
internal sealed class RadixIoPageTable<TF> : IIoPageTable, IValidatable where TF : struct, IPteFormat
{
    private const int PageShift = 12;
    private const int LevelBits = 9;
    /// <summary>Largest leaf level: 1 GiB pages (x86 PDPE 1G pages, ARM level-1 blocks); no 512 GiB pages exist.</summary>
    private const int MaxLeafLevel = 2;
    private const ulong PageSize = 1UL << PageShift;

    /// <summary>Free table pages kept for reuse, so map/unmap churn allocates nothing (8 KiB of managed memory each).</summary>
    public const int TablePoolSize = 64;

    private static long s_nextTablePfn = 0x10_0000; // model addresses of table pages; only for realistic PTE bits

    // The root table: until the first map, the shared empty root (never written: every walk, unmap and check finds
    // nothing present in it), so an unused domain costs no 8 KiB table page (a boot of 100,000 groups allocated
    // ~200 MB of roots, most never mapped). Map swaps in the real root once; it is never replaced after that.
    private static readonly IoTable s_emptyRoot = new(0, KeyOf(Top, 0), dead: false);
    private IoTable _root;
    // The leaf table of the last single-page map or unmap that descended (any thread): a hint, never trusted. The
    // single-page paths try it first and prove it under its lock: not dead means linked with every PTE above it
    // written (GetOrCreateChild makes a table alive only after linking it, and a table is marked dead before it is
    // unlinked), and its key says which 2 MiB it covers. One reference, so it cannot tear; a stale one (emptied,
    // pooled, reused elsewhere) fails the check and the descent runs. A descent sets it only when there is none, and
    // whoever marks the hinted leaf dead clears it, so threads working in different 2 MiB regions do not take turns
    // rewriting it (each write would pull the line from the other CPU): the first leaf hinted keeps it until it
    // empties. Keeps at most one pooled table page alive (a clear lost to a race leaves a dead hint, dropped the
    // next time it fails the check).
    private IoTable? _leafHint;
    // The key _leafHint had when it was set, so a thread whose range it does not cover never reads the hinted table
    // (whose first line the hinted range's mapper writes all the time: Used, the lock-adjacent fields). Written with
    // the hint but not atomically with it: a torn pair only costs a lock and the under-lock key check.
    private ulong _leafHintKey = ulong.MaxValue;

    /// <summary>Forgets the hint if it is <paramref name="t"/>, which was just marked dead (a race with a new hint
    /// being set at most loses that hint).</summary>
    private void DropLeafHint(IoTable t)
    {
        if (ReferenceEquals(_leafHint, t)) _leafHint = null;
    }

    private void SetLeafHint(IoTable t)
    {
        _leafHintKey = t.Key; // the caller holds or just held t's lock while t was alive: its key is its position
        _leafHint = t;
    }
    private readonly int _maxTablePages;
    private int _tablePages; // includes the root; Interlocked
    // Created when the first table page is freed: a domain that never frees one (most domains of a booted core) does
    // not carry 64 empty slots (536 bytes; after a boot of 131,072 devices, 46,308 of these were a sixth of the heap).
    private IoTable?[]? _pool; // the slots are guarded by _poolLock
    private int _poolCount;  // guarded by _poolLock
    private SpinGate _poolLock;

    public RadixIoPageTable(int maxTablePages)
    {
        if (maxTablePages < 1) throw new ArgumentOutOfRangeException(nameof(maxTablePages));
        _maxTablePages = maxTablePages;
        _root = s_emptyRoot;
        _tablePages = 1; // the root counts from the start, whether or not its page exists yet
    }

    public IoPageTableFormat Format => TF.Format;
    public ulong PageSizeBitmap => (1UL << 12) | (1UL << 21) | (1UL << 30);
    public int IovaBits => PageShift + LevelBits * TF.Levels;
    public int TablePageCount => Volatile.Read(ref _tablePages);
    public int MaxTablePages => _maxTablePages;

    private static int Top => TF.Levels - 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Shift(int level) => PageShift + LevelBits * level;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Index(ulong iova, int level) => (int)(iova >> Shift(level)) & (IoTable.Entries - 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ref ulong PteAt(IoTable t, int i) =>
        // SAFETY: i is a PTE index (0..511, from Index or a loop below Entries).
        ref Unsafe.Add(ref Unsafe.As<IoTable.PteArray, ulong>(ref t.Pte), (nint)(uint)i);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ref IoTable? ChildAt(IoTable t, int i) =>
        // SAFETY: as in PteAt.
        ref Unsafe.Add(ref Unsafe.As<IoTable.ChildArray, IoTable?>(ref t.Child), (nint)(uint)i);

    /// <summary>The first map's real root (one wins a race; the loser's page is garbage).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private IoTable MaterializeRoot()
    {
        var root = new IoTable(NextTablePhys(), KeyOf(Top, 0), dead: false);
        return Interlocked.CompareExchange(ref _root, root, s_emptyRoot) is { } prev && !ReferenceEquals(prev, s_emptyRoot) ? prev : root;
    }

    private static ulong NextTablePhys() => (ulong)Interlocked.Increment(ref s_nextTablePfn) << PageShift;

    /// <summary>The <see cref="IoTable.Key"/> of the level-<paramref name="level"/> table that covers <paramref name="iova"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong KeyOf(int level, ulong iova) => (iova & ~((1UL << Shift(level + 1)) - 1)) | (uint)level;

    /// <summary>A table page for position <paramref name="key"/>, from the pool or new; still <see cref="IoTable.Dead"/>
    /// (unpublished) so nobody can write into it before <see cref="GetOrCreateChild"/> links it.</summary>
    private IoTable TakeTable(ulong key)
    {
        IoTable? t = null;
        _poolLock.Enter();
        if (_poolCount > 0)
        {
            t = _pool![--_poolCount];
            _pool[_poolCount] = null;
        }
        _poolLock.Exit();
        if (t is null) return new IoTable(NextTablePhys(), key, dead: true);
        Debug.Assert(t.Dead && t.Used == 0);
        t.Lock();
        Interlocked.Increment(ref t.Version); // odd: identity changing; stale readers retry
        t.Key = key;
        Interlocked.Increment(ref t.Version);
        t.Unlock();
        return t;
    }

    /// <summary>Returns an unlinked, dead, empty table page to the pool (or to the GC when the pool is full).</summary>
    private void ReleaseTable(IoTable t)
    {
        Debug.Assert(t.Dead);
        IoTable?[] pool = _pool ?? CreatePool(); // allocated outside the spin lock
        _poolLock.Enter();
        if (_poolCount < TablePoolSize) pool[_poolCount++] = t;
        _poolLock.Exit();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private IoTable?[] CreatePool() =>
        Interlocked.CompareExchange(ref _pool, new IoTable?[TablePoolSize], null) ?? _pool!;


    /// <summary>Checks a range against the IOVA space: non-zero, 4 KiB aligned, no overflow, below 2^IovaBits.</summary>
    private bool RangeOk(ulong iova, ulong size)
    {
        const ulong mask = (1UL << PageShift) - 1;
        if (size == 0 || ((iova | size) & mask) != 0) return false;
        ulong end = iova + size; // overflow case: end wraps below iova
        if (end < iova) return false;
        return end <= 1UL << IovaBits;
    }

    /// <inheritdoc/>
    public Errno Map(ulong iova, ulong phys, ulong size, IommuProt prot) =>
        MapChecked(iova, phys, size, prot, singlePageFastPath: true);

    /// <summary><see cref="Map"/> without the single-page fast path (tests compare the two).</summary>
    internal Errno MapWithoutFastPath(ulong iova, ulong phys, ulong size, IommuProt prot) =>
        MapChecked(iova, phys, size, prot, singlePageFastPath: false);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Errno MapChecked(ulong iova, ulong phys, ulong size, IommuProt prot, bool singlePageFastPath)
    {
        // iommufd/io-pgtable argument checks: granule-aligned iova/paddr/size, no wrap, inside the input and output
        // address sizes (io-pgtable-arm arm_lpae_map_pages: "Out of range" -> -ERANGE there; we say EINVAL).
        if (!RangeOk(iova, size) || (phys & ((1UL << PageShift) - 1)) != 0) return Errno.EINVAL;
        ulong pend = phys + size;
        if (pend < phys || pend > 1UL << TF.OutputBits) return Errno.EINVAL;
        if ((prot & (IommuProt.Read | IommuProt.Write)) == 0) return Errno.EINVAL;
        if (singlePageFastPath && size == PageSize && TryMapPage(iova, phys, prot)) return Errno.Ok;

        ulong done = 0;
        Errno e = MapCore(iova, phys, size, prot, ref done);
        if (e != Errno.Ok && done != 0)
        {
            // Roll back exactly what this call mapped: [iova, iova+done) is ours and ends on one of our page borders.
            Errno u = UnmapCore(iova, done);
            Debug.Assert(u == Errno.Ok, "rollback of our own mapping cannot fail");
        }
        return e;
    }

    /// <summary>
    /// The lock-free descent of the single-page paths (<see cref="TryMapPage"/>, <see cref="TryUnmapPage"/>) to the
    /// leaf table of <paramref name="iova"/> and the version it had when reached: false when a PTE on the way is not
    /// present or has no child (a large page, a table not linked yet) or the table reached is not the one covering
    /// <paramref name="iova"/>, and the caller takes the general path.
    /// </summary>
    /// <remarks>
    /// Only the leaf is checked, because only the leaf is written: its version is read, then its key (so the version
    /// vouches for the key: a reuse between the two changes the version), and the caller, under the leaf's lock, finds
    /// it not dead with that version still; the key then says it is the live table of this position, whatever path led
    /// to it (a table above that was freed and reused meanwhile can only lead to a table of another position, which
    /// the key refuses, or to this one). An odd version (being reused) never equals the even one found under the lock.
    /// The tables above get no version, dead or key check: they are only read. What each level does check is that its
    /// PTE is present, read before the child as in <see cref="MapCore"/>: a child whose PTE its creator has not written
    /// yet is not used, or a map could return before walkers (which follow the PTEs) can see it. The levels are
    /// unrolled (the format's level count is a constant), so each index is a shift and a mask by constants.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryLeafTable(ulong iova, out IoTable leaf, out int version)
    {
        // The shared empty root has no present entry: false at once.
        IoTable? t = Volatile.Read(ref _root);
        if (TF.Levels > 5 || TF.Levels < 4) return TryLeafTableLoop(iova, out leaf, out version);
        if (TF.Levels == 5) t = ChildIfPresent(t, iova, 4);
        if (t is not null) t = ChildIfPresent(t, iova, 3);
        if (t is not null) t = ChildIfPresent(t, iova, 2);
        if (t is not null) t = ChildIfPresent(t, iova, 1);
        if (t is null)
        {
            leaf = null!;
            version = 0;
            return false;
        }
        leaf = t;
        version = Volatile.Read(ref t.Version); // acquire: the key below is read after it
        return t.Key == KeyOf(0, iova);
    }

    /// <summary>The child of the table PTE at <paramref name="level"/> for <paramref name="iova"/>, or null when that
    /// PTE is not present or has no child (a large page).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static IoTable? ChildIfPresent(IoTable t, ulong iova, int level)
    {
        int idx = Index(iova, level);
        return TF.IsPresent(Volatile.Read(ref PteAt(t, idx))) ? Volatile.Read(ref ChildAt(t, idx)) : null;
    }

    /// <summary><see cref="TryLeafTable"/> for a level count it does not unroll.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool TryLeafTableLoop(ulong iova, out IoTable leaf, out int version)
    {
        IoTable? t = Volatile.Read(ref _root);
        for (int l = Top; l > 0 && t is not null; l--) t = ChildIfPresent(t, iova, l);
        leaf = t!;
        version = 0;
        if (t is null) return false;
        version = Volatile.Read(ref t.Version);
        return t.Key == KeyOf(0, iova);
    }

    /// <summary>
    /// The DMA API's common case, one 4 KiB page into tables that exist: the walk of <see cref="MapCore"/> without its
    /// batching, table creation and retries. True when mapped; false when anything is unusual (a table missing, dead or
    /// being reused, a large page on the way, the slot taken): nothing was changed and the caller takes the general
    /// path, which gives the same result it always did. The leaf is proved by <see cref="TryLeafTable"/>'s key check and
    /// this lock's version and liveness check (see its remarks); the tables above are only read.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryMapPage(ulong iova, ulong phys, IommuProt prot)
    {
        // The leaf of the last single-page call first: no descent when it covers iova (see _leafHint).
        if (_leafHintKey == KeyOf(0, iova) && _leafHint is { } h)
        {
            ref ulong hs = ref PteAt(h, Index(iova, 0));
            h.Lock();
            // Under the lock: alive (so linked, with every PTE above it written) and still this position's table.
            if (!h.Dead && h.Key == KeyOf(0, iova) && hs == 0)
            {
                hs = TF.MakeLeaf(0, prot, 0) | phys;
                h.Used++;
                CheckLocked(h, "map page (hint)");
                h.Unlock();
                return true;
            }
            if (h.Dead) DropLeafHint(h);
            h.Unlock(); // dead, reused, or the slot taken: the descent decides
        }
        if (!TryLeafTable(iova, out IoTable t, out int tv)) return false;
        ref ulong slot = ref PteAt(t, Index(iova, 0));
        t.Lock();
        if (t.Dead || t.Version != tv || slot != 0)
        {
            t.Unlock();
            return false;
        }
        slot = TF.MakeLeaf(0, prot, 0) | phys; // one 8-byte store: walkers see 0 or the whole entry
        t.Used++;
        CheckLocked(t, "map page");
        t.Unlock();
        if (_leafHint is null) SetLeafHint(t); // only when there is none (see _leafHint)
        return true;
    }

    private Errno MapCore(ulong iova, ulong phys, ulong size, IommuProt prot, ref ulong done)
    {
        while (done < size)
        {
            ulong cur = iova + done, pa = phys + done, rem = size - done;
            int lp = LeafLevelFor(cur, pa, rem);

            // Descend to the table at level lp, creating missing tables (a table page is taken only when absent).
            IoTable t = Volatile.Read(ref _root);
            if (ReferenceEquals(t, s_emptyRoot)) t = MaterializeRoot();
            int tv = 0; // the root is never reused
            bool retry = false;
            for (int l = Top; l > lp; l--)
            {
                int idx = Index(cur, l);
                // PTE first, like walkers: a child published by a creator that has not yet written the PTE (it
                // still holds the lock) must not be used, or this map could finish before walkers can see it.
                ulong pte = Volatile.Read(ref PteAt(t, idx));
                IoTable? c = TF.IsPresent(pte) ? Volatile.Read(ref ChildAt(t, idx)) : null;
                int cv = c is null ? 0 : Volatile.Read(ref c.Version);
                if (c is null || c.Dead || (cv & 1) != 0 || c.Key != KeyOf(l - 1, cur))
                {
                    Errno r = GetOrCreateChild(t, tv, idx, KeyOf(l - 1, cur), out c, out cv, out retry);
                    if (retry) break;
                    if (r != Errno.Ok) return r;
                }
                t = c!;
                tv = cv;
            }
            if (retry) continue;

            int shift = Shift(lp);
            ulong span = 1UL << shift;
            int first = Index(cur, lp);
            int n = (int)Math.Min((ulong)(IoTable.Entries - first), rem >> shift);
            ulong template = TF.MakeLeaf(0, prot, lp);

            t.Lock();
            if (t.Dead || t.Version != tv) { t.Unlock(); continue; } // freed (maybe reused) under us: walk again
            int k = 0;
            if (AllZero(t, first, n))
            {
                // Common case: the whole batch is free. One vectorised check, then plain stores (each 8-byte store
                // is atomic; ordering between entries does not matter to walkers, the unlock publishes to writers).
                ref ulong p0 = ref PteAt(t, first);
                ulong v = template | pa;
                // Four stores per iteration: the loop's own increments and branch cost as much as a store.
                for (; k + 4 <= n; k += 4, v += 4 * span)
                {
                    Unsafe.Add(ref p0, k) = v;
                    Unsafe.Add(ref p0, k + 1) = v + span;
                    Unsafe.Add(ref p0, k + 2) = v + 2 * span;
                    Unsafe.Add(ref p0, k + 3) = v + 3 * span;
                }
                for (; k < n; k++, v += span) Unsafe.Add(ref p0, k) = v;
            }
            else for (; k < n; k++)
            {
                ref ulong slot = ref PteAt(t, first + k);
                if (slot != 0)
                {
                    // A dead (being-freed) table may be replaced; anything else is a mapping -> EEXIST.
                    ref IoTable? child = ref ChildAt(t, first + k);
                    if (child is null || !child.Dead) break;
                    ReleaseTable(child); // its unmapper will find the slot changed and leave it (and the count) to us
                    child = null;
                    t.Used--;
                    Interlocked.Decrement(ref _tablePages);
                }
                Volatile.Write(ref slot, template | (pa + (ulong)k * span));
            }
            t.Used += k;
            CheckLocked(t, "map batch");
            t.Unlock();
            done += (ulong)k * span;
            if (k < n) return Errno.EEXIST; // iommufd: mapping over a mapping
        }
        return Errno.Ok;
    }

    /// <summary>True when PTEs [first, first+n) of <paramref name="t"/> are all zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool AllZero(IoTable t, int first, int n)
    {
        ref ulong p = ref PteAt(t, first);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var acc = Vector256<ulong>.Zero;
            for (; i + 4 <= n; i += 4) acc |= Vector256.LoadUnsafe(ref p, (nuint)i);
            if (acc != Vector256<ulong>.Zero) return false;
        }
        for (; i < n; i++) if (Unsafe.Add(ref p, i) != 0) return false;
        return true;
    }

    /// <summary>True when PTEs [first, first+n) of <paramref name="t"/> are all present.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool AllPresent(IoTable t, int first, int n)
    {
        ref ulong p = ref PteAt(t, first);
        ulong mask = TF.PresentMask;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var m = Vector256.Create(mask);
            var missing = Vector256<ulong>.Zero;
            for (; i + 4 <= n; i += 4)
                missing |= Vector256.Equals(Vector256.LoadUnsafe(ref p, (nuint)i) & m, Vector256<ulong>.Zero);
            if (missing != Vector256<ulong>.Zero) return false;
        }
        for (; i < n; i++) if ((Unsafe.Add(ref p, i) & mask) == 0) return false;
        return true;
    }

    /// <summary>Largest page level whose size both addresses are aligned to and the remaining length covers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int LeafLevelFor(ulong iova, ulong phys, ulong rem)
    {
        // iommu_pgsize(): the largest supported page size that fits alignment and length.
        for (int l = MaxLeafLevel; l > 0; l--)
        {
            ulong span = 1UL << Shift(l);
            if (((iova | phys) & (span - 1)) == 0 && rem >= span) return l;
        }
        return 0;
    }

    /// <summary>
    /// Under <paramref name="t"/>'s lock: the live child at <paramref name="idx"/>, or a new one (from the pool)
    /// published there. <paramref name="retry"/> when <paramref name="t"/> itself was freed or reused meanwhile
    /// (its version is no longer <paramref name="tv"/>): the caller walks again from the root.
    /// </summary>
    private Errno GetOrCreateChild(IoTable t, int tv, int idx, ulong childKey, out IoTable? child, out int childVersion,
        out bool retry)
    {
        child = null;
        childVersion = 0;
        retry = false;
        // Named cap on table pages: ENOMEM past it (the kernel's table allocation failing).
        if (Interlocked.Increment(ref _tablePages) > _maxTablePages)
        {
            Interlocked.Decrement(ref _tablePages);
            return Errno.ENOMEM;
        }
        IoTable fresh = TakeTable(childKey);

        t.Lock();
        if (t.Dead || t.Version != tv)
        {
            t.Unlock();
            Interlocked.Decrement(ref _tablePages);
            ReleaseTable(fresh);
            retry = true;
            return Errno.Ok;
        }
        ref ulong slot = ref PteAt(t, idx);
        ref IoTable? c = ref ChildAt(t, idx);
        ulong old = slot;
        if (old != 0 && c is null)
        {
            t.Unlock();
            Interlocked.Decrement(ref _tablePages);
            ReleaseTable(fresh);
            return Errno.EEXIST; // a large page covers this range
        }
        if (c is not null && !c.Dead)
        {
            child = c; // installed by a concurrent map; live and linked here, so its version is stable
            childVersion = Volatile.Read(ref c.Version);
            t.Unlock();
            Interlocked.Decrement(ref _tablePages);
            ReleaseTable(fresh);
            return Errno.Ok;
        }
        if (c is not null)
        {
            // Replacing a dead table: its unmapper will find the slot changed and leave it (and the count) to us.
            Interlocked.Decrement(ref _tablePages);
            ReleaseTable(c);
        }
        // Publish: the child before the PTE so a walker that sees the table PTE finds the table, then alive (under
        // its lock: a stale writer holding it must see the new state whole). Alive last, so a table that is not dead
        // is linked, with its PTE written, and so is every table above it (each counts the one below in Used and
        // cannot empty while it is linked): the single-page paths' leaf hint relies on it. Until then a writer that
        // reaches it finds it dead and waits for t's lock in GetOrCreateChild, which we hold.
        Volatile.Write(ref c, fresh);
        Volatile.Write(ref slot, TF.MakeTable(fresh.Phys));
        BetweenLinkAndAlive?.Invoke(fresh);
        fresh.Lock();
        fresh.Dead = false;
        fresh.Unlock();
        if (old == 0) t.Used++;
        CheckLocked(t, "create child");
        // The version is read while t's lock keeps fresh linked here. Read after the unlock, it could belong to a
        // later life: another thread may map into fresh, unmap (emptying and freeing it) and take it from the pool for
        // another position, and this caller would then write its PTEs into a table that now covers other addresses
        // (a mapping landing in the wrong 2 MiB region, its own lost, and tables left behind).
        childVersion = Volatile.Read(ref fresh.Version);
        t.Unlock();
        child = fresh;
        return Errno.Ok;
    }

    /// <inheritdoc/>
    public Errno Unmap(ulong iova, ulong size) => UnmapChecked(iova, size, singlePageFastPath: true);

    /// <summary><see cref="Unmap"/> without the single-page fast path (tests compare the two).</summary>
    internal Errno UnmapWithoutFastPath(ulong iova, ulong size) => UnmapChecked(iova, size, singlePageFastPath: false);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Errno UnmapChecked(ulong iova, ulong size, bool singlePageFastPath)
    {
        if (!RangeOk(iova, size)) return Errno.EINVAL;
        if (singlePageFastPath && size == PageSize && TryUnmapPage(iova)) return Errno.Ok;
        // A range inside one 2 MiB region is handled by one locked batch (check, then clear). Longer ranges are
        // checked first without locks so a failure changes nothing.
        bool single = (iova >> Shift(1)) == ((iova + size - 1) >> Shift(1));
        if (!single)
        {
            Errno c = CheckUnmap(iova, size);
            if (c != Errno.Ok) return c;
        }
        return UnmapCore(iova, size);
    }

    /// <summary>
    /// The DMA API's common case, one mapped 4 KiB page: the walk of <see cref="UnmapCore"/> without its batching and
    /// without recording the path (it is walked again in the rare case the leaf table empties). True when unmapped;
    /// false when anything is unusual (not mapped, a large page, a table being freed or reused): nothing was changed
    /// and the caller takes the general path, which gives the same result (ENOENT, EINVAL) it always did.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryUnmapPage(ulong iova)
    {
        IoTable t;
        int tv;
        ref ulong slot = ref Unsafe.NullRef<ulong>();
        // The leaf of the last single-page call first, as in TryMapPage.
        if (_leafHintKey == KeyOf(0, iova) && _leafHint is { } h)
        {
            slot = ref PteAt(h, Index(iova, 0));
            h.Lock();
            if (!h.Dead && h.Key == KeyOf(0, iova) && TF.IsPresent(slot))
            {
                t = h;
                tv = h.Version; // stable while h is locked and alive
                goto Clear;
            }
            if (h.Dead) DropLeafHint(h);
            h.Unlock();
        }
        if (!TryLeafTable(iova, out t, out tv)) return false;
        slot = ref PteAt(t, Index(iova, 0));
        t.Lock();
        if (t.Dead || t.Version != tv || !TF.IsPresent(slot)) // the key was checked under this version
        {
            t.Unlock();
            return false;
        }
        if (_leafHint is null) SetLeafHint(t); // only when there is none (see _leafHint)
    Clear:
        slot = 0;
        bool empty = --t.Used == 0; // a leaf table is never the root
        if (empty)
        {
            t.Dead = true;
            DropLeafHint(t);
        }
        CheckLocked(t, "unmap page");
        t.Unlock();
        if (empty) FreeEmptyLeaf(t, tv, iova);
        return true;
    }

    /// <summary>
    /// After <see cref="TryUnmapPage"/> emptied (and marked dead) the leaf table <paramref name="leaf"/> of
    /// <paramref name="iova"/>: walks to its parent again and hands over to <see cref="FreeUpwards"/>. While the dead
    /// leaf is linked, every table above it stays linked (each counts it or its ancestor in <see cref="IoTable.Used"/>),
    /// so this walk finds its parents; if a map replaced the leaf meanwhile, <see cref="FreeUpwards"/> sees the slot
    /// changed and leaves it, as after <see cref="UnmapCore"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void FreeEmptyLeaf(IoTable leaf, int leafVersion, ulong iova)
    {
        TablePath path = default;
        VersionPath versions = default;
        IoTable t = Volatile.Read(ref _root);
        path[Top] = t;
        for (int l = Top; l > 1; l--)
        {
            int idx = Index(iova, l);
            IoTable? c = TF.IsPresent(Volatile.Read(ref PteAt(t, idx))) ? Volatile.Read(ref ChildAt(t, idx)) : null;
            if (c is null) return; // unlinked already: a map replaced the leaf and its parents were freed since
            t = c;
            path[l - 1] = t;
            versions[l - 1] = Volatile.Read(ref t.Version);
        }
        path[0] = leaf;
        versions[0] = leafVersion;
        FreeUpwards(ref path, ref versions, 0, iova);
    }

    private Errno CheckUnmap(ulong iova, ulong size)
    {
        ulong done = 0;
        while (done < size)
        {
            ulong cur = iova + done, rem = size - done;
            IoTable t = Volatile.Read(ref _root);
            int l = Top;
            ulong pte;
            while (true)
            {
                pte = Volatile.Read(ref PteAt(t, Index(cur, l)));
                if (!TF.IsPresent(pte)) return Errno.ENOENT;
                if (TF.IsLeaf(pte, l)) break;
                IoTable? c = Volatile.Read(ref ChildAt(t, Index(cur, l)));
                if (c is null) return Errno.ENOENT;
                t = c;
                l--;
            }
            int shift = Shift(l);
            ulong span = 1UL << shift;
            if ((cur & (span - 1)) != 0 || rem < span) return Errno.EINVAL; // would split a large page
            int first = Index(cur, l);
            int n = (int)Math.Min((ulong)(IoTable.Entries - first), rem >> shift);
            int k = 1;
            while (k < n)
            {
                ulong p = Volatile.Read(ref PteAt(t, first + k));
                if (!TF.IsPresent(p)) return Errno.ENOENT;
                if (!TF.IsLeaf(p, l)) break;
                k++;
            }
            done += (ulong)k * span; // a tail inside a large page is caught by the next walk (rem < span)
        }
        return Errno.Ok;
    }

    /// <summary>
    /// Clears [iova, iova+size) batch by batch (one table lock per batch). Each batch is checked under its lock before
    /// anything in it is cleared, so a range inside one batch (the single 2 MiB-region case, and rollback) fails
    /// without changes; longer ranges were checked by <see cref="CheckUnmap"/> first.
    /// </summary>
    private Errno UnmapCore(ulong iova, ulong size)
    {
        TablePath path = default;
        VersionPath versions = default;
        ulong done = 0;
        while (done < size)
        {
            ulong cur = iova + done, rem = size - done;
            IoTable t = Volatile.Read(ref _root);
            int l = Top;
            path[l] = t;
            versions[l] = 0;
            while (true)
            {
                int idx = Index(cur, l);
                ulong pte = Volatile.Read(ref PteAt(t, idx));
                if (!TF.IsPresent(pte)) return Errno.ENOENT;
                if (TF.IsLeaf(pte, l)) break;
                IoTable? c = Volatile.Read(ref ChildAt(t, idx));
                if (c is null) return Errno.ENOENT;
                t = c;
                l--;
                path[l] = t;
                versions[l] = Volatile.Read(ref t.Version);
            }
            int shift = Shift(l);
            ulong span = 1UL << shift;
            if ((cur & (span - 1)) != 0 || rem < span) return Errno.EINVAL; // would split a large page (our rule)
            int first = Index(cur, l);
            int n = (int)Math.Min((ulong)(IoTable.Entries - first), rem >> shift);

            t.Lock();
            if (t.Dead || t.Version != versions[l] || t.Key != KeyOf(l, cur))
            {
                t.Unlock();
                continue; // freed or reused since the walk read it: walk again (the next walk sees the truth)
            }
            int k = 0;
            if (l == 0)
            {
                // Leaf level: every present entry is a page, so one vectorised presence check covers the batch.
                if (!AllPresent(t, first, n))
                {
                    t.Unlock();
                    return Errno.ENOENT; // validated callers only get here when an overlapping call raced them
                }
                k = n;
            }
            else while (k < n)
            {
                ulong p = PteAt(t, first + k);
                if (!TF.IsPresent(p))
                {
                    t.Unlock();
                    return Errno.ENOENT; // validated callers only get here when an overlapping call raced them
                }
                if (!TF.IsLeaf(p, l)) break; // a table below: the next walk descends into it
                k++;
            }
            // 8-byte stores (walkers see old or 0), four per iteration as in MapCore.
            ref ulong c0 = ref PteAt(t, first);
            int j = 0;
            for (; j + 4 <= k; j += 4)
            {
                Unsafe.Add(ref c0, j) = 0UL;
                Unsafe.Add(ref c0, j + 1) = 0UL;
                Unsafe.Add(ref c0, j + 2) = 0UL;
                Unsafe.Add(ref c0, j + 3) = 0UL;
            }
            for (; j < k; j++) Unsafe.Add(ref c0, j) = 0UL;
            t.Used -= k;
            bool empty = t.Used == 0 && l < Top;
            if (empty)
            {
                t.Dead = true;
                if (l == 0) DropLeafHint(t);
            }
            CheckLocked(t, "unmap batch");
            t.Unlock();
            done += (ulong)k * span;
            if (empty) FreeUpwards(ref path, ref versions, l, cur);
        }
        return Errno.Ok;
    }

    /// <summary>
    /// Unlinks the now-dead table at <paramref name="level"/> (on the walk for <paramref name="iova"/>) from its parent,
    /// and keeps going up while parents become empty (the kernel frees table pages on unmap via the gather freelist).
    /// </summary>
    private void FreeUpwards(ref TablePath path, ref VersionPath versions, int level, ulong iova)
    {
        IoTable child = path[level]!;
        int childVersion = versions[level];
        for (int pl = level + 1; pl <= Top; pl++)
        {
            IoTable parent = path[pl]!;
            int idx = Index(iova, pl);
            parent.Lock();
            ref IoTable? slot = ref ChildAt(parent, idx);
            // Still linked here, and still the same incarnation (a pooled page reused at the same slot is not ours).
            if (parent.Dead || parent.Version != versions[pl] || !ReferenceEquals(slot, child) ||
                Volatile.Read(ref child.Version) != childVersion)
            {
                parent.Unlock(); // a map replaced it already (and pooled it)
                return;
            }
            Volatile.Write(ref PteAt(parent, idx), 0UL); // PTE first: walkers stop here
            Volatile.Write(ref slot, null);
            parent.Used--;
            bool empty = parent.Used == 0 && pl < Top;
            if (empty) parent.Dead = true;
            CheckLocked(parent, "free upwards");
            parent.Unlock();
            Interlocked.Decrement(ref _tablePages);
            ReleaseTable(child);
            if (!empty) return;
            child = parent;
            childVersion = versions[pl];
        }
    }

    /// <summary>Per-table invariant check before each writer unlocks; compiled in only with PARANOID (stress runs).</summary>
    [Conditional("PARANOID")]
    private static void CheckLocked(IoTable t, string where)
    {
        if (!t.IsLocked) throw new InvalidOperationException(where + ": not locked");
        int used = 0;
        for (int i = 0; i < IoTable.Entries; i++)
        {
            if (t.Pte[i] != 0) used++;
            if (t.Pte[i] == 0 && t.Child[i] is not null)
                throw new InvalidOperationException($"{where}: child without pte at {i}");
        }
        if (used != t.Used) throw new InvalidOperationException($"{where}: Used {t.Used} != {used}");
    }

    /// <summary>Called (tests) with a new table after it is linked and before it is made alive, the parent locked.</summary>
    internal Action<IoTable>? BetweenLinkAndAlive;

    /// <summary>The leaf table the single-page paths try first (tests; setting it stands for a clear lost to a race).</summary>
    internal IoTable? LeafHint
    {
        get => _leafHint;
        set
        {
            _leafHintKey = value?.Key ?? ulong.MaxValue;
            _leafHint = value;
        }
    }

    /// <summary>The root table (tests that set up what a lock-free walker can meet).</summary>
    internal IoTable Root => Volatile.Read(ref _root);

    /// <summary>The walk for <paramref name="iova"/>, one "level:pte/child" step per level (diagnostics).</summary>
    internal string DescribeWalk(ulong iova)
    {
        var sb = new System.Text.StringBuilder();
        IoTable? t = Volatile.Read(ref _root);
        for (int l = Top; l >= 0 && t is not null; l--)
        {
            int idx = Index(iova, l);
            ulong pte = Volatile.Read(ref PteAt(t, idx));
            IoTable? c = Volatile.Read(ref ChildAt(t, idx));
            sb.Append($"L{l}[{idx}] pte=0x{pte:x} child={(c is null ? "-" : (c.Dead ? "dead" : "live"))} used={t.Used}; ");
            if (pte == 0 || TF.IsLeaf(pte, l)) break;
            t = c;
        }
        return sb.ToString();
    }

    /// <summary>
    /// Checks the structure while nobody maps or unmaps (tests): every table PTE has its child and vice versa, every
    /// <see cref="IoTable.Used"/> matches, no reachable table is dead or empty (except the root), and the table count
    /// matches. Returns null when sound, else the first problem found.
    /// </summary>
    public string? Validate()
    {
        int tables = 0;
        string? r = ValidateTable(Volatile.Read(ref _root), Top, 0, ref tables);
        if (r is null && tables != TablePageCount) r = $"{tables} tables reachable, count says {TablePageCount}";
        return r;
    }

    private static string? ValidateTable(IoTable t, int level, ulong baseIova, ref int tables)
    {
        tables++;
        if (t.Dead) return $"dead table reachable at level {level}, iova 0x{baseIova:x}";
        if (t.Key != (baseIova | (uint)level)) return $"table at level {level}, iova 0x{baseIova:x} has key 0x{t.Key:x}";
        int used = 0;
        for (int i = 0; i < IoTable.Entries; i++)
        {
            ulong pte = t.Pte[i];
            IoTable? c = t.Child[i];
            ulong iova = baseIova + ((ulong)i << Shift(level));
            if (pte != 0) used++;
            if (pte == 0 && c is not null) return $"child without PTE at level {level}, iova 0x{iova:x}";
            if (pte == 0) continue;
            if (TF.IsLeaf(pte, level))
            {
                if (c is not null) return $"leaf with a child at level {level}, iova 0x{iova:x}";
                continue;
            }
            if (c is null) return $"table PTE without child at level {level}, iova 0x{iova:x}";
            string? r = ValidateTable(c, level - 1, iova, ref tables);
            if (r is not null) return r;
        }
        if (used != t.Used) return $"Used {t.Used} but {used} PTEs at level {level}, iova 0x{baseIova:x}";
        if (used == 0 && level != Top) return $"empty table kept at level {level}, iova 0x{baseIova:x}";
        return null;
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryIovaToPhys(ulong iova, out ulong phys, out IommuProt prot) =>
        TryIovaToPhys(iova, out phys, out prot, out _);

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryIovaToPhys(ulong iova, out ulong phys, out IommuProt prot, out ulong pageSize)
    {
        pageSize = 0;
        if ((iova >> IovaBits) != 0) { phys = 0; prot = IommuProt.None; return false; }
        while (true)
        {
            int r = TryWalk(iova, out phys, out prot, out pageSize);
            if (r >= 0) return r == 1;
        }
    }

    /// <summary>One lock-free walk: 1 = translated, 0 = not mapped, -1 = a table on the way was reused meanwhile.
    /// Seqlock per level: a table's version is read, then its key (is it where this walk expects it?), then the
    /// entry, then the version again; so every entry used was read from the right table at the right place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int TryWalk(ulong iova, out ulong phys, out IommuProt prot, out ulong pageSize)
    {
        IoTable t = Volatile.Read(ref _root); // never reused: no version check
        int l = Top, v = 0;
        phys = 0;
        prot = IommuProt.None;
        pageSize = 0;
        while (true)
        {
            int idx = Index(iova, l);
            ulong pte = Volatile.Read(ref PteAt(t, idx));
            IoTable? c = TF.IsPresent(pte) && !TF.IsLeaf(pte, l) ? Volatile.Read(ref ChildAt(t, idx)) : null;
            if (Volatile.Read(ref t.Version) != v) return -1;
            // A miss is only possible while this range is changing, so it needs no more checking than this.
            if (!TF.IsPresent(pte)) return 0;
            if (TF.IsLeaf(pte, l))
            {
                pageSize = 1UL << Shift(l);
                phys = TF.OutputAddress(pte) | (iova & (pageSize - 1));
                prot = TF.ProtOf(pte);
                return 1;
            }
            if (c is null) return 0;
            l--;
            v = Volatile.Read(ref c.Version);
            if ((v & 1) != 0 || Volatile.Read(ref c.Key) != KeyOf(l, iova)) return -1;
            t = c;
        }
    }
}
