using IommuKit.Paging;
using IommuKit.Simulation;
using IommuKit.Tests.Dma;
using Xunit;

namespace IommuKit.Tests.Simulation;

/// <summary>A range translation hands out guest-physical runs and holds them valid while the caller accesses them.</summary>
public class RangeLeaseTests
{
    [Fact]
    public void ARangeTranslatesToMergedRunsAndStopsAtTheFirstUnmappedPage()
    {
        using var rig = new DmaRig();
        rig.Iommu.SetContext(0x10, rig.Context);
        rig.Table.Map(0x10_0000, 0x50_0000, 0x3000, IommuProt.Read | IommuProt.Write); // 3 contiguous pages
        rig.Table.Map(0x10_3000, 0x90_0000, 0x1000, IommuProt.Read);                   // one elsewhere, read-only
        Span<DmaRun> runs = stackalloc DmaRun[8];
        using (var lease = rig.Iommu.TranslateRange(0x10, 0x10_0800, 0x3800, write: false, runs))
        {
            Assert.Equal(DmaFaultReason.None, lease.Fault);
            Assert.Equal(0x3800, lease.Bytes);
            Assert.Equal([new DmaRun(0x50_0800, 0x2800), new DmaRun(0x90_0000, 0x1000)], runs[..lease.Count].ToArray());
        }
        using (var w = rig.Iommu.TranslateRange(0x10, 0x10_0000, 0x5000, write: true, runs))
        {
            Assert.Equal(DmaFaultReason.Permission, w.Fault); // the 4th page is read-only
            Assert.Equal(0x3000, w.Bytes);
        }
    }

    [Fact]
    public void AnInvalidationWaitsForTheLeasesTakenBeforeIt()
    {
        using var rig = new DmaRig();
        rig.Iommu.SetContext(0x10, rig.Context);
        rig.Table.Map(0x10_0000, 0x50_0000, 0x1000, IommuProt.Read);
        var runs = new DmaRun[1];
        var lease = rig.Iommu.TranslateRange(0x10, 0x10_0000, 0x1000, write: false, runs);
        using var flushed = new ManualResetEventSlim();
        var unmapper = new Thread(() =>
        {
            rig.Table.Unmap(0x10_0000, 0x1000);
            rig.Iommu.FlushRange(DmaRig.DomainId, 0x10_0000, 0x1000); // strict unmap: must not finish under the lease
            flushed.Set();
        });
        unmapper.Start();
        Assert.False(flushed.Wait(200));
        lease.Dispose();
        Assert.True(unmapper.Join(TimeSpan.FromSeconds(30)));
        Assert.True(flushed.IsSet);
        using var after = rig.Iommu.TranslateRange(0x10, 0x10_0000, 0x1000, write: false, runs);
        Assert.Equal(DmaFaultReason.NotPresent, after.Fault);
    }

    [Fact]
    public void AContiguousBlockIsCachedWholeAndARangeInvalidationInsideItDropsIt()
    {
        using var rig = new DmaRig();
        rig.Iommu.SetContext(0x10, rig.Context);
        rig.Table.Map(0x100_0000, 0x500_0000, 0x2_0000, IommuProt.Read | IommuProt.Write); // two contiguous 64 KiB blocks
        var runs = new DmaRun[4];
        using (var first = rig.Iommu.TranslateRange(0x10, 0x100_0000, 0x2_0000, write: true, runs))
            Assert.Equal((DmaFaultReason.None, 1, new DmaRun(0x500_0000, 0x2_0000)), (first.Fault, first.Count, runs[0]));
        // The second time both blocks come from one probe each: no page lookup at all.
        long hits = rig.Iommu.Iotlb.Hits, misses = rig.Iommu.Iotlb.Misses;
        using (var again = rig.Iommu.TranslateRange(0x10, 0x100_0000, 0x2_0000, write: true, runs))
            Assert.Equal((0x2_0000, new DmaRun(0x500_0000, 0x2_0000)), (again.Bytes, runs[0]));
        Assert.Equal((hits, misses), (rig.Iommu.Iotlb.Hits, rig.Iommu.Iotlb.Misses));

        // A strict unmap of one page in the middle of the first block: its invalidation drops the block entry.
        rig.Table.Unmap(0x100_3000, 0x1000);
        rig.Iommu.FlushRange(DmaRig.DomainId, 0x100_3000, 0x1000);
        using (var after = rig.Iommu.TranslateRange(0x10, 0x100_0000, 0x2_0000, write: false, runs))
            Assert.Equal((DmaFaultReason.NotPresent, 0x3000), (after.Fault, after.Bytes));
        // Remapped read-only: the cached block carries what every page allows, so a write range stops at that page.
        rig.Table.Map(0x100_3000, 0x500_3000, 0x1000, IommuProt.Read);
        using (var read = rig.Iommu.TranslateRange(0x10, 0x100_0000, 0x1_0000, write: false, runs))
            Assert.Equal((DmaFaultReason.None, 0x1_0000), (read.Fault, read.Bytes));
        using (var write = rig.Iommu.TranslateRange(0x10, 0x100_0000, 0x1_0000, write: true, runs))
            Assert.Equal((DmaFaultReason.Permission, 0x3000), (write.Fault, write.Bytes));
    }

