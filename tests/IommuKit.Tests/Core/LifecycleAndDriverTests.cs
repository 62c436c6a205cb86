using IommuKit.Core;
using IommuKit.Drivers;
using IommuKit.Paging;
using IommuKit.Pci;
using Xunit;
using static IommuKit.Tests.Core.CoreRig;

namespace IommuKit.Tests.Core;

public class LifecycleTests
{
    [Fact]
    public void SeveralFreedIdsAreReusedLowestFirst()
    {
        // ida_alloc hands out the lowest free id (spec 1.1), whatever order the groups were released in.
        var core = NewCore();
        var devs = Enumerable.Range(0, 5).Select(i => Dev($"d{i}")).ToArray();
        Boot(core, new TestDriver(), devs);
        core.RemoveDevice(devs[3]);
        core.RemoveDevice(devs[1]);
        var ids = new List<int>();
        for (int i = 0; i < 3; i++)
        {
            var n = Dev($"n{i}");
            Assert.True(core.HotplugAdd(n).IsOk);
            ids.Add(n.Group!.Id);
        }
        Assert.Equal([1, 3, 5], ids);
    }

    [Fact]
    public void AGroupCanBeAllocatedUnderAGivenIdAndTheLowestFreeIdsStayFree()
    {
        // ida_alloc_range(id, id): a replay of a recorded machine numbers its groups as the kernel did.
        var core = NewCore();
        var drv = new TestDriver();
        drv.WantId["a"] = 5;
        drv.WantId["c"] = 5;                           // taken by a: falls back to the lowest free id
        drv.WantId["d"] = IommuCore.MaxGroupId;        // beyond the range: falls back too
        var (a, b, c, d) = (Dev("a"), Dev("b"), Dev("c"), Dev("d"));
        Boot(core, drv, a, b, c, d);
        Assert.Equal([5, 0, 1, 2], new[] { a, b, c, d }.Select(x => x.Group!.Id));
        var e = Dev("e");
        Assert.True(core.HotplugAdd(e).IsOk);
        Assert.Equal(3, e.Group!.Id);
        core.RemoveDevice(a);
        drv.WantId["f"] = 5;
        var f = Dev("f");
        Assert.True(core.HotplugAdd(f).IsOk);
        Assert.Equal(5, f.Group!.Id);
        var g = Dev("g");
        Assert.True(core.HotplugAdd(g).IsOk);
        Assert.Equal(4, g.Group!.Id);
    }

    [Fact]
    public void GroupIdsAreTheLowestFreeAndReusedAfterRemoval()
    {
        var core = NewCore();
        var drv = new TestDriver();
        var a = Dev("a");
        var b = Dev("b");
        var c = Dev("c");
        Boot(core, drv, a, b, c);
        Assert.Equal([0, 1, 2], new[] { a, b, c }.Select(d => d.Group!.Id));
        var domainOfB = b.Group!.DefaultDomain!;
        core.RemoveDevice(b);
        Assert.Null(b.Group);
        Assert.Null(core.FindGroup(1));
        Assert.True(domainOfB.Freed);
        var d2 = Dev("d");
        Assert.True(core.HotplugAdd(d2).IsOk);
        Assert.Equal(1, d2.Group!.Id);
        var e = Dev("e");
        Assert.True(core.HotplugAdd(e).IsOk);
        Assert.Equal(3, e.Group!.Id);
    }

