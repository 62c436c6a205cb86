using IommuKit.Paging;
using IommuKit.Simulation;
using IommuKit.Tests.Dma;
using Xunit;

namespace IommuKit.Tests.Simulation;

/// <summary>The bus's copy path translates 64 KiB blocks with one IOTLB probe (the block entries) and keeps the
/// invalidation semantics of page entries.</summary>
public class BlockDmaTests
{
    private const ushort Rid = 0x10;
    private const ulong Iova = 0x100_0000;
    private const ulong Phys = 0x500_0000;
    private const int Block = 0x1_0000;

    private static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Fact]
    public void A64KiBDmaIsCachedAsOneBlockAndAStrictUnmapInsideItFaultsTheNextDmaAtThatPage()
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(Rid);
        rig.Table.Map(Iova, Phys, 2 * Block, IommuProt.Read | IommuProt.Write);
        var data = Pattern(2 * Block, 1);
        Assert.Equal(DmaFaultReason.None, dev.Write(Iova, data)); // page by page, then cached as two blocks
        // The second DMA takes one block probe per 64 KiB: no page lookup at all.
        long hits = rig.Iommu.Iotlb.Hits, misses = rig.Iommu.Iotlb.Misses;
        var again = Pattern(2 * Block, 2);
        Assert.Equal(DmaFaultReason.None, dev.Write(Iova, again));
        Assert.Equal((hits, misses), (rig.Iommu.Iotlb.Hits, rig.Iommu.Iotlb.Misses));
        var back = new byte[2 * Block];
        rig.Memory.Read(Phys, back);
        Assert.Equal(again, back);

        // Strict unmap of the 4th page: the range invalidation drops the block entry, so the DMA faults at that page
        // after transferring the three before it.
        rig.Table.Unmap(Iova + 0x3000, 0x1000);
        rig.Iommu.FlushRange(DmaRig.DomainId, Iova + 0x3000, 0x1000);
        var third = Pattern(Block, 3);
        Assert.Equal(DmaFaultReason.NotPresent, dev.Write(Iova, third));
        var first = new byte[Block];
        rig.Memory.Read(Phys, first);
        Assert.Equal(third.AsSpan(0, 0x3000).ToArray(), first[..0x3000]);
        Assert.Equal(again.AsSpan(0x3000, 0x1000).ToArray(), first[0x3000..0x4000]); // nothing reached the unmapped page
        Assert.Equal(Iova + 0x3000, rig.Iommu.Faults[^1].Address);
    }

    [Fact]
    public void ABlockWhosePagesAreScatteredOrOfMixedPermissionIsNeverUsedWhole()
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(Rid);
        // Block 1: contiguous but page 5 read-only. Block 2: every page mapped, but two pages swapped physically.
        rig.Table.Map(Iova, Phys, Block, IommuProt.Read | IommuProt.Write);
        rig.Table.Unmap(Iova + 0x5000, 0x1000);
        rig.Table.Map(Iova + 0x5000, Phys + 0x5000, 0x1000, IommuProt.Read);
        rig.Table.Map(Iova + Block, Phys + Block, Block, IommuProt.Read | IommuProt.Write);
        rig.Table.Unmap(Iova + Block, 0x2000);
        rig.Table.Map(Iova + Block, Phys + Block + 0x1000, 0x1000, IommuProt.Read | IommuProt.Write);
        rig.Table.Map(Iova + Block + 0x1000, Phys + Block, 0x1000, IommuProt.Read | IommuProt.Write);

        var block = new byte[Block];
        for (int round = 0; round < 2; round++) // the second round runs with whatever the first cached
        {
            Assert.Equal(DmaFaultReason.None, dev.Read(Iova, block)); // reads are allowed on every page
            Assert.Equal(DmaFaultReason.Permission, dev.Write(Iova, Pattern(Block, round)));
            Assert.Equal(Iova + 0x5000, rig.Iommu.Faults[^1].Address);

            var data = Pattern(Block, 10 + round);
            Assert.Equal(DmaFaultReason.None, dev.Write(Iova + Block, data));
            var page = new byte[0x1000];
            rig.Memory.Read(Phys + Block + 0x1000, page); // IOVA page 0 of block 2
            Assert.Equal(data[..0x1000], page);
            rig.Memory.Read(Phys + Block, page);          // IOVA page 1
            Assert.Equal(data[0x1000..0x2000], page);
        }
    }

    [Fact]
    public void ConcurrentRemapsNeverLeaveAStaleBlockBehind()
    {
        // A mapper moves one 64 KiB IOVA block between two physical blocks with strict unmaps (unmap, range flush,
        // then map the other); a reader takes range leases over it (block entries, filled and hit). While a lease is
        // held the flush that retires its mapping cannot finish, so the physical block a lease returns must be the
        // one of the mapping current when the reader looks at the mapping count under the lease: a block entry that
        // survived its invalidation would hand out the retired block.
        using var rig = new DmaRig();
        rig.Iommu.SetContext(Rid, rig.Context);
        ulong[] phys = [0x600_0000, 0x700_0000];
        int mapping = 0; // number of retired mappings; mapping k maps phys[k % 2]
        rig.Table.Map(Iova, phys[0], Block, IommuProt.Read | IommuProt.Write);
        bool stop = false;
        int checkedLeases = 0;
        string? failure = null;
        var reader = new Thread(() =>
        {
            var runs = new DmaRun[16];
            while (!Volatile.Read(ref stop))
            {
                using var lease = rig.Iommu.TranslateRange(Rid, Iova, Block, write: true, runs);
                int k = Volatile.Read(ref mapping);
                if (lease.Fault != DmaFaultReason.None)
                    continue; // between the unmap and the next map
                if (lease.Count != 1 || runs[0] != new DmaRun(phys[k % 2], Block))
                {
                    failure = $"mapping {k}: lease gave {runs[0]} ({lease.Count} runs), expected 0x{phys[k % 2]:x}";
                    return;
                }
                checkedLeases++;
            }
        });
        reader.Start();
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(2);
        for (int k = 0; (k < 2000 || Volatile.Read(ref checkedLeases) < 1000) && DateTime.UtcNow < until && failure is null; k++)
        {
            Thread.Yield();
            rig.Table.Unmap(Iova, Block);
            rig.Iommu.FlushRange(DmaRig.DomainId, Iova, Block);
            Volatile.Write(ref mapping, k + 1);
            rig.Table.Map(Iova, phys[(k + 1) % 2], Block, IommuProt.Read | IommuProt.Write);
        }
        Volatile.Write(ref stop, true);
        Assert.True(reader.Join(TimeSpan.FromSeconds(30)));
        Assert.Null(failure);
        Assert.True(checkedLeases > 0);
    }
}