    [Fact]
    public void ACachedBlockIsNotReachedOnceTheContextIsNoLongerTranslated()
    {
        // The one-block case of TranslateRange reads only the slot's domain id, not the context: once the context is
        // Blocked, Identity or cleared, the block its translated predecessor cached must not be handed out.
        using var rig = new DmaRig();
        rig.Iommu.SetContext(0x10, rig.Context);
        rig.Table.Map(0x100_0000, 0x500_0000, 0x1_0000, IommuProt.Read | IommuProt.Write);
        var runs = new DmaRun[4];
        using (var fill = rig.Iommu.TranslateRange(0x10, 0x100_0000, 0x1_0000, write: false, runs)) { }
        long misses = rig.Iommu.Iotlb.Misses;
        using (var hit = rig.Iommu.TranslateRange(0x10, 0x100_0000, 0x1_0000, write: false, runs))
            Assert.Equal((0x1_0000, new DmaRun(0x500_0000, 0x1_0000)), (hit.Bytes, runs[0]));
        Assert.Equal(misses, rig.Iommu.Iotlb.Misses); // the block was cached

        rig.Iommu.SetContext(0x10, IommuContext.Blocked);
        using (var blocked = rig.Iommu.TranslateRange(0x10, 0x100_0000, 0x1_0000, write: false, runs))
            Assert.Equal((DmaFaultReason.Blocked, 0), (blocked.Fault, blocked.Bytes));
        rig.Iommu.SetContext(0x10, IommuContext.Identity);
        using (var identity = rig.Iommu.TranslateRange(0x10, 0x100_0000, 0x1_0000, write: false, runs))
            Assert.Equal((DmaFaultReason.None, new DmaRun(0x100_0000, 0x1_0000)), (identity.Fault, runs[0]));
        rig.Iommu.ClearContext(0x10);
        using (var none = rig.Iommu.TranslateRange(0x10, 0x100_0000, 0x1_0000, write: false, runs))
            Assert.Equal((DmaFaultReason.NoContext, 0), (none.Fault, none.Bytes));
        rig.Iommu.SetContext(0x10, rig.Context);
        using (var back = rig.Iommu.TranslateRange(0x10, 0x100_0000, 0x1_0000, write: false, runs))
            Assert.Equal((0x1_0000, new DmaRun(0x500_0000, 0x1_0000)), (back.Bytes, runs[0]));
    }

    [Fact]
    public void NoBlockOfTheMsiWindowIsEverCachedSoARangeThereStaysNotMemory()
    {
        // The one-block case does not test for the interrupt window: it relies on the IOTLB refusing blocks that
        // overlap it, even when asked to cache one (as a walk never would).
        using var rig = new DmaRig();
        rig.Iommu.SetContext(0x10, rig.Context);
        rig.Table.Map(IommuHardware.MsiWindowStart, 0x500_0000, 0x1_0000, IommuProt.Read | IommuProt.Write);
        rig.Iommu.Iotlb.FillBlock(DmaRig.DomainId, IommuHardware.MsiWindowStart, 0x500_0000, IommuProt.Read | IommuProt.Write,
            rig.Iommu.Iotlb.Generation);
        Assert.Equal(0UL, rig.Iommu.Iotlb.ProbeBlock(DmaRig.DomainId, IommuHardware.MsiWindowStart));
        var runs = new DmaRun[4];
        using (var msi = rig.Iommu.TranslateRange(0x10, IommuHardware.MsiWindowStart, 0x1_0000, write: true, runs))
            Assert.Equal((DmaFaultReason.None, 0), (msi.Fault, msi.Bytes));
        // The same fill just below the window is kept.
        rig.Table.Map(IommuHardware.MsiWindowStart - 0x1_0000, 0x600_0000, 0x1_0000, IommuProt.Read | IommuProt.Write);
        rig.Iommu.Iotlb.FillBlock(DmaRig.DomainId, IommuHardware.MsiWindowStart - 0x1_0000, 0x600_0000,
            IommuProt.Read | IommuProt.Write, rig.Iommu.Iotlb.Generation);
        Assert.NotEqual(0UL, rig.Iommu.Iotlb.ProbeBlock(DmaRig.DomainId, IommuHardware.MsiWindowStart - 0x1_0000));
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(40, false)] // more leases than the unit has cells: the rest are counted in the overflow
    [InlineData(40, true)]
    public void AnInvalidationWaitsForEveryLeaseHeldWhenItStartedUntilTheLastIsReleased(int leases, bool newestFirst)
    {
        // Leases of one requester (so all but the first cell are found by the slow claim) and of others; each one
        // must hold the flush off by itself, wherever it was counted.
        using var rig = new DmaRig();
        for (ushort rid = 0x10; rid < 0x13; rid++)
            rig.Iommu.SetContext(rid, rig.Context);
        rig.Table.Map(0x10_0000, 0x50_0000, 0x1_0000, IommuProt.Read);
        var runs = new DmaRun[1];
        var held = new List<DmaRangeLease>();
        for (int i = 0; i < leases; i++)
            held.Add(rig.Iommu.TranslateRange((ushort)(0x10 + i % 3 / 2), 0x10_0000, 0x1_0000, write: false, runs));
        using var flushed = new ManualResetEventSlim();
        var unmapper = new Thread(() =>
        {
            rig.Table.Unmap(0x10_0000, 0x1_0000);
            rig.Iommu.FlushRange(DmaRig.DomainId, 0x10_0000, 0x1_0000);
            flushed.Set();
        });
        unmapper.Start();
        // Oldest first leaves only overflow counts held at the end, newest first only cells.
        var order = Enumerable.Range(0, leases).ToList();
        if (newestFirst)
            order.Reverse();
        for (int j = 0; j < order.Count; j++)
        {
            Assert.False(flushed.Wait(j == 0 ? 200 : 5), $"the flush finished with {order.Count - j} leases still held");
            held[order[j]].Dispose();
        }
        Assert.True(unmapper.Join(TimeSpan.FromSeconds(30)));
        using var after = rig.Iommu.TranslateRange(0x10, 0x10_0000, 0x1_0000, write: false, runs);
        Assert.Equal(DmaFaultReason.NotPresent, after.Fault);
    }

