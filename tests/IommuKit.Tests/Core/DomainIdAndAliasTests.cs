using IommuKit.Core;
using IommuKit.Drivers;
using IommuKit.Grouping;
using IommuKit.Paging;
using IommuKit.Pci;
using IommuKit.Simulation;
using IommuKit.Tests.Grouping;
using Xunit;
using static IommuKit.Tests.Core.CoreRig;

namespace IommuKit.Tests.Core;

/// <summary>Domain ids belong to a hardware unit and are reused; contexts cover every DMA alias; unmap flushes every unit.</summary>
public class DomainIdAndAliasTests
{
    private static (IommuCore Core, VtdDriver Drv, IommuHardware Hw, IommuDevice[] Devs) Boot(string cmdline, int domainIds, params string[] bdfs)
    {
        var topo = PciTopo([.. bdfs.Select(b => (b, 0x020000u, (ushort)0x8086, (ushort)0x10d3, false))]);
        var core = NewCore(cmdline);
        var hw = new IommuHardware(name: "dmar0", domainIds: domainIds);
        var drv = new VtdDriver([new VtdUnit("dmar0", [], IncludeAll: true)], f => IoPageTables.Create(f))
        {
            Hardware = new Dictionary<string, IommuHardware> { ["dmar0"] = hw },
        };
        var devs = topo.Devices.Select(p => IommuDevice.FromPci(p)).ToArray();
        CoreRig.Boot(core, drv, devs);
        return (core, drv, hw, devs);
    }

    [Fact]
    public void MoreThan65536AllocateAttachFreeCyclesKeepWorkingBecauseIdsAreReused()
    {
        var (core, drv, hw, devs) = Boot("iommu.passthrough=1", 1 << 16, "0000:00:02.0");
        var nic = devs[0];
        ushort rid = nic.Pci!.Address.RequesterId;
        var seen = new HashSet<int>();
        for (int i = 0; i < 70_000; i++)
        {
            Assert.True(core.AllocPagingDomain(nic, out var d).IsOk);
            var r = core.AttachGroup(d!, nic.Group!);
            Assert.True(r.IsOk, $"cycle {i}: {r}");
            seen.Add(hw.GetContext(rid)!.DomainId);
            core.DetachGroup(d!, nic.Group!);
            core.FreeDomain(d!);
        }
        Assert.Equal([1], seen); // the one id the unit had free, every time
        Assert.Equal(IommuContextKind.Identity, hw.GetContext(rid)!.Kind);

        // A brand-new core after all that still boots with translated default domains.
        var (_, drv2, hw2, devs2) = Boot("iommu.strict=1", 1 << 16, "0000:00:02.0", "0000:00:03.0");
        Assert.Equal(IommuContextKind.Translated, hw2.GetContext(devs2[1].Pci!.Address.RequesterId)!.Kind);
        Assert.Equal(2, drv2.DomainIdOn("dmar0", devs2[1].Group!.DefaultDomain!));
        _ = drv;
    }

    [Fact]
    public void AUnitWithNoFreeDomainIdRefusesTheAttachWithEnospcAndAFreedIdIsReused()
    {
        // 4 ids: 0 is reserved, so three translated domains fit on the unit at once.
        var (core, drv, hw, devs) = Boot("iommu.passthrough=1", 4, "0000:00:02.0", "0000:00:03.0", "0000:00:04.0", "0000:00:05.0");
        var doms = new IommuDomain[4];
        for (int i = 0; i < 3; i++)
        {
            Assert.True(core.AllocPagingDomain(devs[i], out var d).IsOk);
            doms[i] = d!;
            Assert.True(core.AttachGroup(d!, devs[i].Group!).IsOk);
            Assert.Equal(i + 1, drv.DomainIdOn("dmar0", d!));
        }
        Assert.True(core.AllocPagingDomain(devs[3], out var last).IsOk);
        var r = core.AttachGroup(last!, devs[3].Group!);
        Assert.Equal(Errno.ENOSPC, r.Errno);
        Assert.Contains("no free domain id", r.Reason);
        Assert.Equal(IommuContextKind.Identity, hw.GetContext(devs[3].Pci!.Address.RequesterId)!.Kind); // left as it was

        core.DetachGroup(doms[1], devs[1].Group!);
        core.FreeDomain(doms[1]);
        Assert.True(core.AttachGroup(last!, devs[3].Group!).IsOk);
        Assert.Equal(2, drv.DomainIdOn("dmar0", last!));
    }

    [Fact]
    public void AReusedDomainIdDoesNotHitTheIotlbEntriesOfTheDomainThatHadItBefore()
    {
        var (core, _, hw, devs) = Boot("iommu.passthrough=1", 1 << 16, "0000:00:02.0");
        var nic = devs[0];
        ushort rid = nic.Pci!.Address.RequesterId;
        Assert.True(core.AllocPagingDomain(nic, out var a).IsOk);
        Assert.Equal(Errno.Ok, a!.Map(0x1000, 0x8000_0000, 0x1000, IommuProt.Read));
        Assert.True(core.AttachGroup(a, nic.Group!).IsOk);
        Assert.Equal(0x8000_0000UL, hw.Translate(rid, 0x1000, write: false).Phys); // now cached under id 1
        core.DetachGroup(a, nic.Group!);
        core.FreeDomain(a);
        Assert.True(core.AllocPagingDomain(nic, out var b).IsOk);
        Assert.True(core.AttachGroup(b!, nic.Group!).IsOk);
        Assert.Equal(1, hw.GetContext(rid)!.DomainId);
        Assert.Equal(DmaFaultReason.NotPresent, hw.Translate(rid, 0x1000, write: false).Fault);
    }

