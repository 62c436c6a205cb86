using IommuKit.Core;
using Xunit;
using static IommuKit.Tests.Core.CoreRig;

namespace IommuKit.Tests.Core;

/// <summary>Writes to the sysfs <c>type</c> file under the 6.4+ rules (6.12) and the 5.11–6.3 rules (6.1).</summary>
public class TypeChangeTests
{
    private static (IommuCore Core, TestDriver Drv, IommuDevice[] Devs) Group(KernelVersion k, int devices, string cmdline = "", string? driver = null)
    {
        var core = NewCore(cmdline, kernel: k);
        var drv = new TestDriver();
        var devs = new IommuDevice[devices];
        for (int i = 0; i < devices; i++)
        {
            devs[i] = Dev($"d{i}");
            drv.GroupKey[devs[i].Name] = "g";
        }
        Boot(core, drv, devs);
        if (driver is not null) Assert.True(core.BindDriver(devs[0], driver).IsOk);
        return (core, drv, devs);
    }

    // ---- common

    [Theory]
    [InlineData("bogus")]
    [InlineData("blocked")]
    [InlineData("unmanaged")]
    [InlineData("dma")]
    [InlineData("DMA\n\n")]
    public void UnknownStringsAreEinvalOnBothGenerations(string value)
    {
        foreach (var k in new[] { KernelVersion.V6_1, KernelVersion.V6_12 })
        {
            var (core, _, d) = Group(k, 1);
            Assert.Equal(Errno.EINVAL, core.StoreType(d[0].Group!, value).Errno);
        }
    }

    [Fact]
    public void OneTrailingNewlineIsTolerated()
    {
        var (core, _, d) = Group(KernelVersion.V6_12, 1);
        Assert.True(core.StoreType(d[0].Group!, "identity\n").IsOk);
        Assert.Equal("identity", core.ReadType(d[0].Group!));
    }

    [Fact]
    public void WritingWithoutCapabilitiesOrBefore511IsEacces()
    {
        var (core, _, d) = Group(KernelVersion.V6_12, 1);
        Assert.Equal(Errno.EACCES, core.StoreType(d[0].Group!, "DMA", capable: false).Errno);
        var (old, _, d2) = Group(new KernelVersion(5, 10), 1);
        Assert.Equal(Errno.EACCES, old.StoreType(d2[0].Group!, "DMA").Errno);
    }

    // ---- 6.12

    [Fact]
    public void DmaToDmaFqUpgradesInPlaceWithADriverBoundOn612()
    {
        var (core, _, d) = Group(KernelVersion.V6_12, 2, "iommu.strict=1", driver: "e1000e");
        var g = d[0].Group!;
        var before = g.DefaultDomain;
        Assert.Equal("DMA", core.ReadType(g));
        Assert.True(core.StoreType(g, "DMA-FQ").IsOk);
        Assert.Same(before, g.DefaultDomain);
        Assert.Equal("DMA-FQ", core.ReadType(g));
        Assert.True(before!.FlushQueueReady);
    }

    [Theory]
    [InlineData("identity")]
    [InlineData("DMA")]
    [InlineData("DMA-FQ")]
    [InlineData("auto")]
    public void EveryOtherChangeWithADmaApiDriverBoundIsEpermOn612(string value)
    {
        var (core, _, d) = Group(KernelVersion.V6_12, 1, driver: "virtio-pci");
        var r = core.StoreType(d[0].Group!, value);
        Assert.Equal(Errno.EPERM, r.Errno);
        Assert.Contains("d0 (virtio-pci)", r.Reason);
        Assert.Equal("DMA-FQ", core.ReadType(d[0].Group!));
    }

    [Fact]
    public void UserOwnedGroupRefusesTypeChangesWithEpermOn612()
    {
        var (core, _, d) = Group(KernelVersion.V6_12, 1);
        core.GroupClaimDmaOwner(d[0].Group!, new object());
        Assert.Equal(Errno.EPERM, core.StoreType(d[0].Group!, "identity").Errno);
    }

    [Fact]
    public void DriverManagedDmaDriversDoNotBlockAChangeOn612()
    {
        var (core, _, d) = Group(KernelVersion.V6_12, 1, driver: "pcieport");
        Assert.True(core.StoreType(d[0].Group!, "identity").IsOk);
        Assert.Equal("identity", core.ReadType(d[0].Group!));
    }

