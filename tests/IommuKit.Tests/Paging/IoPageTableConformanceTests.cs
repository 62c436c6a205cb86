using IommuKit.Paging;
using Xunit;

namespace IommuKit.Tests.Paging;

/// <summary>
/// The conformance matrix (style habit 19a, after the kernel's io-pgtable self-tests): every format x every page size.
/// </summary>
public class IoPageTableConformanceTests
{
    private const ulong K4 = 4096, M2 = 2UL << 20, G1 = 1UL << 30;

    public static TheoryData<IoPageTableFormat> Formats() => new()
    {
        IoPageTableFormat.X86_64Level4, IoPageTableFormat.X86_64Level5, IoPageTableFormat.ArmLpae4K,
    };

    public static TheoryData<IoPageTableFormat, ulong> FormatsAndPageSizes()
    {
        var d = new TheoryData<IoPageTableFormat, ulong>();
        foreach (var f in new[] { IoPageTableFormat.X86_64Level4, IoPageTableFormat.X86_64Level5, IoPageTableFormat.ArmLpae4K })
            foreach (var s in new[] { K4, M2, G1 })
                d.Add(f, s);
        return d;
    }

    private static int Levels(IoPageTableFormat f) => f == IoPageTableFormat.X86_64Level5 ? 5 : 4;

    /// <summary>Tables a single page of this size needs, root included: one per level down to the leaf's level.</summary>
    private static int TablesForOnePage(IoPageTableFormat f, ulong pageSize) =>
        Levels(f) - (pageSize == G1 ? 2 : pageSize == M2 ? 1 : 0);

    [Theory]
    [MemberData(nameof(Formats))]
    public void EmptyTableTranslatesNothing(IoPageTableFormat format)
    {
        var t = IoPageTables.Create(format);
        Assert.Equal(format, t.Format);
        Assert.Equal(Levels(format) == 5 ? 57 : 48, t.IovaBits);
        Assert.Equal(K4 | M2 | G1, t.PageSizeBitmap);
        foreach (ulong iova in new ulong[] { 0, K4, M2, G1, (1UL << t.IovaBits) - K4, 1UL << t.IovaBits, ulong.MaxValue })
            Assert.False(t.TryIovaToPhys(iova, out _, out _));
        Assert.Equal(1, t.TablePageCount);
    }

    [Theory]
    [MemberData(nameof(FormatsAndPageSizes))]
    public void EveryMapRoundTripsThroughIovaToPhys(IoPageTableFormat format, ulong pageSize)
    {
        var t = IoPageTables.Create(format);
        ulong iova = 3 * pageSize, phys = 5 * pageSize, size = 2 * pageSize;
        Assert.Equal(Errno.Ok, t.Map(iova, phys, size, IommuProt.Read | IommuProt.Write));
        foreach (ulong off in new ulong[] { 0, 1, pageSize / 2 + 123, pageSize, size - 1 })
        {
            Assert.True(t.TryIovaToPhys(iova + off, out ulong pa, out var prot));
            Assert.Equal(phys + off, pa);
            Assert.Equal(IommuProt.Read | IommuProt.Write, prot & (IommuProt.Read | IommuProt.Write));
        }
        Assert.False(t.TryIovaToPhys(iova - 1, out _, out _));
        Assert.False(t.TryIovaToPhys(iova + size, out _, out _));
        Assert.True(t.TryIovaToPhys(iova + pageSize + 5, out ulong pb, out _, out ulong leaf));
        Assert.Equal(phys + pageSize + 5, pb);
        Assert.Equal(pageSize, leaf); // aligned iova and phys: the leaf is a page of exactly this size
    }

