using IommuKit.Dma;
using IommuKit.Paging;
using IommuKit.Simulation;
using Xunit;

namespace IommuKit.Tests.Dma;

public class DmaApiTests
{
    private const ushort Rid = 0x0300;

    [Theory]
    [InlineData(DmaMode.Strict)]
    [InlineData(DmaMode.Lazy)]
    public void DeviceReadsAToDeviceBufferAndWritesAFromDeviceBufferEndToEnd(DmaMode mode)
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(Rid);
        var api = rig.Api(mode);
        ulong txPhys = 0x100_0123, rxPhys = 0x200_0000;
        var tx = DmaRig.Pattern(10_000, 1);
        rig.Memory.Write(txPhys, tx);

        ulong txDma = api.MapAddress(txPhys, (ulong)tx.Length, DmaDirection.ToDevice);
        ulong rxDma = api.MapAddress(rxPhys, 10_000, DmaDirection.FromDevice);
        Assert.NotEqual(DmaApi.MappingError, txDma);
        Assert.NotEqual(DmaApi.MappingError, rxDma);
        Assert.Equal(txPhys & 0xfff, txDma & 0xfff); // iova_offset is preserved

        var seen = new byte[tx.Length];
        Assert.Equal(DmaFaultReason.None, dev.Read(txDma, seen));
        Assert.Equal(tx, seen);
        Assert.Equal(DmaFaultReason.None, dev.Write(rxDma, seen));
        var landed = new byte[tx.Length];
        rig.Memory.Read(rxPhys, landed);
        Assert.Equal(tx, landed);