    [Fact]
    public void MultiDeviceGroupChangesAsAWholeOn612()
    {
        var (core, drv, d) = Group(KernelVersion.V6_12, 3);
        var g = d[0].Group!;
        Assert.True(core.StoreType(g, "identity").IsOk);
        Assert.All(d, x => Assert.Same(drv.StaticIdentityDomain, x.AttachedDomain));
        Assert.True(core.StoreType(g, "DMA").IsOk);
        Assert.All(d, x => Assert.Same(g.DefaultDomain, x.AttachedDomain));
        Assert.Equal("DMA", core.ReadType(g));
    }

    [Fact]
    public void AutoReturnsToTheGlobalDefaultOrTheDevicesRequirementOn612()
    {
        var (core, drv, d) = Group(KernelVersion.V6_12, 1);
        var g = d[0].Group!;
        core.StoreType(g, "DMA");
        Assert.True(core.StoreType(g, "auto").IsOk);
        Assert.Equal("DMA-FQ", core.ReadType(g));
        drv.Requires["d0"] = IommuDomainType.Identity;
        Assert.True(core.StoreType(g, "auto").IsOk);
        Assert.Equal("identity", core.ReadType(g));
    }

    [Fact]
    public void SameTypeAgainIsASuccessfulNoOp()
    {
        var (core, _, d) = Group(KernelVersion.V6_12, 1);
        var before = d[0].Group!.DefaultDomain;
        Assert.True(core.StoreType(d[0].Group!, "DMA-FQ").IsOk);
        Assert.Same(before, d[0].Group!.DefaultDomain);
    }

    [Fact]
    public void TypeContradictingADeviceRequirementIsEinvalOn612()
    {
        var (core, drv, d) = Group(KernelVersion.V6_12, 2);
        drv.Requires["d1"] = IommuDomainType.Dma;
        var r = core.StoreType(d[0].Group!, "identity");
        Assert.Equal(Errno.EINVAL, r.Errno);
        Assert.Equal("DMA-FQ", core.ReadType(d[0].Group!));
    }

    [Fact]
    public void UntrustedGroupUpgradesToDmaFqThroughTheShortcutButRefusesIdentityOn612()
    {
        var core = NewCore();
        var drv = new TestDriver();
        var topo = PciTopo(("0000:05:00.0", 0x020000, 0x8086, 0x10d3, true));
        var dev = IommuDevice.FromPci(topo.Devices[0]);
        Boot(core, drv, dev);
        var g = dev.Group!;
        Assert.Equal("DMA", core.ReadType(g));
        Assert.Equal(Errno.EINVAL, core.StoreType(g, "identity").Errno);
        Assert.True(core.StoreType(g, "DMA-FQ").IsOk); // the kernel's shortcut runs before any per-device check
        Assert.Equal("DMA-FQ", core.ReadType(g));
    }

    [Fact]
    public void IdentityWithoutIdentitySupportIsEopnotsuppOn612()
    {
        var core = NewCore();
        var drv = new TestDriver(staticIdentity: false);
        var a = Dev("a");
        Boot(core, drv, a);
        Assert.Equal(Errno.EOPNOTSUPP, core.StoreType(a.Group!, "identity").Errno);
        Assert.Equal("DMA-FQ", core.ReadType(a.Group!));
    }

    [Fact]
    public void AttachFailureDuringATypeChangeRollsBackEveryDeviceOn612()
    {
        var (core, drv, d) = Group(KernelVersion.V6_12, 3);
        var g = d[0].Group!;
        var old = g.DefaultDomain;
        drv.AttachFault = (dev, dom) => dev.Name == "d2" && dom.Type == IommuDomainType.Identity ? Errno.ENOMEM : Errno.Ok;
        Assert.Equal(Errno.ENOMEM, core.StoreType(g, "identity").Errno);
        Assert.Same(old, g.DefaultDomain);
        Assert.Same(old, g.Domain);
        Assert.All(d, x => Assert.Same(old, x.AttachedDomain));
        Assert.Equal("DMA-FQ", core.ReadType(g));
        Assert.Empty(core.CheckInvariants());
    }