    /// <summary>Root port 00:1c.0 → PCIe-to-PCI bridge 05:00.0 (secondary bus 6) → conventional 06:01.0 and 06:02.0.</summary>
    private static (IommuCore Core, VtdDriver Drv, IommuHardware Hw, Machine Machine) BootBehindBridge()
    {
        var machine = T.New().RootPort("00:1c.0", sec: 5, sub: 6, acs: T.AcsOn)
            .Dev("05:00.0", T.Qemu, 0x000e, PcieType.PciBridge, sec: 6)
            .Conventional("06:01.0").Conventional("06:02.0").Build();
        var cmd = KernelCommandLine.Parse("iommu.strict=1");
        var core = new IommuCore(KernelVersion.V6_12, cmd);
        var hw = new IommuHardware(name: "dmar0");
        var drv = new VtdDriver([new VtdUnit("dmar0", [], IncludeAll: true)], f => IoPageTables.Create(f),
            PciGroupResolvers.Kernel(GroupingContext.Create(machine, cmd, iommuActive: true)))
        {
            Hardware = new Dictionary<string, IommuHardware> { ["dmar0"] = hw },
        };
        CoreRig.Boot(core, drv, [.. machine.Topology.Devices.Select(p => IommuDevice.FromPci(p))]);
        return (core, drv, hw, machine);
    }

    [Fact]
    public void ADeviceBehindAPcieToPciBridgeDmasThroughItsDefaultDomainWithTheBridgeAlias()
    {
        var (core, drv, hw, _) = BootBehindBridge();
        var dev = core.FindDevice(PciAddress.Parse("0000:06:02.0"))!;
        ushort alias = new PciAddress(0, 0x06, 0, 0).RequesterId; // what 06:02.0's requests carry (spec 2.2)
        Assert.Equal([dev.Pci!.Address.RequesterId, alias], drv.RequesterIds(dev));
        var dom = dev.Group!.DefaultDomain!;
        Assert.Equal(Errno.Ok, dom.Map(0x10_0000, 0x20_0000, 0x1000, IommuProt.Read | IommuProt.Write));

        // docs/dma.md: the bus device is created with the requester ID the IOMMU sees, the bridge's alias.
        var memory = new PhysicalMemory(capBytes: 16UL << 20);
        var bus = new SimulatedBus(memory, hw);
        var legacy = bus.AddDevice("legacy", alias, address: dev.Pci.Address);
        Assert.Equal(DmaFaultReason.None, legacy.Write(0x10_0000, [1, 2, 3, 4]));
        Assert.Equal(0x0403_0201u, memory.ReadUInt32(0x20_0000));
    }

    [Fact]
    public void ASharedAliasContextStaysUntilTheLastDeviceUsingItIsRemoved()
    {
        var (core, _, hw, _) = BootBehindBridge();
        ushort alias = new PciAddress(0, 0x06, 0, 0).RequesterId;
        var first = core.FindDevice(PciAddress.Parse("0000:06:01.0"))!;
        var second = core.FindDevice(PciAddress.Parse("0000:06:02.0"))!;
        core.RemoveDevice(first);
        Assert.Null(hw.GetContext(first.Pci!.Address.RequesterId));
        Assert.Equal(IommuContextKind.Translated, hw.GetContext(alias)!.Kind); // 06:02.0 still uses it
        core.RemoveDevice(second);
        Assert.Null(hw.GetContext(alias));
    }

    [Fact]
    public void DomainUnmapInvalidatesTheIotlbOfEveryUnitTheDomainIsAttachedTo()
    {
        // Two devices of one group on two units (a group spanning units is unusual but legal for a custom resolver).
        var topo = PciTopo(("0000:00:02.0", 0x020000, 0x8086, 0x10d3, false), ("0000:00:03.0", 0x020000, 0x8086, 0x10d3, false));
        var core = NewCore("iommu.passthrough=1");
        var hw0 = new IommuHardware(name: "dmar0");
        var hw1 = new IommuHardware(name: "dmar1");
        var drv = new VtdDriver([new VtdUnit("dmar0", [topo.Devices[0].Address]), new VtdUnit("dmar1", [topo.Devices[1].Address])],
            f => IoPageTables.Create(f), PciGroupResolvers.Partition([[topo.Devices[0].Address, topo.Devices[1].Address]], topo))
        {
            Hardware = new Dictionary<string, IommuHardware> { ["dmar0"] = hw0, ["dmar1"] = hw1 },
        };
        var devs = topo.Devices.Select(p => IommuDevice.FromPci(p)).ToArray();
        CoreRig.Boot(core, drv, devs);
        Assert.True(core.GroupClaimDmaOwner(devs[0].Group!, new object()).IsOk);
        Assert.True(core.AllocPagingDomain(devs[0], out var d).IsOk);
        Assert.Equal(Errno.Ok, d!.Map(0x4000, 0x9000_0000, 0x1000, IommuProt.Read));
        Assert.True(core.AttachGroup(d, devs[0].Group!).IsOk);
        Assert.Equal(2, d.Iotlbs.Count);
        ushort r0 = devs[0].Pci!.Address.RequesterId, r1 = devs[1].Pci!.Address.RequesterId;
        Assert.True(hw0.Translate(r0, 0x4000, write: false).IsMemory); // both IOTLBs now cache it
        Assert.True(hw1.Translate(r1, 0x4000, write: false).IsMemory);

        Assert.Equal(Errno.Ok, d.Unmap(0x4000, 0x1000));
        Assert.Equal(DmaFaultReason.NotPresent, hw0.Translate(r0, 0x4000, write: false).Fault);
        Assert.Equal(DmaFaultReason.NotPresent, hw1.Translate(r1, 0x4000, write: false).Fault);
        Assert.Equal(Errno.ENOENT, d.Unmap(0x4000, 0x1000));
    }
}