    [Fact]
    public void RemovingABoundDeviceUnbindsItFirstAndKeepsOwnerCountsRight()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = "g";
        var a = Dev("a");
        var b = Dev("b");
        Boot(core, drv, a, b);
        core.BindDriver(a, "e1000e");
        core.BindDriver(b, "e1000e");
        var g = a.Group!;
        core.RemoveDevice(b);
        Assert.Equal(1u, g.OwnerCount);
        Assert.Single(g.Devices);
        Assert.Empty(core.CheckInvariants());
    }

    [Fact]
    public void FailedFirstAttachOfAHotpluggedDeviceRemovesItFromTheGroup()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["late"] = "g";
        var a = Dev("a");
        Boot(core, drv, a);
        var late = Dev("late");
        drv.AttachFault = (d, _) => d == late ? Errno.ENOSPC : Errno.Ok;
        Assert.Equal(Errno.ENOSPC, core.HotplugAdd(late).Errno);
        Assert.Null(late.Group);
        Assert.Single(a.Group!.Devices);
        Assert.Contains("late: Failed to add to iommu group 0: -28", core.Log);
    }

    [Fact]
    public void HotpluggedDeviceWithADirectRegionCannotJoinAUserOwnedGroup()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["late"] = "g";
        drv.Regions["late"] = [Region(0x7000_0000, 0x7000_0fff, ReservedRegionType.Direct)];
        var a = Dev("a");
        Boot(core, drv, a);
        Assert.True(core.GroupClaimDmaOwner(a.Group!, new object()).IsOk);
        var late = Dev("late");
        Assert.Equal(Errno.EINVAL, core.HotplugAdd(late).Errno);
        Assert.Null(late.Group);
    }

    [Fact]
    public void LateProbeOfABoundDeviceIsLogged()
    {
        var core = NewCore();
        var drv = new TestDriver();
        Boot(core, drv, Dev("a"));
        var x = Dev("x");
        core.AddDevice(x);
        core.BindDriver(x, "e1000e");
        Assert.True(core.ProbeDevice(x).IsOk);
        Assert.Contains("x: late IOMMU probe at driver bind, something fishy here!", core.Log);
    }

    [Fact]
    public void UnregisteringTheDriverReleasesEveryDeviceAndGroup()
    {
        var core = NewCore();
        var drv = new TestDriver();
        var a = Dev("a");
        Boot(core, drv, a, Dev("b"));
        core.UnregisterDriver(drv);
        Assert.Null(a.Group);
        Assert.Empty(core.Groups);
    }
}

public class ReferenceDriverTests
{
    private static IIoPageTable Table(IoPageTableFormat f) => IoPageTables.Create(f);

    [Fact]
    public void PowerGroupsArePartitionableEndpointsNamedAfterDomainAndPe()
    {
        var topo = PciTopo(
            ("0000:00:00.0", 0x060400, 0x1014, 0x04c1, false),
            ("0000:01:00.0", 0x020000, 0x8086, 0x10d3, false),
            ("0000:01:00.1", 0x020000, 0x8086, 0x10d3, false),
            ("0002:00:00.0", 0x060400, 0x1014, 0x04c1, false),
            ("0002:01:00.0", 0x010802, 0x144d, 0xa808, false));
        var core = NewCore();
        var drv = new PowerPeDriver();
        var devs = topo.Devices.Select(p => IommuDevice.FromPci(p)).ToArray();
        Boot(core, drv, devs);
        var byName = devs.ToDictionary(d => d.Name);
        var pe = byName["0000:01:00.0"].Group!;
        Assert.Equal("domain0-pe1", pe.Name);
        Assert.Same(pe, byName["0000:01:00.1"].Group);
        Assert.Equal("domain2-pe1", byName["0002:01:00.0"].Group!.Name);
        Assert.NotSame(pe, byName["0000:00:00.0"].Group);
        Assert.Equal("unknown", core.ReadType(pe)); // the platform's own TCE domain
        Assert.Empty(core.ReadReservedRegions(pe));
        // The PE holds its group: removing every device keeps the group and its number.
        core.RemoveDevice(byName["0000:01:00.0"]);
        core.RemoveDevice(byName["0000:01:00.1"]);
        Assert.Same(pe, core.FindGroup(pe.Id));
        Assert.True(core.GroupClaimDmaOwner(byName["0002:01:00.0"].Group!, new object()).IsOk);
        Assert.Same(drv.StaticBlockedDomain, byName["0002:01:00.0"].Group!.Domain);
    }

