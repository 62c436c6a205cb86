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
}
