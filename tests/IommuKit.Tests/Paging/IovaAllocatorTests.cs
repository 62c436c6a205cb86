using System.Numerics;
using FsCheck;
using FsCheck.Fluent;
using IommuKit.Paging;
using Xunit;

namespace IommuKit.Tests.Paging;

public class IovaAllocatorTests
{
    private const ulong Granule = 4096;

    private static ulong Rounded(ulong pages) => pages < 32 ? BitOperations.RoundUpToPowerOf2(pages) : pages;
    private static ulong AlignOf(ulong pages) => BitOperations.RoundUpToPowerOf2(Rounded(pages));

    /// <summary>
    /// A brute-force model of the free space (one bool per pfn below <see cref="Space"/>), the oracle for
    /// "the highest size-aligned run that fits below the limit" (iova.c __alloc_and_insert_iova_range).
    /// </summary>
    private sealed class Model
    {
        public const int Space = 4096;
        public readonly bool[] Used = new bool[Space];
        public readonly bool[] Reserved = new bool[Space];

        public ulong HighestFit(ulong size, ulong align, ulong limit, ulong startPfn)
        {
            if (limit + 1 < size) return 0;
            for (ulong x = (limit + 1 - size) & ~(align - 1); ; x -= align)
            {
                if (x < startPfn) return 0;
                bool free = true;
                for (ulong p = x; p < x + size && free; p++) free = !Used[p] && !Reserved[p];
                if (free) return x;
                if (x < align) return 0;
            }
        }

        public void Mark(ulong pfn, ulong size, bool used)
        {
            for (ulong p = pfn; p < pfn + size; p++) Used[p] = used;
        }
    }

    [Fact]
    public void WorkedExampleFromTheDocs()
    {
        var a = new IovaAllocator(Granule, 1);
        Assert.Equal(0xFFFFCUL, a.Alloc(3, 0xFFFFF));
        Assert.Equal(0xFFFC0UL, a.Alloc(33, 0xFFFFF));
        Assert.Equal(Granule, a.Granule);
        Assert.Equal(1UL, a.StartPfn);
    }

    [Fact]
    public void AllocationIsTopDownBelowTheLimitAndSizeAligned()
    {
        var a = new IovaAllocator(Granule, 1);
        Assert.Equal(0xFFFFFUL, a.Alloc(1, 0xFFFFF));
        Assert.Equal(0xFFFFEUL, a.Alloc(1, 0xFFFFF));
        Assert.Equal(0xFFFFCUL, a.Alloc(2, 0xFFFFF));
        Assert.Equal(0xFFFF0UL, a.Alloc(5, 0xFFFFF));   // 5 -> 8 pages, 8-aligned, below 0xFFFFC
        Assert.Equal(0x7FFF8UL, a.Alloc(8, 0x7FFFF));   // a lower limit starts lower
        Assert.Equal(0UL, a.Alloc(2, 1));               // nothing fits: [1,1] is one page
        Assert.Equal(1UL, a.Alloc(1, 1));
    }