    [Fact]
    public void PlatformDevicesSharingAStreamIdShareAGroup()
    {
        var core = NewCore();
        var smmu = new SmmuDriver("smmu0", Table);
        var usb = new IommuDevice("ee000000.usb", IommuBusKind.Platform, instance: "smmu0", streamIds: [0x10, 0x11]);
        var dma = new IommuDevice("ee100000.dma", IommuBusKind.Platform, instance: "smmu0", streamIds: [0x11]);
        var eth = new IommuDevice("ee200000.eth", IommuBusKind.Platform, instance: "smmu0", streamIds: [0x20]);
        Boot(core, smmu, usb, dma, eth);
        Assert.Same(usb.Group, dma.Group);
        Assert.NotSame(usb.Group, eth.Group);
        Assert.Equal(["0x0000000008000000 0x00000000080fffff msi"], core.ReadReservedRegions(eth.Group!));
        Assert.Equal(IoPageTableFormat.ArmLpae4K, usb.Group!.DefaultDomain!.PageTable!.Format);
    }

    [Fact]
    public void PlatformDeviceWhoseStreamIdsSpanTwoGroupsIsRefused()
    {
        var core = NewCore();
        var smmu = new SmmuDriver(null, Table);
        var a = new IommuDevice("a", IommuBusKind.Platform, streamIds: [1]);
        var b = new IommuDevice("b", IommuBusKind.Platform, streamIds: [2]);
        Boot(core, smmu, a, b);
        var bridge = new IommuDevice("c", IommuBusKind.Platform, streamIds: [1, 2]);
        Assert.Equal(Errno.EINVAL, core.HotplugAdd(bridge).Errno);
    }

    [Fact]
    public void StreamIdForgetsItsGroupWhenTheLastUserGoes()
    {
        var core = NewCore();
        var smmu = new SmmuDriver(null, Table);
        var a = new IommuDevice("a", IommuBusKind.Platform, streamIds: [1]);
        Boot(core, smmu, a);
        int id = a.Group!.Id;
        core.RemoveDevice(a);
        var again = new IommuDevice("a2", IommuBusKind.Platform, streamIds: [1]);
        Assert.True(core.HotplugAdd(again).IsOk);
        Assert.Equal(id, again.Group!.Id); // a new group that reused the freed number
    }

    private static (IommuCore, VtdDriver, Dictionary<string, IommuDevice>) Vtd(PciTopology topo, KernelVersion? k = null, string cmdline = "",
        VtdUnit? unit = null, IReadOnlyList<VtdRmrr>? rmrrs = null, bool azalia = false)
    {
        var core = NewCore(cmdline, kernel: k);
        var drv = new VtdDriver([unit ?? new VtdUnit("dmar0", [], IncludeAll: true)], Table, null, rmrrs, azalia);
        var devs = topo.Devices.Select(p => IommuDevice.FromPci(p)).ToArray();
        Boot(core, drv, devs);
        return (core, drv, devs.ToDictionary(d => d.Name));
    }

    [Fact]
    public void RegisteringTheSameDriverTwiceIsEbusyAndDoesNotReinitialiseIt()
    {
        var (core, drv, d) = Vtd(PciTopo(("0000:00:02.0", 0x020000, 0x8086, 0x10d3, false)));
        var nic = d["0000:00:02.0"];
        var blocked = drv.StaticBlockedDomain;
        Assert.NotNull(blocked); // 6.12: a static blocked domain made in Init
        Assert.True(core.GroupClaimDmaOwner(nic.Group!, new object()).IsOk);
        Assert.Equal(Errno.EBUSY, core.RegisterDriver(drv).Errno);
        Assert.Same(blocked, drv.StaticBlockedDomain);
        Assert.Same(blocked, nic.Group!.Domain);
        core.GroupReleaseDmaOwner(nic.Group!);
        Assert.Same(nic.Group!.DefaultDomain, nic.Group!.Domain);
    }

    [Fact]
    public void VtdGivesTheIsaBridgeTheFloppyRangeAndEveryoneTheMsiWindow()
    {
        var (core, _, d) = Vtd(PciTopo(("0000:00:1f.0", 0x060100, 0x8086, 0x2918, false), ("0000:00:02.0", 0x020000, 0x8086, 0x10d3, false)));
        Assert.Equal(["0x0000000000000000 0x0000000000ffffff direct-relaxable", "0x00000000fee00000 0x00000000feefffff msi"], core.ReadReservedRegions(d["0000:00:1f.0"].Group!));
        Assert.Equal(["0x00000000fee00000 0x00000000feefffff msi"], core.ReadReservedRegions(d["0000:00:02.0"].Group!));
        Assert.True(d["0000:00:1f.0"].Group!.DefaultDomain!.TryIovaToPhys(0x10_0000, out _));
    }