    [Fact]
    public void ALeaseReleasedOnAnotherThreadFreesItsCellForTheFlushAndForTheNextLease()
    {
        using var rig = new DmaRig();
        rig.Iommu.SetContext(0x10, rig.Context);
        rig.Table.Map(0x10_0000, 0x50_0000, 0x1000, IommuProt.Read);
        var runs = new DmaRun[1];
        for (int round = 0; round < 40; round++) // more rounds than cells: a cell that stayed taken would overflow
        {
            var lease = rig.Iommu.TranslateRange(0x10, 0x10_0000, 0x1000, write: false, runs);
            var releaser = new Thread(() => lease.Dispose());
            releaser.Start();
            Assert.True(releaser.Join(TimeSpan.FromSeconds(30)));
            var flush = new Thread(() => rig.Iommu.FlushRange(DmaRig.DomainId, 0x10_0000, 0x1000));
            flush.Start();
            Assert.True(flush.Join(TimeSpan.FromSeconds(30)));
        }
    }

    [Fact]
    public void ConcurrentLeasesOfSharedAndSeparateRequestersNeverSeeARetiredMapping()
    {
        // A mapper moves a 68 KiB IOVA range between two physical ranges with strict unmaps (unmap, flush, map the
        // other). Three readers (two on one requester, so they contend for its cell, one on another) take leases of
        // the one-block fast path (64 KiB at the block) and of the general path (64 KiB from the second page), and look
        // at the mapping count while they hold it: the flush that retires a mapping cannot return under a lease, so
        // the count must still be the one whose physical range the lease gave. A lease that let the flush through
        // (a cell not waited for, a claim without a full fence) shows as the next mapping's count.
        const ulong Iova = 0x100_0000;
        const int Length = 0x1_1000;
        using var rig = new DmaRig();
        rig.Iommu.SetContext(0x10, rig.Context);
        rig.Iommu.SetContext(0x11, rig.Context);
        ulong[] phys = [0x600_0000, 0x700_0000];
        int mapping = 0;
        rig.Table.Map(Iova, phys[0], Length, IommuProt.Read | IommuProt.Write);
        bool stop = false;
        int checkedLeases = 0;
        string? failure = null;
        Thread Reader(ushort rid, ulong offset) => new(() =>
        {
            var runs = new DmaRun[4];
            while (!Volatile.Read(ref stop) && failure is null)
            {
                using var lease = rig.Iommu.TranslateRange(rid, Iova + offset, 0x1_0000, write: true, runs);
                int k = Volatile.Read(ref mapping);
                if (lease.Fault != DmaFaultReason.None)
                    continue; // between the unmap and the next map
                if (lease.Count != 1 || runs[0] != new DmaRun(phys[k % 2] + offset, 0x1_0000))
                {
                    failure = $"rid {rid:x} offset {offset:x}, mapping {k}: lease gave {runs[0]} ({lease.Count} runs)";
                    return;
                }
                Interlocked.Increment(ref checkedLeases);
            }
        });
        Thread[] readers = [Reader(0x10, 0), Reader(0x10, 0x1000), Reader(0x11, 0)];
        foreach (var r in readers)
            r.Start();
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(3);
        for (int k = 0; (k < 2000 || Volatile.Read(ref checkedLeases) < 3000) && DateTime.UtcNow < until && failure is null; k++)
        {
            Thread.Yield();
            rig.Table.Unmap(Iova, Length);
            rig.Iommu.FlushRange(DmaRig.DomainId, Iova, Length);
            Volatile.Write(ref mapping, k + 1);
            rig.Table.Map(Iova, phys[(k + 1) % 2], Length, IommuProt.Read | IommuProt.Write);
        }
        Volatile.Write(ref stop, true);
        foreach (var r in readers)
            Assert.True(r.Join(TimeSpan.FromSeconds(30)));
        Assert.Null(failure);
        Assert.True(checkedLeases > 0);
    }
}