    [Fact]
    public void AllocationFailureDuringATypeChangeKeepsTheOldDomainOn612()
    {
        var (core, drv, d) = Group(KernelVersion.V6_12, 1);
        var old = d[0].Group!.DefaultDomain;
        drv.AllocFault = (_, t) => t == IommuDomainType.Dma ? Errno.ENOMEM : Errno.Ok;
        Assert.Equal(Errno.ENOMEM, core.StoreType(d[0].Group!, "DMA").Errno);
        Assert.Same(old, d[0].Group!.DefaultDomain);
        Assert.False(old!.Freed);
    }

    [Fact]
    public void DirectMappingThatFailsEvenAfterAttachRollsTheTypeChangeBackOn612()
    {
        // iommu_setup_default_domain step 8 (spec 5.3): the retry after attach fails, so the old domain is put back,
        // the new one freed and the old default restored. The region lies above the 48-bit page table, so no map works.
        var core = NewCore("iommu.passthrough=1");
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = "g";
        drv.Regions["b"] = [Region(1UL << 48, (1UL << 48) + 0xfff, ReservedRegionType.DirectRelaxable)];
        var devs = new[] { Dev("a"), Dev("b") };
        Boot(core, drv, devs);
        var g = devs[0].Group!;
        var identity = g.DefaultDomain;
        IommuDomain? attempted = null;
        drv.AttachFault = (_, dom) => { if (dom.Type == IommuDomainType.Dma) attempted = dom; return Errno.Ok; };
        var r = core.StoreType(g, "DMA");
        Assert.False(r.IsOk);
        Assert.NotNull(attempted);
        Assert.True(attempted!.Freed);
        Assert.Same(identity, g.DefaultDomain);
        Assert.Same(identity, g.Domain);
        Assert.All(devs, d => Assert.Same(identity, d.AttachedDomain));
        Assert.All(devs, d => Assert.Same(identity, drv.Contexts[d]));
        Assert.Equal("identity", core.ReadType(g));
        Assert.Contains("iommu: IOMMU driver was not able to establish FW requested direct mapping.", core.Log);
        Assert.Empty(core.CheckInvariants());
    }

    [Fact]
    public void FlushQueueAllocationFailureIsEnomemAndLeavesDma()
    {
        var (core, _, d) = Group(KernelVersion.V6_12, 1, "iommu.strict=1");
        core.FlushQueueInitFault = _ => true;
        Assert.Equal(Errno.ENOMEM, core.StoreType(d[0].Group!, "DMA-FQ").Errno);
        Assert.Equal("DMA", core.ReadType(d[0].Group!));
        Assert.Contains("iommu: iova flush queue initialization failed", core.Log);
    }