    [Fact]
    public void VtdRmrrIsDirectForANicAndRelaxableForUsbAndGraphics()
    {
        var rmrr = new VtdRmrr(0x7a00_0000, 0x7a0f_ffff, [PciAddress.Parse("0000:00:14.0"), PciAddress.Parse("0000:00:19.0"), PciAddress.Parse("0000:00:02.0")]);
        var (core, _, d) = Vtd(PciTopo(("0000:00:14.0", 0x0c0330, 0x8086, 0xa36d, false), ("0000:00:19.0", 0x020000, 0x8086, 0x15b8, false), ("0000:00:02.0", 0x030000, 0x8086, 0x3e92, false)), rmrrs: [rmrr]);
        Assert.Contains("0x000000007a000000 0x000000007a0fffff direct-relaxable", core.ReadReservedRegions(d["0000:00:14.0"].Group!));
        Assert.Contains("0x000000007a000000 0x000000007a0fffff direct-relaxable", core.ReadReservedRegions(d["0000:00:02.0"].Group!));
        Assert.Contains("0x000000007a000000 0x000000007a0fffff direct", core.ReadReservedRegions(d["0000:00:19.0"].Group!));
        Assert.True(d["0000:00:19.0"].RequireDirect);
        Assert.Equal(Errno.EINVAL, core.GroupClaimDmaOwner(d["0000:00:19.0"].Group!, new object()).Errno);
        Assert.True(core.GroupClaimDmaOwner(d["0000:00:14.0"].Group!, new object()).IsOk);
    }

    [Fact]
    public void VtdRefusesARmrrLockedDeviceAUserDomainWithEpermBefore64()
    {
        var rmrr = new VtdRmrr(0x7a00_0000, 0x7a0f_ffff, [PciAddress.Parse("0000:00:19.0")]);
        var (core, _, d) = Vtd(PciTopo(("0000:00:19.0", 0x020000, 0x8086, 0x15b8, false)), k: KernelVersion.V6_1, rmrrs: [rmrr]);
        var r = core.GroupClaimDmaOwner(d["0000:00:19.0"].Group!, new object());
        Assert.Equal(Errno.EPERM, r.Errno);
        Assert.Contains(core.Log, l => l.Contains("Device is ineligible for IOMMU domain attach due to platform RMRR requirement.", StringComparison.Ordinal));
    }

    [Fact]
    public void VtdHdAudioNeedsIdentityOnlyWithTheAzaliaQuirk()
    {
        var topo = PciTopo(("0000:00:1b.0", 0x040300, 0x8086, 0x3a3e, false));
        var (core, _, d) = Vtd(topo, azalia: true);
        Assert.Equal("identity", core.ReadType(d["0000:00:1b.0"].Group!));
        var (core2, _, d2) = Vtd(topo, azalia: false);
        Assert.Equal("DMA-FQ", core2.ReadType(d2["0000:00:1b.0"].Group!));
    }

    [Fact]
    public void VtdWithoutPassThroughKeepsEveryGroupTranslatedEvenWithIommuPt()
    {
        var (core, _, d) = Vtd(PciTopo(("0000:00:02.0", 0x020000, 0x8086, 0x10d3, false)), cmdline: "iommu=pt",
            unit: new VtdUnit("dmar0", [], IncludeAll: true, PassThrough: false));
        var g = d["0000:00:02.0"].Group!;
        Assert.Equal("DMA", core.ReadType(g));
        Assert.Equal(Errno.EINVAL, core.StoreType(g, "identity").Errno);
    }

    [Fact]
    public void VtdCachingModeForcesStrict()
    {
        var (core, _, d) = Vtd(PciTopo(("0000:00:02.0", 0x020000, 0x8086, 0x10d3, false)), unit: new VtdUnit("dmar0", [], IncludeAll: true, CachingMode: true));
        Assert.Equal("DMA", core.ReadType(d["0000:00:02.0"].Group!));
    }

