using IommuKit.Core;
using IommuKit.Dma;
using IommuKit.Drivers;
using IommuKit.Paging;
using IommuKit.Simulation;
using Microsoft.Extensions.Time.Testing;
using Xunit;
using static IommuKit.Tests.Core.CoreRig;

namespace IommuKit.Tests.Dma;

/// <summary>The core hands a device its DMA API, bound to the group's current default domain.</summary>
public class DeviceDmaTests
{
    private const ulong Buffer = 0x1234_5000;

    private sealed record Rig(IommuCore Core, IommuDevice Nic, PhysicalMemory Memory, IommuHardware Hw, SimulatedDevice Bus, FakeTimeProvider Clock);

    private static Rig Boot(string cmdline)
    {
        var topo = PciTopo(("0000:00:02.0", 0x020000, 0x8086, 0x10d3, false));
        var core = NewCore(cmdline);
        var hw = new IommuHardware(name: "dmar0");
        var drv = new VtdDriver([new VtdUnit("dmar0", [], IncludeAll: true)], f => IoPageTables.Create(f))
        {
            Hardware = new Dictionary<string, IommuHardware> { ["dmar0"] = hw },
        };
        var nic = IommuDevice.FromPci(topo.Devices[0]);
        IommuKit.Tests.Core.CoreRig.Boot(core, drv, nic);
        var memory = new PhysicalMemory(capBytes: 64UL << 20);
        var bus = new SimulatedBus(memory, hw).AddDevice("nic", nic.Pci!.Address.RequesterId);
        return new Rig(core, nic, memory, hw, bus, new FakeTimeProvider());
    }

    [Fact]
    public void TheDeviceDmasThroughWhatItsDmaApiMappedInTheDefaultDomain()
    {
        var r = Boot("iommu.strict=1");
        using var dma = r.Core.DmaApiFor(r.Nic, r.Memory, r.Clock);
        ulong handle = dma.MapAddress(Buffer + 0x10, 64, DmaDirection.FromDevice);
        Assert.NotEqual(DmaApi.MappingError, handle);
        Assert.Same(r.Nic.Group!.DefaultDomain, dma.Domain);
        Assert.Equal(DmaMode.Strict, dma.Mode);
        Assert.Equal(DmaFaultReason.None, r.Bus.Write(handle, [0xaa, 0xbb, 0xcc, 0xdd]));
        Assert.Equal(0xddcc_bbaau, r.Memory.ReadUInt32(Buffer + 0x10));

        // Strict: once unmapped the device cannot use the address, even though the IOTLB cached it.
        Assert.Equal(Errno.Ok, dma.UnmapSingle(handle, 64, DmaDirection.FromDevice));
        Assert.Equal(DmaFaultReason.NotPresent, r.Bus.Write(handle, [1]));
    }

    [Fact]
    public void AfterATypeChangeTheOldMappingIsRefusedAndANewOneWorks()
    {
        var r = Boot("iommu.strict=1");
        using var dma = r.Core.DmaApiFor(r.Nic, r.Memory, r.Clock);
        ulong old = dma.MapAddress(Buffer, 4096, DmaDirection.Bidirectional);
        var oldDomain = dma.Domain;

        // DMA -> DMA-FQ upgrades the domain in place (iommu_group_store_type): the mapping stays, unmaps turn lazy.
        Assert.True(r.Core.StoreType(r.Nic.Group!, "DMA-FQ").IsOk);
        Assert.Equal(DmaFaultReason.None, r.Bus.Write(old, [1]));
        ulong lazy = dma.MapAddress(Buffer + 0x1000, 4096, DmaDirection.Bidirectional);
        Assert.Same(oldDomain, dma.Domain);
        Assert.Equal(DmaMode.Lazy, dma.Mode);
        Assert.Equal(Errno.Ok, dma.UnmapSingle(lazy, 4096, DmaDirection.Bidirectional));

        // DMA-FQ -> DMA allocates a new default domain and frees the old one with everything mapped in it.
        Assert.True(r.Core.StoreType(r.Nic.Group!, "DMA").IsOk);
        Assert.Equal(DmaFaultReason.NotPresent, r.Bus.Write(old, [1]));
        Assert.Equal(Errno.ENOENT, dma.UnmapSingle(old, 4096, DmaDirection.Bidirectional));
        Assert.NotSame(oldDomain, dma.Domain);
        Assert.True(oldDomain!.Freed);
        Assert.Equal(DmaMode.Strict, dma.Mode);
        ulong fresh = dma.MapAddress(Buffer, 4096, DmaDirection.Bidirectional);
        Assert.Equal(DmaFaultReason.None, r.Bus.Write(fresh, [7]));
        Assert.Equal(7u, r.Memory.ReadUInt32(Buffer) & 0xff);

        Assert.True(r.Core.StoreType(r.Nic.Group!, "identity").IsOk);
        Assert.Equal(Buffer, dma.MapAddress(Buffer, 4096, DmaDirection.Bidirectional)); // pass-through
        Assert.Equal(DmaMode.Identity, dma.Mode);
    }

    [Fact]
    public void TheApiRefusesWhileAUserOwnsTheGroupAndForGoodAfterTheDeviceIsRemoved()
    {
        var r = Boot("iommu.strict=1");
        using var dma = r.Core.DmaApiFor(r.Nic, r.Memory, r.Clock);
        Assert.NotEqual(DmaApi.MappingError, dma.MapAddress(Buffer, 4096, DmaDirection.ToDevice));
        Assert.True(r.Core.GroupClaimDmaOwner(r.Nic.Group!, new object()).IsOk);
        var busy = dma.MapSingle(Buffer, 4096, DmaDirection.ToDevice, out ulong refused);
        Assert.Equal((Errno.EBUSY, DmaApi.MappingError), (busy.Errno, refused));
        Assert.Contains(r.Nic.Name, busy.Reason);
        Assert.Equal(Errno.EBUSY, dma.UnmapSingle(0x1000, 4096, DmaDirection.ToDevice).Errno);
        r.Core.GroupReleaseDmaOwner(r.Nic.Group!);
        Assert.NotEqual(DmaApi.MappingError, dma.MapAddress(Buffer, 4096, DmaDirection.ToDevice));

        r.Core.RemoveDevice(r.Nic);
        var gone = dma.MapSingle(Buffer, 4096, DmaDirection.ToDevice, out refused);
        Assert.Equal((Errno.ENODEV, DmaApi.MappingError), (gone.Errno, refused));
        Assert.Contains(r.Nic.Name, gone.Reason);
    }

    [Fact]
    public void ALazyDomainKeepsTheStaleTranslationUntilTheFlushQueueTimesOut()
    {
        var r = Boot("iommu.strict=0");
        using var dma = r.Core.DmaApiFor(r.Nic, r.Memory, r.Clock);
        ulong handle = dma.MapAddress(Buffer, 4096, DmaDirection.Bidirectional);
        Assert.Equal(DmaMode.Lazy, dma.Mode);
        Span<byte> b = stackalloc byte[4];
        Assert.Equal(DmaFaultReason.None, r.Bus.Read(handle, b)); // cached in the IOTLB now
        Assert.Equal(Errno.Ok, dma.UnmapSingle(handle, 4096, DmaDirection.Bidirectional));
        Assert.Equal(DmaFaultReason.None, r.Bus.Read(handle, b)); // the stale window of DMA-FQ
        r.Clock.Advance(FlushQueue.DefaultTimeout);
        Assert.Equal(DmaFaultReason.NotPresent, r.Bus.Read(handle, b));
    }
}