        api.UnmapSingle(txDma, (ulong)tx.Length, DmaDirection.ToDevice);
        api.UnmapSingle(rxDma, 10_000, DmaDirection.FromDevice);
        api.FlushQueue?.FlushAll();
        Assert.Equal(1, rig.Table.TablePageCount); // every table freed again
        Assert.Equal(0, rig.Iommu.FaultCount);
    }

    [Theory]
    [InlineData(DmaDirection.ToDevice, IommuProt.Read)]
    [InlineData(DmaDirection.FromDevice, IommuProt.Write)]
    [InlineData(DmaDirection.Bidirectional, IommuProt.Read | IommuProt.Write)]
    public void DirectionBecomesExactlyThePermissionItNeeds(DmaDirection dir, IommuProt expected)
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(Rid);
        var api = rig.Api(DmaMode.Strict);
        ulong dma = api.MapAddress(0x40_0000, 4096, dir);
        Assert.True(rig.Table.TryIovaToPhys(dma, out _, out var prot));
        Assert.Equal(expected, prot & (IommuProt.Read | IommuProt.Write));
        var buf = new byte[16];
        Assert.Equal((expected & IommuProt.Read) != 0 ? DmaFaultReason.None : DmaFaultReason.Permission, dev.Read(dma, buf));
        Assert.Equal((expected & IommuProt.Write) != 0 ? DmaFaultReason.None : DmaFaultReason.Permission, dev.Write(dma, buf));
    }

    [Fact]
    public void DirectionNoneIsRefused()
    {
        using var rig = new DmaRig();
        Assert.Throws<ArgumentOutOfRangeException>(() => rig.Api(DmaMode.Strict).MapAddress(0x1000, 1, DmaDirection.None));
    }

    [Fact]
    public void StrictUnmapRevokesAccessBeforeReturning()
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(Rid);
        var api = rig.Api(DmaMode.Strict);
        ulong dma = api.MapAddress(0x50_0000, 4096, DmaDirection.Bidirectional);
        var buf = new byte[64];
        Assert.Equal(DmaFaultReason.None, dev.Read(dma, buf)); // the IOTLB now caches the page
        api.UnmapSingle(dma, 4096, DmaDirection.Bidirectional);
        Assert.Equal(DmaFaultReason.NotPresent, dev.Read(dma, buf));
    }

    [Fact]
    public void LazyUnmapLeavesAStaleTranslationUntilTheFlushQueueTimesOut()
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(Rid);
        var api = rig.Api(DmaMode.Lazy);
        rig.Memory.Write(0x50_0000, [0x5a]);
        ulong dma = api.MapAddress(0x50_0000, 4096, DmaDirection.Bidirectional);
        var buf = new byte[1];
        Assert.Equal(DmaFaultReason.None, dev.Read(dma, buf)); // cached in the IOTLB

        api.UnmapSingle(dma, 4096, DmaDirection.Bidirectional);
        Assert.False(rig.Table.TryIovaToPhys(dma, out _, out _)); // the PTE is gone...
        buf[0] = 0;
        Assert.Equal(DmaFaultReason.None, dev.Read(dma, buf)); // ...but the device still reads through the stale entry
        Assert.Equal(0x5a, buf[0]);
        Assert.Equal(1, api.FlushQueue!.PendingCount);
        Assert.True(api.FlushQueue.TimerArmed);

        rig.Clock.Advance(FlushQueue.DefaultTimeout - TimeSpan.FromTicks(1));
        Assert.Equal(DmaFaultReason.None, dev.Read(dma, buf)); // still inside the 10 ms window
        rig.Clock.Advance(TimeSpan.FromTicks(1));
        Assert.Equal(DmaFaultReason.NotPresent, dev.Read(dma, buf)); // the timeout flushed the IOTLB
        Assert.Equal(0, api.FlushQueue.PendingCount);
        Assert.False(api.FlushQueue.TimerArmed);
    }

    [Fact]
    public void LazyStaleWindowIsBoundedByTheRingSize()
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(Rid);
        var api = rig.Api(DmaMode.Lazy);
        var fq = api.FlushQueue!;
        ulong first = api.MapAddress(0x50_0000, 4096, DmaDirection.ToDevice);
        var buf = new byte[1];
        dev.Read(first, buf);
        api.UnmapSingle(first, 4096, DmaDirection.ToDevice);
        // A ring of 256 holds 255 entries; the 256th unmap finds it full and flushes without any time passing.
        for (int i = 1; i < FlushQueue.DefaultEntries - 1; i++)
            api.UnmapSingle(api.MapAddress(0x60_0000, 4096, DmaDirection.ToDevice), 4096, DmaDirection.ToDevice);
        Assert.Equal(0, fq.FlushFinishCount);
        Assert.Equal(FlushQueue.DefaultEntries - 1, fq.PendingCount);
        Assert.Equal(DmaFaultReason.None, dev.Read(first, buf)); // still stale
        api.UnmapSingle(api.MapAddress(0x60_0000, 4096, DmaDirection.ToDevice), 4096, DmaDirection.ToDevice);
        Assert.Equal(1, fq.FlushFinishCount);
        Assert.Equal(1, fq.PendingCount); // everything covered by the flush was freed; the new entry waits
        Assert.Equal(DmaFaultReason.NotPresent, dev.Read(first, buf));
    }

    [Fact]
    public void LazyIovaIsNotHandedOutAgainBeforeTheFlushThatCoversIt()
    {
        using var rig = new DmaRig();
        var api = rig.Api(DmaMode.Lazy);
        var live = new HashSet<ulong>();
        var queued = new List<ulong>();
        for (int i = 0; i < 100; i++)
        {
            ulong dma = api.MapAddress(0x70_0000, 4096, DmaDirection.ToDevice);
            Assert.DoesNotContain(dma, queued); // a queued IOVA may still be in someone's IOTLB
            Assert.True(live.Add(dma));
            api.UnmapSingle(dma, 4096, DmaDirection.ToDevice);
            live.Remove(dma);
            queued.Add(dma);
        }
        rig.Clock.Advance(FlushQueue.DefaultTimeout);
        ulong again = api.MapAddress(0x70_0000, 4096, DmaDirection.ToDevice);
        Assert.Contains(again, queued); // after the flush the IOVAs are reusable
    }

    [Fact]
    public void IdentityModeHandsOutPhysicalAddressesAndMapsNothing()
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(Rid, IommuContext.Identity);
        var api = rig.Api(DmaMode.Identity);
        rig.Memory.Write(0x123_4567, [7]);
        ulong dma = api.MapAddress(0x123_4567, 1, DmaDirection.ToDevice);
        Assert.Equal(0x123_4567UL, dma);
        var buf = new byte[1];
        Assert.Equal(DmaFaultReason.None, dev.Read(dma, buf));
        Assert.Equal(7, buf[0]);
        Assert.Equal(1, rig.Table.TablePageCount);
        api.UnmapSingle(dma, 1, DmaDirection.ToDevice);
    }

    [Fact]
    public void IdentityModeRefusesBuffersBeyondTheMask()
    {
        using var rig = new DmaRig();
        var api = rig.Api(DmaMode.Identity, mask: 0xffff_ffff);
        Assert.Equal(DmaApi.MappingError, api.MapAddress(0xffff_f000, 0x2000, DmaDirection.ToDevice));
        Assert.Equal(0xffff_f000UL, api.MapAddress(0xffff_f000, 0x1000, DmaDirection.ToDevice));
    }

    [Fact]
    public void BlockedModeDmaFaultsWithBlocked()
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(Rid, IommuContext.Blocked);
        var api = rig.Api(DmaMode.Blocked);
        ulong dma = api.MapAddress(0x10_0000, 4096, DmaDirection.Bidirectional);
        Assert.Equal(DmaFaultReason.Blocked, dev.Write(dma, [1]));
        Assert.Equal(DmaFaultReason.Blocked, Assert.Single(rig.Iommu.Faults).Reason);
        Assert.Equal(0, rig.Memory.AllocatedBytes);
    }

    [Fact]
    public void UnmappingSomethingNotMappedIsENOENTAndChangesNothing()
    {
        using var rig = new DmaRig();
        var api = rig.Api(DmaMode.Strict);
        var r = api.UnmapSingle(0x1000_0000, 4096, DmaDirection.ToDevice);
        Assert.Equal(Errno.ENOENT, r.Errno);
        Assert.Contains("not mapped by this DMA API", r.Reason);
        // Half of a mapped range plus an unmapped page: refused as a whole, the mapped half stays.
        var dev = rig.AddDevice(Rid);
        ulong dma = api.MapAddress(0x50_0000, 4096, DmaDirection.ToDevice);
        Assert.Equal(Errno.ENOENT, api.UnmapSingle(dma, 8192, DmaDirection.ToDevice).Errno);
        Assert.Equal(DmaFaultReason.None, dev.Read(dma, new byte[16]));
        Assert.True(api.UnmapSingle(dma, 4096, DmaDirection.ToDevice).IsOk);
        Assert.Equal(Errno.ENOENT, api.UnmapSingle(dma, 4096, DmaDirection.ToDevice).Errno); // twice: the second is a bug
    }

    [Fact]
    public void MapFailuresCarryTheirErrnoAndNameTheDevice()
    {
        using var rig = new DmaRig();
        var api = rig.Api(DmaMode.Strict, mask: 0xffff_ffff);
        var empty = api.MapSingle(0x1000, 0, DmaDirection.ToDevice, out ulong dma);
        Assert.Equal((Errno.EINVAL, DmaApi.MappingError), (empty.Errno, dma));
        Assert.Contains(api.DeviceName, empty.Reason);
        // A 32-bit device asking for more than 4 GiB of IOVA: ENOMEM, not an exception.
        var tooBig = api.MapSingle(0x1000, 1UL << 33, DmaDirection.ToDevice, out dma);
        Assert.Equal((Errno.ENOMEM, DmaApi.MappingError), (tooBig.Errno, dma));
        var sg = api.MapSg([], DmaDirection.ToDevice, out int segments);
        Assert.Equal((Errno.EINVAL, 0), (sg.Errno, segments));
        // Without translation the mask decides: a buffer above a 32-bit mask cannot be reached.
        var identity = rig.Api(DmaMode.Identity, mask: 0xffff_ffff);
        Assert.Equal(Errno.EIO, identity.MapSingle(1UL << 32, 4096, DmaDirection.ToDevice, out _).Errno);
        Assert.True(api.AllocCoherent(0, out ulong phys, out ulong handle).Errno == Errno.EINVAL && phys == 0 && handle == DmaApi.MappingError);
    }

    [Theory]
    [InlineData(0xffff_ffffUL)]
    [InlineData(0x0fff_ffffUL)]
    [InlineData(0xff_ffffUL)]
    public void EveryMappingEndsBelowTheDmaMask(ulong mask)
    {
        using var rig = new DmaRig();
        var api = rig.Api(DmaMode.Strict, mask);
        for (int i = 0; i < 200; i++)
        {
            ulong size = (ulong)(i % 7 + 1) * 3000;
            ulong dma = api.MapAddress(0x100_0000 + (ulong)i * 0x10_0000, size, DmaDirection.ToDevice);
            Assert.NotEqual(DmaApi.MappingError, dma);
            Assert.True(dma + size - 1 <= mask, $"0x{dma:x}+0x{size:x} above mask 0x{mask:x}");
        }
    }

    [Fact]
    public void MappingFailsCleanlyWhenTheSpaceBelowTheMaskIsExhausted()
    {
        using var rig = new DmaRig();
        var api = rig.Api(DmaMode.Strict, mask: 0xf_ffff); // 1 MiB of IOVA, page 0 never used
        int mapped = 0;
        while (api.MapAddress(0x100_0000, 0x1_0000, DmaDirection.ToDevice) != DmaApi.MappingError)
            mapped++;
        Assert.Equal(15, mapped); // 16 x 64 KiB slots minus the one containing IOVA page 0
    }

    [Fact]
    public void SixtyFourBitDeviceGetsIovasBelow4GiBFirst()
    {
        using var rig = new DmaRig();
        var api = rig.Api(DmaMode.Strict);
        ulong dma = api.MapAddress(0x100_0000, 4096, DmaDirection.ToDevice);
        Assert.True(dma < 1UL << 32);
        Assert.True(api.TriesBelow4GFirst);
    }

    [Fact]
    public void ThirtyTwoBitFirstIsDroppedForGoodAfterItsFirstFailure()
    {
        using var rig = new DmaRig();
        // Leave only IOVA pages 1-3 free below 4 GiB (page 0 is never handed out).
        var reserved = new[] { new IovaReservedRegion(0x4000, (1UL << 32) - 0x4000) };
        var api = rig.Api(DmaMode.Strict, reserved: reserved);
        var log = new List<string>();
        api.Log = log.Add;

        ulong low = api.MapAddress(0x100_0000, 8192, DmaDirection.ToDevice); // size-aligned: pages 2-3
        Assert.Equal(0x2000UL, low);
        ulong high = api.MapAddress(0x200_0000, 8192, DmaDirection.ToDevice); // nothing 2-aligned left below 4 GiB
        Assert.True(high >= 1UL << 32);
        Assert.False(api.TriesBelow4GFirst);
        Assert.Equal("device: Using 48-bit DMA addresses", Assert.Single(log));

        // Page 1 is still free below 4 GiB, but the device no longer looks there: it gets the top of its limit.
        ulong next = api.MapAddress(0x300_0000, 4096, DmaDirection.ToDevice);
        Assert.True(next >= 1UL << 32);
        Assert.Single(log);
    }

    [Fact]
    public void ForceDacSkipsTheBelow4GiBAttempt()
    {
        using var rig = new DmaRig();
        var api = rig.Api(DmaMode.Strict, forceDac: true);
        Assert.True(api.MapAddress(0x100_0000, 4096, DmaDirection.ToDevice) >= 1UL << 32);
    }

    [Fact]
    public void ReservedRegionsAreNeverHandedOut()
    {
        using var rig = new DmaRig();
        var msi = new IovaReservedRegion(IommuHardware.MsiWindowStart, IommuHardware.MsiWindowSize);
        var swMsi = new IovaReservedRegion(0xfd00_0000, 0x10_0000, SoftwareMsi: true);
        var api = rig.Api(DmaMode.Strict, mask: 0xffff_ffff, reserved: [msi, swMsi]);
        bool sawSwMsi = false;
        for (int i = 0; i < 64; i++)
        {
            ulong dma = api.MapAddress(0x100_0000, 0x10_0000, DmaDirection.ToDevice); // 1 MiB, top-down from 4 GiB
            Assert.False(dma < msi.Start + msi.Length && msi.Start < dma + 0x10_0000, $"0x{dma:x} overlaps the MSI window");
            sawSwMsi |= dma == swMsi.Start;
        }
        Assert.True(sawSwMsi); // SW_MSI regions are not reserved in the IOVA space (spec 8.4)
    }

    [Fact]
    public void CoherentBufferIsZeroedMappedBothWaysAndFreedCleanly()
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(Rid);
        var api = rig.Api(DmaMode.Strict, mask: ulong.MaxValue);
        api.CoherentDmaMask = 0xffff_ffff;
        Assert.True(api.AllocCoherent(6000, out ulong phys, out ulong handle).IsOk);
        Assert.NotEqual(0UL, phys);
        Assert.True(handle + 8191 <= 0xffff_ffff);
        var buf = new byte[8192];
        Assert.Equal(DmaFaultReason.None, dev.Read(handle, buf));
        Assert.All(buf, b => Assert.Equal(0, b));
        Assert.Equal(DmaFaultReason.None, dev.Write(handle + 100, [1, 2]));
        Assert.Equal(0x0201u, rig.Memory.ReadUInt32(phys + 100));
        Assert.True(api.FreeCoherent(6000, phys, handle).IsOk);
        Assert.Equal(DmaFaultReason.NotPresent, dev.Read(handle, buf));
    }

    [Fact]
    public void AnInvalidatorForADomainIdBeyond16BitsIsRefusedWhenItIsCreated()
    {
        // Not at a flush queue's first flush, which may run on the timer's thread where an exception ends the process.
        using var rig = new DmaRig();
        Assert.Throws<ArgumentOutOfRangeException>(() => rig.Iommu.InvalidatorFor(IommuHardware.MaxDomainId + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => rig.Iommu.InvalidatorFor(-1));
    }

    [Fact]
    public void TheIovaGranuleMustMatchTheTablesSmallestPage()
    {
        using var rig = new DmaRig();
        Assert.Throws<ArgumentException>(() =>
            new DmaApi(rig.Iommu.InvalidatorFor(1), rig.Table, new IovaAllocator(8192, 1), DmaMode.Strict, ulong.MaxValue));
    }
}