    [Theory]
    [MemberData(nameof(FormatsAndPageSizes))]
    public void LargestPageSizeIsChosenByAlignment(IoPageTableFormat format, ulong pageSize)
    {
        var t = IoPageTables.Create(format);
        Assert.Equal(Errno.Ok, t.Map(7 * pageSize, 9 * pageSize, pageSize, IommuProt.Read));
        Assert.Equal(TablesForOnePage(format, pageSize), t.TablePageCount);

        // Same size, but physical address only 4 KiB aligned: the walk must go down to 4 KiB pages.
        var u = IoPageTables.Create(format);
        Assert.Equal(Errno.Ok, u.Map(7 * pageSize, 9 * pageSize + K4, pageSize, IommuProt.Read));
        // 4 KiB pages over one 2 MiB need one leaf table; over 1 GiB, 512 leaf tables below one level-1 table.
        int want = pageSize == G1 ? Levels(format) - 1 + 512 : Levels(format);
        Assert.Equal(want, u.TablePageCount);
        Assert.True(u.TryIovaToPhys(7 * pageSize + pageSize - 1, out ulong pa, out _));
        Assert.Equal(9 * pageSize + K4 + pageSize - 1, pa);
    }

    [Theory]
    [MemberData(nameof(FormatsAndPageSizes))]
    public void MappingOverAMappingIsRefusedWithEexistAndChangesNothing(IoPageTableFormat format, ulong pageSize)
    {
        var t = IoPageTables.Create(format);
        ulong iova = 4 * pageSize;
        Assert.Equal(Errno.Ok, t.Map(iova, 0, pageSize, IommuProt.Read));
        int tables = t.TablePageCount;

        Assert.Equal(Errno.EEXIST, t.Map(iova, pageSize, pageSize, IommuProt.Write));            // same range
        Assert.Equal(Errno.EEXIST, t.Map(iova - pageSize, 0, 2 * pageSize, IommuProt.Write));     // tail overlaps
        Assert.Equal(Errno.EEXIST, t.Map(iova + pageSize - K4, 0, 2 * K4, IommuProt.Write));      // 4 KiB overlap
        if (pageSize == K4)
            Assert.Equal(Errno.EEXIST, t.Map(iova & ~(M2 - 1), 0, M2, IommuProt.Write));          // large over small

        Assert.Equal(tables, t.TablePageCount);
        Assert.False(t.TryIovaToPhys(iova - pageSize, out _, out _)); // the failed call's free part was rolled back
        Assert.True(t.TryIovaToPhys(iova, out ulong pa, out var prot));
        Assert.Equal(0UL, pa);
        Assert.Equal(IommuProt.Read, prot & (IommuProt.Read | IommuProt.Write));
    }

    [Theory]
    [MemberData(nameof(FormatsAndPageSizes))]
    public void UnmapOfWhatIsNotMappedIsRefusedWithEnoent(IoPageTableFormat format, ulong pageSize)
    {
        var t = IoPageTables.Create(format);
        Assert.Equal(Errno.ENOENT, t.Unmap(pageSize, pageSize));
        Assert.Equal(Errno.Ok, t.Map(2 * pageSize, 0, pageSize, IommuProt.Read));
        // A range that is only partly mapped: refused, and the mapped part survives.
        Assert.Equal(Errno.ENOENT, t.Unmap(2 * pageSize, 2 * pageSize));
        Assert.Equal(Errno.ENOENT, t.Unmap(pageSize, 2 * pageSize));
        Assert.True(t.TryIovaToPhys(2 * pageSize, out _, out _));
    }

    [Theory]
    [MemberData(nameof(FormatsAndPageSizes))]
    public void UnmapRestoresEmptinessAndFreesTables(IoPageTableFormat format, ulong pageSize)
    {
        var t = IoPageTables.Create(format);
        ulong iova = 6 * pageSize;
        Assert.Equal(Errno.Ok, t.Map(iova, 2 * pageSize, 3 * pageSize, IommuProt.Read | IommuProt.Write));
        Assert.True(t.TablePageCount > 1);
        Assert.Equal(Errno.Ok, t.Unmap(iova, 3 * pageSize));
        Assert.False(t.TryIovaToPhys(iova, out _, out _));
        Assert.False(t.TryIovaToPhys(iova + 3 * pageSize - 1, out _, out _));
        Assert.Equal(1, t.TablePageCount);
        // And the space is reusable.
        Assert.Equal(Errno.Ok, t.Map(iova, 0, pageSize, IommuProt.Read));
    }