    [Fact]
    public void DirectMappingsAreRecreatedInTheNewDefaultDomain()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.Regions["a"] = [Region(0x7000_0000, 0x7000_0fff, ReservedRegionType.DirectRelaxable)];
        var a = Dev("a");
        Boot(core, drv, a);
        Assert.True(core.StoreType(a.Group!, "identity").IsOk);
        Assert.True(core.StoreType(a.Group!, "DMA").IsOk);
        Assert.True(a.Group!.DefaultDomain!.TryIovaToPhys(0x7000_0000, out _));
        Assert.Empty(core.CheckInvariants());
    }

    [Fact]
    public void DmaFqIsNotAWritableTypeBefore515()
    {
        // iommu_group_store_type in 5.11-5.14 knows identity, DMA and auto; "DMA-FQ" came with the DMA_FQ type in 5.15.
        var (core, _, d) = Group(new KernelVersion(5, 14), 1);
        Assert.Equal("DMA", core.ReadType(d[0].Group!)); // lazy, but there is no DMA_FQ type yet
        Assert.Equal(Errno.EINVAL, core.StoreType(d[0].Group!, "DMA-FQ").Errno);
        Assert.Equal("DMA", core.ReadType(d[0].Group!));
        Assert.True(core.StoreType(d[0].Group!, "identity").IsOk);
        var (core15, _, d15) = Group(new KernelVersion(5, 15), 1, "iommu.strict=1");
        Assert.True(core15.StoreType(d15[0].Group!, "DMA-FQ").IsOk);
        Assert.Equal("DMA-FQ", core15.ReadType(d15[0].Group!));
    }

    // ---- 6.1 (5.11–6.3 rules)

    [Theory]
    [InlineData("identity")]
    [InlineData("DMA")]
    [InlineData("DMA-FQ")]
    [InlineData("auto")]
    public void MultiDeviceGroupIsEinvalOn61(string value)
    {
        var (core, _, d) = Group(KernelVersion.V6_1, 2);
        Assert.Equal(Errno.EINVAL, core.StoreType(d[0].Group!, value).Errno);
        Assert.Contains("iommu: Cannot change default domain: Group has more than one device", core.Log);
    }

    [Theory]
    [InlineData("pcieport")]
    [InlineData("pci-stub")]
    [InlineData("e1000e")]
    public void AnyBoundDriverMakesAChangeEbusyOn61(string driver)
    {
        var (core, _, d) = Group(KernelVersion.V6_1, 1, driver: driver);
        foreach (var v in new[] { "identity", "DMA", "DMA-FQ", "auto" })
            Assert.Equal(Errno.EBUSY, core.StoreType(d[0].Group!, v).Errno);
    }

    [Fact]
    public void DmaToDmaFqIsAllowedWithADriverBoundOn61()
    {
        var (core, _, d) = Group(KernelVersion.V6_1, 1, "iommu.strict=1", driver: "e1000e");
        Assert.True(core.StoreType(d[0].Group!, "DMA-FQ").IsOk);
        Assert.Equal("DMA-FQ", core.ReadType(d[0].Group!));
    }

    [Fact]
    public void GroupNotOnItsDefaultDomainIsEbusyOn61()
    {
        var (core, _, d) = Group(KernelVersion.V6_1, 1);
        core.AllocPagingDomain(d[0], out var user);
        Assert.True(core.AttachDevice(user!, d[0]).IsOk);
        Assert.Equal(Errno.EBUSY, core.StoreType(d[0].Group!, "identity").Errno);
    }

    [Fact]
    public void UntrustedDeviceCannotBeDmaFqOn61()
    {
        var core = NewCore(kernel: KernelVersion.V6_1);
        var drv = new TestDriver();
        var dev = IommuDevice.FromPci(PciTopo(("0000:05:00.0", 0x020000, 0x8086, 0x10d3, true)).Devices[0]);
        Boot(core, drv, dev);
        Assert.Equal("DMA", core.ReadType(dev.Group!));
        Assert.Equal(Errno.EINVAL, core.StoreType(dev.Group!, "DMA-FQ").Errno);
        Assert.Contains("0000:05:00.0: Device cannot be in Translated domain", core.Log);
    }

    [Fact]
    public void AutoReturnsToTheBootDefaultOn61()
    {
        var (core, _, d) = Group(KernelVersion.V6_1, 1, "iommu.passthrough=1");
        var g = d[0].Group!;
        Assert.True(core.StoreType(g, "DMA").IsOk);
        Assert.True(core.StoreType(g, "auto").IsOk);
        Assert.Equal("identity", core.ReadType(g));
    }

    [Fact]
    public void AttachFailureDuringATypeChangeKeepsTheOldDomainOn61()
    {
        var (core, drv, d) = Group(KernelVersion.V6_1, 1);
        var g = d[0].Group!;
        var old = g.DefaultDomain;
        drv.AttachFault = (_, dom) => dom.Type == IommuDomainType.Identity ? Errno.ENOSPC : Errno.Ok;
        Assert.Equal(Errno.ENOSPC, core.StoreType(g, "identity").Errno);
        Assert.Same(old, g.DefaultDomain);
        Assert.Same(old, d[0].AttachedDomain);
        Assert.Equal("DMA-FQ", core.ReadType(g));
    }

    [Fact]
    public void AllocationFailureFallsBackToDmaOn61()
    {
        var (core, drv, d) = Group(KernelVersion.V6_1, 1, "iommu=pt");
        drv.AllocFault = (_, t) => t == IommuDomainType.DmaFq ? Errno.ENOMEM : Errno.Ok;
        Assert.True(core.StoreType(d[0].Group!, "DMA-FQ").IsOk);
        Assert.Equal("DMA", core.ReadType(d[0].Group!));
        Assert.Contains(core.Log, l => l.Contains("Falling back to IOMMU_DOMAIN_DMA", StringComparison.Ordinal));
    }
}