    [Fact]
    public void VtdDomainWidthSettlesOnFirstAttachAndANarrowerUnitIsRefused()
    {
        var topo = PciTopo(("0000:00:02.0", 0x020000, 0x8086, 0x10d3, false), ("0000:00:03.0", 0x020000, 0x8086, 0x10d3, false));
        var core = NewCore();
        var drv = new VtdDriver([new VtdUnit("dmar0", [PciAddress.Parse("0000:00:02.0")], FiveLevel: true), new VtdUnit("dmar1", [PciAddress.Parse("0000:00:03.0")])],
            f => IoPageTables.Create(IoPageTableFormat.X86_64Level5));
        var a = IommuDevice.FromPci(topo.Devices[0]);
        var b = IommuDevice.FromPci(topo.Devices[1]);
        Boot(core, drv, a, b);
        Assert.True(core.AllocPagingDomain(a, out var dom).IsOk);
        Assert.Null(drv.SettledWidth(dom!));
        Assert.True(core.AttachDevice(dom!, a).IsOk);
        Assert.Equal(57, drv.SettledWidth(dom!));
        core.DetachDevice(dom!, a);
        Assert.Equal(Errno.EINVAL, core.AttachDevice(dom!, b).Errno); // dmar1 is 48-bit
        Assert.Equal(48, drv.SettledWidth(b.Group!.DefaultDomain!));
    }

    [Fact]
    public void VirtioIommuFunctionItselfGetsNoGroupAndEndpointsGetOnlyTheMsiRegion()
    {
        var topo = PciTopo(("0000:00:1d.0", 0x00ff00, 0x1af4, 0x1057, false), ("0000:00:1f.0", 0x060100, 0x8086, 0x2918, false));
        var core = NewCore();
        var drv = new VirtioIommuDriver(PciAddress.Parse("0000:00:1d.0"), Table);
        var devs = topo.Devices.Select(p => IommuDevice.FromPci(p)).ToArray();
        Boot(core, drv, devs);
        Assert.Null(devs[0].Group);
        Assert.Equal(["0x00000000fee00000 0x00000000feefffff msi"], core.ReadReservedRegions(devs[1].Group!));
    }

    [Fact]
    public void VirtioIommuWithoutAnMsiBypassRegionAddsTheSoftwareMsiWindow()
    {
        var topo = PciTopo(("0000:00:1d.0", 0x00ff00, 0x1af4, 0x1057, false), ("0000:00:02.0", 0x020000, 0x8086, 0x10d3, false));
        var core = NewCore();
        var drv = new VirtioIommuDriver(PciAddress.Parse("0000:00:1d.0"), Table, probeRegions: []);
        var devs = topo.Devices.Select(p => IommuDevice.FromPci(p)).ToArray();
        Boot(core, drv, devs);
        var nic = devs.Single(d => d.Name == "0000:00:02.0");
        Assert.Null(devs.Single(d => d.Name == "0000:00:1d.0").Group);
        Assert.Equal(["0x0000000008000000 0x00000000080fffff msi"], core.ReadReservedRegions(nic.Group!));
        Assert.Empty(core.IovaReservedRegions(nic)); // SW_MSI is not reserved in the IOVA space
    }

    [Fact]
    public void KernelVersionParsesDebianReleases()
    {
        Assert.True(KernelVersion.TryParse("6.1.0-56-amd64", out var a));
        Assert.Equal(KernelVersion.V6_1, a);
        Assert.True(KernelVersion.TryParse("6.12.95+deb12-amd64", out var b));
        Assert.Equal(KernelVersion.V6_12, b);
        Assert.False(KernelVersion.TryParse("linux", out _));
        Assert.Equal(TypeWriteRules.SingleDevice, a.TypeWrites);
        Assert.Equal(TypeWriteRules.OwnerCount, b.TypeWrites);
        Assert.Equal(TypeWriteRules.ReadOnly, new KernelVersion(5, 10).TypeWrites);
    }
}