    [Theory]
    [MemberData(nameof(FormatsAndPageSizes))]
    public void UnmapThatWouldSplitALargePageIsEinvalAndChangesNothing(IoPageTableFormat format, ulong pageSize)
    {
        if (pageSize == K4) return; // nothing to split
        var t = IoPageTables.Create(format);
        Assert.Equal(Errno.Ok, t.Map(pageSize, pageSize, pageSize, IommuProt.Read));
        Assert.Equal(Errno.EINVAL, t.Unmap(pageSize, K4));                 // head of the large page
        Assert.Equal(Errno.EINVAL, t.Unmap(2 * pageSize - K4, K4));        // tail
        Assert.Equal(Errno.EINVAL, t.Unmap(pageSize + K4, pageSize - 2 * K4));
        Assert.True(t.TryIovaToPhys(pageSize + pageSize - 1, out ulong pa, out _));
        Assert.Equal(2 * pageSize - 1, pa);
        Assert.Equal(Errno.Ok, t.Unmap(pageSize, pageSize));
        Assert.Equal(1, t.TablePageCount);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void PermissionsAreRecordedPerMapping(IoPageTableFormat format)
    {
        var t = IoPageTables.Create(format);
        Assert.Equal(Errno.Ok, t.Map(0x1000, 0xa000, K4, IommuProt.Read));
        Assert.Equal(Errno.Ok, t.Map(0x2000, 0xb000, K4, IommuProt.Read | IommuProt.Write));
        Assert.Equal(Errno.Ok, t.Map(0x3000, 0xc000, K4, IommuProt.Write));
        const IommuProt rw = IommuProt.Read | IommuProt.Write;
        Assert.True(t.TryIovaToPhys(0x1000, out _, out var p1));
        Assert.True(t.TryIovaToPhys(0x2000, out _, out var p2));
        Assert.True(t.TryIovaToPhys(0x3000, out _, out var p3));
        Assert.Equal(IommuProt.Read, p1 & rw);
        Assert.Equal(rw, p2 & rw);
        // VT-d second-level entries have separate R and W bits; ARM stage 1 cannot say "write but not read"
        // (io-pgtable-arm maps it read/write).
        Assert.Equal(format == IoPageTableFormat.ArmLpae4K ? rw : IommuProt.Write, p3 & rw);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void BadArgumentsAreEinvalAndChangeNothing(IoPageTableFormat format)
    {
        var t = IoPageTables.Create(format);
        ulong top = 1UL << t.IovaBits;
        const IommuProt r = IommuProt.Read;
        Assert.Equal(Errno.EINVAL, t.Map(0x1001, 0, K4, r));             // misaligned iova
        Assert.Equal(Errno.EINVAL, t.Map(0x1000, 0x10, K4, r));          // misaligned phys
        Assert.Equal(Errno.EINVAL, t.Map(0x1000, 0, 100, r));            // misaligned size
        Assert.Equal(Errno.EINVAL, t.Map(0x1000, 0, 0, r));              // zero size
        Assert.Equal(Errno.EINVAL, t.Map(ulong.MaxValue - K4 + 1, 0, 2 * K4, r)); // iova + size overflows
        Assert.Equal(Errno.EINVAL, t.Map(0, ulong.MaxValue - K4 + 1, 2 * K4, r)); // phys + size overflows
        Assert.Equal(Errno.EINVAL, t.Map(top - K4, 0, 2 * K4, r));       // runs past the IOVA space
        Assert.Equal(Errno.EINVAL, t.Map(top, 0, K4, r));                // starts past it
        Assert.Equal(Errno.EINVAL, t.Map(0x1000, 0, K4, IommuProt.None));// no permission
        Assert.Equal(Errno.EINVAL, t.Map(0x1000, 0, K4, IommuProt.Cache));
        Assert.Equal(Errno.EINVAL, t.Unmap(0x1001, K4));
        Assert.Equal(Errno.EINVAL, t.Unmap(0x1000, 0));
        Assert.Equal(Errno.EINVAL, t.Unmap(ulong.MaxValue - K4 + 1, 2 * K4));
        Assert.Equal(Errno.EINVAL, t.Unmap(top - K4, 2 * K4));
        Assert.Equal(1, t.TablePageCount);
        Assert.Equal(Errno.Ok, t.Map(top - K4, 0, K4, r)); // the very last page is fine
        Assert.True(t.TryIovaToPhys(top - 1, out ulong pa, out _));
        Assert.Equal(K4 - 1, pa);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void MapPastTheTableCapIsEnomemAndRollsBack(IoPageTableFormat format)
    {
        // Cap = the tables one 4 KiB page needs: a range spanning two leaf tables needs one more.
        var t = IoPageTables.Create(format, maxTablePages: Levels(format));
        Assert.Equal(Errno.ENOMEM, t.Map(M2 - 2 * K4, 0, 4 * K4, IommuProt.Read));
        Assert.Equal(1, t.TablePageCount);
        Assert.False(t.TryIovaToPhys(M2 - 2 * K4, out _, out _));
        Assert.Equal(Errno.Ok, t.Map(M2 - 2 * K4, 0, 2 * K4, IommuProt.Read));
        Assert.Equal(Levels(format), t.TablePageCount);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void FailedMapInTheMiddleRollsBackWhatItMapped(IoPageTableFormat format)
    {
        var t = IoPageTables.Create(format);
        Assert.Equal(Errno.Ok, t.Map(M2 + 8 * K4, 0x5000_0000, K4, IommuProt.Read));
        int tables = t.TablePageCount;
        // From 4 KiB below a 2 MiB boundary up across it: first part maps in another leaf table, then hits the page.
        Assert.Equal(Errno.EEXIST, t.Map(M2 - K4, 0, 16 * K4, IommuProt.Read));
        Assert.False(t.TryIovaToPhys(M2 - K4, out _, out _));
        Assert.False(t.TryIovaToPhys(M2, out _, out _));
        Assert.Equal(tables, t.TablePageCount);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void MixedPageSizesInOneCallRoundTripAndUnmapAsOne(IoPageTableFormat format)
    {
        var t = IoPageTables.Create(format);
        // 4 KiB pages up to the 2 MiB boundary, 2 MiB pages up to 1 GiB, a 1 GiB page, then 2 MiB + 4 KiB pages.
        ulong iova = G1 - 3 * M2 - 2 * K4, size = 3 * M2 + 2 * K4 + G1 + M2 + 3 * K4;
        ulong phys = iova + 0x40_0000_0000UL;
        Assert.Equal(Errno.Ok, t.Map(iova, phys, size, IommuProt.Read | IommuProt.Write));
        Assert.Null(((IValidatable)t).Validate());
        for (ulong off = 0; off < size; off += 0x1_3000)
        {
            Assert.True(t.TryIovaToPhys(iova + off, out ulong pa, out _));
            Assert.Equal(phys + off, pa);
        }
        Assert.Equal(Errno.EINVAL, t.Unmap(G1 + K4, K4)); // inside the 1 GiB page
        Assert.Equal(Errno.ENOENT, t.Unmap(iova, size + K4));
        Assert.Equal(Errno.Ok, t.Unmap(iova, size));
        Assert.Equal(1, t.TablePageCount);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void ATableThatNeverMappedOrFreedATablePageIsASmallObject(IoPageTableFormat format)
    {
        // A booted core gives every group a DMA domain and most never map: neither the 8 KiB root nor the pool of free
        // table pages (64 slots) exists until it is needed, so a domain's table is one small object.
        IoPageTables.Create(format); // types loaded, statics initialised
        long before = GC.GetAllocatedBytesForCurrentThread();
        var t = IoPageTables.Create(format);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.InRange(allocated, 1, 128);
        Assert.Equal(Errno.ENOENT, t.Unmap(0x1000, K4));
        Assert.Equal(1, t.TablePageCount);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void MapUnmapChurnReusesFreedTablePagesInsteadOfAllocating(IoPageTableFormat format)
    {
        // A lone page in an empty table needs a full path of tables, freed again by its unmap: the pool of free table
        // pages makes the second and later rounds allocation-free (issue 5: nothing allocated per operation).
        var t = IoPageTables.Create(format);
        int failures = 0;
        long Churn()
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 1000; i++)
            {
                ulong iova = (ulong)(i % 7) * G1 + (ulong)(i % 5) * M2;
                if (t.Map(iova, 0x1000, K4, IommuProt.Read) != Errno.Ok) failures++;
                if (!t.TryIovaToPhys(iova, out _, out _)) failures++;
                if (t.Unmap(iova, K4) != Errno.Ok) failures++;
            }
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }
        // Warm up with the same loop (fills the pool, lets the JIT tier the methods up), then measure. The runtime can
        // allocate a few bytes on this thread while it installs tiered code; an allocation per operation would show in
        // every pass (1,000 operations each), so the steady state is the smallest of up to three passes.
        Churn();
        long allocated = long.MaxValue;
        for (int pass = 0; pass < 3 && allocated != 0; pass++) allocated = Math.Min(allocated, Churn());
        Assert.Equal(0, failures);
        Assert.Equal(0, allocated);
        Assert.Equal(1, t.TablePageCount);
        Assert.Null(((IValidatable)t).Validate());
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void ConcurrentMapUnmapOfDisjointRangesKeepsEveryMappingAndFreesAllTables(IoPageTableFormat format)
    {
        var t = IoPageTables.Create(format);
        const int threads = 4, rounds = 2000;
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var workers = new Thread[threads];
        for (int w = 0; w < threads; w++)
        {
            int id = w;
            workers[w] = new Thread(() =>
            {
                var rng = new Random(id);
                for (int i = 0; i < rounds; i++)
                {
                    // Threads share leaf tables (same 2 MiB regions, interleaved pages) so tables are created and
                    // freed under each other's feet.
                    ulong region = (ulong)rng.Next(4) * M2;
                    ulong iova = region + (ulong)(rng.Next(64) * threads + id) * K4;
                    const ulong pages = 1;
                    ulong phys = (ulong)(id + 1) << 32 | iova;
                    if (t.Map(iova, phys, pages * K4, IommuProt.Read) is var e && e != Errno.Ok)
                    { errors.Enqueue($"map {iova:x}: {e}"); continue; }
                    if (!t.TryIovaToPhys(iova, out ulong pa, out _) || pa != phys) errors.Enqueue($"lost {iova:x}");
                    if (t.Unmap(iova, pages * K4) is var u && u != Errno.Ok) errors.Enqueue($"unmap {iova:x}: {u}");
                }
            });
        }
        // A reader walks the same regions meanwhile: every translation it gets must be the one its owner mapped
        // (tables are freed and reused under it all the time).
        long wrong = 0;
        bool stop = false;
        var reader = new Thread(() =>
        {
            var rng = new Random(99);
            while (!Volatile.Read(ref stop))
            {
                ulong iova = (ulong)rng.Next(4) * M2 + (ulong)rng.Next(512) * K4;
                if (t.TryIovaToPhys(iova, out ulong pa, out _) &&
                    (pa != ((((iova >> 12) % threads) + 1) << 32 | iova))) Interlocked.Increment(ref wrong);
            }
        });
        reader.Start();
        foreach (var th in workers) th.Start();
        foreach (var th in workers) th.Join();
        Volatile.Write(ref stop, true);
        reader.Join();
        Assert.Equal(0, wrong);
        Assert.Empty(errors);
        Assert.Null(((IValidatable)t).Validate());
        Assert.Equal(1, t.TablePageCount);
        for (ulong r = 0; r < 4; r++) Assert.False(t.TryIovaToPhys(r * M2, out _, out _));
    }
}