    [Fact]
    public void ZeroPagesHugeSizesAndLimitsBelowTheStartFail()
    {
        var a = new IovaAllocator(Granule, 0x100);
        Assert.Equal(0UL, a.Alloc(0, 0xFFFFF));
        Assert.Equal(0UL, a.Alloc(IovaAllocator.MaxAllocPages + 1, ulong.MaxValue));
        Assert.Equal(0UL, a.Alloc(1, 0xFF));
        Assert.Throws<ArgumentOutOfRangeException>(() => new IovaAllocator(3000, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new IovaAllocator(Granule, 0));
    }

    [Fact]
    public void ReservedRangesAreNeverHandedOut()
    {
        var a = new IovaAllocator(Granule, 1);
        Assert.True(a.Reserve(0xFEE00, 0xFEEFF)); // the MSI window, as dma-iommu reserves it
        Assert.False(a.Reserve(5, 4));
        for (int i = 0; i < 0x200; i++)
        {
            ulong pfn = a.Alloc(1, 0xFEFFF);
            Assert.True(pfn is < 0xFEE00 or > 0xFEEFF, $"pfn {pfn:x} is reserved");
        }
    }

    [Fact]
    public void ReservingOverALiveAllocationKeepsItOutAfterItIsFreed()
    {
        var a = new IovaAllocator(Granule, 1);
        ulong pfn = a.Alloc(4, 0xFF);
        Assert.Equal(0xFCUL, pfn);
        Assert.True(a.Reserve(0xFE, 0xFE));
        a.Free(pfn, 4);
        a.FlushCaches();
        for (int i = 0; i < 20; i++) Assert.NotEqual(0xFEUL, a.Alloc(1, 0xFF));
    }

    [Fact]
    public void DoubleFreeThroughTheTreeIsAProgrammingError()
    {
        var a = new IovaAllocator(Granule, 1);
        ulong pfn = a.Alloc(64, 0xFFFF);
        a.Free(pfn, 64);
        Assert.Throws<InvalidOperationException>(() => a.Free(pfn, 64));
    }

    [Fact]
    public void ABatchFreeOfMixedSizesReturnsEveryRangeLikeSingleFrees()
    {
        // The flush queue frees what one flush released as a batch: cached sizes of several classes, sizes that go to
        // the tree, and more ranges of one class than two magazines hold (so the depot is used) in one run.
        var a = new IovaAllocator(Granule, 1);
        var live = new List<(ulong Pfn, ulong Pages)>();
        ulong[] sizes = [1, 1, 3, 64, 1, 32, 33, 2];
        for (int i = 0; i < 400; i++)
        {
            ulong pages = sizes[i % sizes.Length];
            live.Add((a.Alloc(pages, 0xFFFFF), pages));
        }
        for (int i = 0; i < 300; i++)
            live.Add((a.Alloc(1, 0xFFFFF), 1));
        Assert.DoesNotContain(live, r => r.Pfn == 0);
        IovaAllocator.FreeBatch batch = a.BeginFreeBatch();
        try
        {
            foreach (var (pfn, pages) in live)
                batch.Free(pfn, pages);
        }
        finally
        {
            batch.Dispose();
        }
        a.FlushCaches();
        a.Validate();
        var blocks = new List<(ulong, ulong)>();
        a.ForEachFreeBlock((lo, hi) => blocks.Add((lo, hi)));
        Assert.Equal([(1UL, a.MaxPfn)], blocks);
    }

    [Fact]
    public void FreedSmallRangesAreReusedFromThePerCpuCache()
    {
        var a = new IovaAllocator(Granule, 1);
        ulong p1 = a.Alloc(1, 0xFFFFF), p2 = a.Alloc(1, 0xFFFFF);
        a.Free(p1, 1);
        // The cache hands back the freed pfn even though the tree's top-down answer would be lower.
        Assert.Equal(p1, a.Alloc(1, 0xFFFFF));
        a.Free(p2, 1);
        ulong below = a.Alloc(1, p2 - 1, flushRcache: false); // the cached p2 lies above this limit: not handed out
        Assert.InRange(below, 1UL, p2 - 1);
    }

    [Fact]
    public void ACachedRangeBelowTheLimitIsFoundUnderTheLastOneCachedAboveIt()
    {
        // The cache's inline case takes the last range cached; when that one ends above the limit, the scan below it
        // (iova_magazine_pop) still finds an older one that fits, and leaves the rest cached.
        var a = new IovaAllocator(Granule, 1);
        ulong low = a.Alloc(1, 0xFF), high = a.Alloc(1, 0xFFFFF), mid = a.Alloc(1, 0xFFFFF);
        Assert.True(low <= 0xFF && high > 0xFF && mid > 0xFF);
        a.Free(low, 1);
        a.Free(high, 1);
        a.Free(mid, 1); // cached last: the inline case's candidate
        Assert.Equal(low, a.Alloc(1, 0xFF, flushRcache: false));
        ulong[] rest = [a.Alloc(1, 0xFFFFF, flushRcache: false), a.Alloc(1, 0xFFFFF, flushRcache: false)];
        Assert.Equal([high, mid], rest.Order().Reverse()); // the taken slot got the last one (iova_magazine_pop)
    }

    [Fact]
    public void FailureFlushesTheCachesAndRetriesWhenAllowed()
    {
        var a = new IovaAllocator(Granule, 1);
        // Fill [1, 0xF] with single pages, free them all into the cache: the tree sees the space as full.
        var got = new List<ulong>();
        for (int i = 0; i < 15; i++) got.Add(a.Alloc(1, 0xF));
        Assert.DoesNotContain(0UL, got);
        foreach (var p in got) a.Free(p, 1);
        Assert.Equal(0UL, a.Alloc(4, 0xF, flushRcache: false)); // 4 pages: the tree is full, the cache holds 1-page ranges
        Assert.Equal(0xCUL, a.Alloc(4, 0xF, flushRcache: true)); // flushed back to the tree: top-down again
    }

    [Fact]
    public void AOnePageAllocationThatMissesItsCacheSearchesTheTreeAndFlushesWhenAllowed()
    {
        // [1, 0xF] handed out as 2-page ranges and freed into the 2-page cache: the tree is full and the 1-page cache
        // empty, so a 1-page allocation (its own inline path) finds nothing until the caches go back to the tree.
        var a = new IovaAllocator(Granule, 1);
        var got = new List<ulong>();
        for (ulong p = a.Alloc(2, 0xF); p != 0; p = a.Alloc(2, 0xF, flushRcache: false)) got.Add(p);
        Assert.Equal(7, got.Count); // 0xE, 0xC, ..., 0x2 (pfn 1 is left: 2-page ranges are 2-aligned)
        Assert.Equal(1UL, a.Alloc(1, 0xF, flushRcache: false));
        foreach (var p in got) a.Free(p, 2);
        Assert.Equal(0UL, a.Alloc(1, 0xF, flushRcache: false));
        Assert.Equal(0xFUL, a.Alloc(1, 0xF, flushRcache: true));
    }

    /// <summary>Operations for the properties: an op code picks alloc/free/reserve and its arguments.</summary>
    private static readonly ulong[] Limits = [0xFFF, 0x7FF, 0x3FF, 0x1FF, 0x0FF];

    [Fact]
    public void TreeAllocationsMatchTheBruteForceHighestFit()
    {
        // Differential property: with caches flushed before each allocation, every result is exactly the highest
        // size-aligned free run below the limit (top-down order), and failure happens exactly when none exists.
        Prop.ForAll<int[]>(ops =>
        {
            var a = new IovaAllocator(Granule, 1);
            var m = new Model();
            var live = new List<(ulong Pfn, ulong Pages)>();
            foreach (int op in ops)
            {
                int kind = (op & 0x7FFFFFFF) % 4;
                int arg = (op & 0x7FFFFFFF) / 4;
                if (kind == 3 && live.Count > 0)
                {
                    var (pfn, pages) = live[arg % live.Count];
                    live.Remove((pfn, pages));
                    a.Free(pfn, pages);
                    m.Mark(pfn, Rounded(pages), false);
                    continue;
                }
                ulong pagesReq = (ulong)(arg % 100) + 1;
                ulong limit = Limits[(arg / 100) % Limits.Length];
                a.FlushCaches();
                ulong want = m.HighestFit(Rounded(pagesReq), AlignOf(pagesReq), limit, 1);
                ulong got = a.Alloc(pagesReq, limit, flushRcache: false);
                if (got != want) return false;
                if (got != 0)
                {
                    m.Mark(got, Rounded(pagesReq), true);
                    live.Add((got, pagesReq));
                }
            }
            a.Validate();
            return true;
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void LiveAllocationsNeverOverlapStayAlignedBelowTheLimitAndAvoidReservedRanges()
    {
        Prop.ForAll<int[]>(ops =>
        {
            var a = new IovaAllocator(Granule, 2);
            var m = new Model();
            var live = new List<(ulong Pfn, ulong Pages)>();
            foreach (int op in ops)
            {
                int kind = (op & 0x7FFFFFFF) % 8;
                int arg = (op & 0x7FFFFFFF) / 8;
                if (kind == 7)
                {
                    ulong lo = (ulong)(arg % Model.Space), hi = Math.Min(lo + (ulong)(arg / Model.Space % 64), Model.Space - 1);
                    if (!a.Reserve(lo, hi)) return false;
                    for (ulong p = lo; p <= hi; p++) m.Reserved[p] = true;
                }
                else if (kind >= 4 && live.Count > 0)
                {
                    var (pfn, pages) = live[arg % live.Count];
                    live.Remove((pfn, pages));
                    a.Free(pfn, pages);
                    m.Mark(pfn, Rounded(pages), false);
                }
                else
                {
                    ulong pages = (ulong)(arg % 40) + 1;
                    ulong limit = Limits[(arg / 40) % Limits.Length];
                    ulong pfn = a.Alloc(pages, limit, flushRcache: (arg & 1) == 0);
                    if (pfn == 0) continue;
                    ulong size = Rounded(pages);
                    if (pfn % AlignOf(pages) != 0 || pfn < 2 || pfn + size - 1 > limit) return false;
                    for (ulong p = pfn; p < pfn + size; p++)
                        if (m.Used[p] || m.Reserved[p]) return false;
                    m.Mark(pfn, size, true);
                    live.Add((pfn, pages));
                }
            }
            // Everything freed is reusable: after freeing all and flushing, the free space is one block minus the
            // reserved ranges.
            foreach (var (pfn, pages) in live) a.Free(pfn, pages);
            a.FlushCaches();
            a.Validate();
            var blocks = new List<(ulong, ulong)>();
            a.ForEachFreeBlock((lo, hi) => blocks.Add((lo, hi)));
            var want = new List<(ulong, ulong)>();
            ulong start = 2;
            for (ulong p = 2; p < Model.Space; p++)
            {
                if (!m.Reserved[p]) continue;
                if (p > start) want.Add((start, p - 1));
                start = p + 1;
            }
            want.Add((start, a.MaxPfn));
            return blocks.SequenceEqual(want);
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void ALargeFragmentedTreeKeepsItsAugmentationExact()
    {
        // Thousands of free blocks: deep rebalancing (rotations, two-child deletions) and the "stop climbing when
        // nothing changed" shortcut are exercised far beyond what the small property cases reach.
        var a = new IovaAllocator(Granule, 1);
        var rng = new Random(11);
        var live = new List<(ulong Pfn, ulong Pages)>();
        for (int i = 0; i < 40_000; i++)
        {
            if (live.Count > 0 && rng.Next(3) == 0)
            {
                int j = rng.Next(live.Count);
                a.FreeTree(live[j].Pfn, live[j].Pages);
                live[j] = live[^1];
                live.RemoveAt(live.Count - 1);
            }
            else
            {
                ulong pages = (ulong)rng.Next(1, 70);
                ulong pfn = a.AllocTree(pages, 0xF_FFFF);
                Assert.NotEqual(0UL, pfn);
                live.Add((pfn, pages));
            }
            if (i % 5000 == 0) a.Validate();
        }
        a.Validate();
        Assert.True(a.FreeBlockCount > 1000);
    }

    [Fact]
    public void ConcurrentAllocAndFreeNeverHandOutOneRangeTwice()
    {
        var a = new IovaAllocator(Granule, 1);
        const ulong limit = 0x3FFF;
        var owner = new int[limit + 1];
        int errors = 0;
        var threads = new Thread[4];
        for (int t = 0; t < threads.Length; t++)
        {
            int id = t + 1;
            threads[t] = new Thread(() =>
            {
                var rng = new Random(id);
                var mine = new List<(ulong Pfn, ulong Pages)>();
                for (int i = 0; i < 20_000; i++)
                {
                    if (mine.Count > 0 && (rng.Next(2) == 0 || mine.Count > 64))
                    {
                        int j = rng.Next(mine.Count);
                        var (pfn, pages) = mine[j];
                        mine.RemoveAt(j);
                        for (ulong p = pfn; p < pfn + Rounded(pages); p++)
                            if (Interlocked.CompareExchange(ref owner[p], 0, id) != id) Interlocked.Increment(ref errors);
                        a.Free(pfn, pages);
                    }
                    else
                    {
                        ulong pages = (ulong)rng.Next(1, rng.Next(2) == 0 ? 8 : 48);
                        ulong pfn = a.Alloc(pages, limit);
                        if (pfn == 0) continue;
                        for (ulong p = pfn; p < pfn + Rounded(pages); p++)
                            if (Interlocked.CompareExchange(ref owner[p], id, 0) != 0) Interlocked.Increment(ref errors);
                        mine.Add((pfn, pages));
                    }
                }
                foreach (var (pfn, pages) in mine)
                {
                    for (ulong p = pfn; p < pfn + Rounded(pages); p++) Interlocked.Exchange(ref owner[p], 0);
                    a.Free(pfn, pages);
                }
            });
        }
        foreach (var th in threads) th.Start();
        foreach (var th in threads) th.Join();
        Assert.Equal(0, errors);
        a.FlushCaches();
        a.Validate();
        var blocks = new List<(ulong, ulong)>();
        a.ForEachFreeBlock((lo, hi) => blocks.Add((lo, hi)));
        Assert.Equal([(1UL, a.MaxPfn)], blocks);
    }
}
