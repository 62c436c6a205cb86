using FsCheck;
using FsCheck.Fluent;
using IommuKit.Dma;
using IommuKit.Simulation;
using Xunit;

namespace IommuKit.Tests.Dma;

public class ScatterGatherTests
{
    private const ushort Rid = 0x0400;

    [Theory]
    [InlineData(DmaMode.Strict)]
    [InlineData(DmaMode.Lazy)]
    public void PageAlignedScatterListBecomesOneContiguousDmaSegment(DmaMode mode)
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(Rid);
        var api = rig.Api(mode);
        ulong[] phys = [0x90_0000, 0x10_3000, 0x77_1000, 0x20_0000];
        var sg = phys.Select(p => new ScatterEntry(p, 4096)).ToArray();

        Assert.Equal(1, api.MapSgCount(sg, DmaDirection.FromDevice));
        Assert.Equal(4u * 4096, sg[0].DmaLength);
        var data = DmaRig.Pattern(4 * 4096, 9);
        Assert.Equal(DmaFaultReason.None, dev.Write(sg[0].DmaAddress, data)); // one linear DMA
        var page = new byte[4096];
        for (int i = 0; i < phys.Length; i++)
        {
            rig.Memory.Read(phys[i], page);
            Assert.Equal(data.AsSpan(i * 4096, 4096).ToArray(), page);
        }

        api.UnmapSg(sg, DmaDirection.FromDevice);
        if (mode == DmaMode.Lazy)
            Assert.Equal(1, api.FlushQueue!.PendingCount); // one queue entry for the whole list
        api.FlushQueue?.FlushAll();
        Assert.Equal(DmaFaultReason.NotPresent, dev.Write(sg[0].DmaAddress, data));
        Assert.Equal(1, rig.Table.TablePageCount);
    }

    [Fact]
    public void EntriesNotEndingOnAGranuleStartNewSegmentsInsideTheSameIovaRange()
    {
        using var rig = new DmaRig();
        var api = rig.Api(DmaMode.Strict);
        ScatterEntry[] sg =
        [
            new(0x10_0100, 0x100), new(0x20_0000, 0x1000), new(0x30_0000, 0x800), new(0x40_0010, 0x10),
        ];
        Assert.Equal(3, api.MapSgCount(sg, DmaDirection.ToDevice));
        ulong b = sg[0].DmaAddress - 0x100;
        Assert.Equal(0UL, b & 0xfff);
        Assert.Equal((b + 0x100, 0x100u), (sg[0].DmaAddress, sg[0].DmaLength));
        Assert.Equal((b + 0x1000, 0x1800u), (sg[1].DmaAddress, sg[1].DmaLength));
        Assert.Equal((b + 0x3010, 0x10u), (sg[2].DmaAddress, sg[2].DmaLength));
        Assert.Equal((DmaApi.MappingError, 0u), (sg[3].DmaAddress, sg[3].DmaLength));
        Assert.True(rig.Table.TryIovaToPhys(b + 0x3010, out ulong p, out _));
        Assert.Equal(0x40_0010UL, p);
        api.UnmapSg(sg, DmaDirection.ToDevice);
        Assert.Equal(1, rig.Table.TablePageCount);
    }

    [Fact]
    public void MergedSegmentsNeverExceedTheMaximumSegmentSize()
    {
        using var rig = new DmaRig();
        var api = rig.Api(DmaMode.Strict);
        var sg = Enumerable.Range(0, 32).Select(i => new ScatterEntry(0x100_0000 + (ulong)i * 0x2000, 4096)).ToArray();
        Assert.Equal(2, api.MapSgCount(sg, DmaDirection.ToDevice));
        Assert.Equal(DmaApi.DefaultMaxSegmentSize, sg[0].DmaLength);
        Assert.Equal(sg[0].DmaAddress + DmaApi.DefaultMaxSegmentSize, sg[1].DmaAddress);
        api.UnmapSg(sg, DmaDirection.ToDevice);
    }

    [Fact]
    public void SegmentsArePaddedSoNoneCrossesTheSegmentBoundary()
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(Rid);
        var api = rig.Api(DmaMode.Strict);
        api.SegmentBoundaryMask = 0x3fff; // 16 KiB boundaries
        ScatterEntry[] sg = [new(0x10_0000, 0x3000), new(0x20_0000, 0x2000)];
        Assert.Equal(2, api.MapSgCount(sg, DmaDirection.ToDevice));
        Assert.Equal(0UL, sg[1].DmaAddress & 0x3fff);
        Assert.Equal(sg[0].DmaAddress + 0x4000, sg[1].DmaAddress);
        var buf = new byte[1];
        Assert.Equal(DmaFaultReason.NotPresent, dev.Read(sg[0].DmaAddress + 0x3000, buf)); // the pad maps nothing
        api.UnmapSg(sg, DmaDirection.ToDevice);
        Assert.Equal(1, rig.Table.TablePageCount);
    }

    [Theory]
    [InlineData(DmaMode.Strict)]
    [InlineData(DmaMode.Lazy)]
    [InlineData(DmaMode.Identity)]
    [InlineData(DmaMode.Blocked)]
    public void EmptyListsAndEmptyEntriesAreRefused(DmaMode mode)
    {
        using var rig = new DmaRig();
        var api = rig.Api(mode);
        Assert.Equal(-(int)Errno.EINVAL, api.MapSgCount([], DmaDirection.ToDevice));
        Assert.Equal(-(int)Errno.EINVAL, api.MapSgCount(new[] { new ScatterEntry(0x1000, 0) }, DmaDirection.ToDevice));
    }

    [Fact]
    public void DmaSegmentsCarryExactlyTheEntriesBytesInOrder()
    {
        // Property: for any list, reading every DMA segment in order yields the entries' bytes in order.
        Prop.ForAll<int>(seed =>
        {
            using var rig = new DmaRig();
            var dev = rig.AddDevice(Rid);
            var api = rig.Api(DmaMode.Strict);
            var rnd = new Random(seed);
            int n = rnd.Next(1, 12);
            var sg = new ScatterEntry[n];
            var expected = new List<byte>();
            for (int i = 0; i < n; i++)
            {
                ulong phys = 0x100_0000 + (ulong)i * 0x10_0000 + (ulong)(rnd.Next(2) == 0 ? 0 : rnd.Next(0, 4096));
                uint len = (uint)(rnd.Next(2) == 0 ? 4096 * rnd.Next(1, 4) - (int)(phys & 0xfff) : rnd.Next(1, 9000));
                var bytes = DmaRig.Pattern((int)len, seed ^ i);
                rig.Memory.Write(phys, bytes);
                expected.AddRange(bytes);
                sg[i] = new ScatterEntry(phys, len);
            }
            int count = api.MapSgCount(sg, DmaDirection.ToDevice);
            if (count < 1 || count > n)
                return false;
            var got = new List<byte>();
            for (int i = 0; i < count; i++)
            {
                var buf = new byte[sg[i].DmaLength];
                if (dev.Read(sg[i].DmaAddress, buf) != DmaFaultReason.None)
                    return false;
                got.AddRange(buf);
            }
            api.UnmapSg(sg, DmaDirection.ToDevice);
            return expected.SequenceEqual(got) && rig.Table.TablePageCount == 1;
        }).QuickCheckThrowOnFailure();
    }
}
