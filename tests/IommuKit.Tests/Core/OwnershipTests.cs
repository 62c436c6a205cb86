using IommuKit.Core;
using Xunit;
using static IommuKit.Tests.Core.CoreRig;

namespace IommuKit.Tests.Core;

public class OwnershipTests
{
    private static (IommuCore Core, TestDriver Drv, IommuDevice A, IommuDevice B) Pair(KernelVersion? k = null)
    {
        var core = NewCore(kernel: k);
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = "g";
        var a = Dev("a");
        var b = Dev("b");
        Boot(core, drv, a, b);
        return (core, drv, a, b);
    }

    [Fact]
    public void DmaApiDriversCountAsOwnersAndDriverManagedDmaDriversDoNot()
    {
        var (core, _, a, b) = Pair();
        Assert.True(core.BindDriver(a, "e1000e").IsOk);
        Assert.True(core.BindDriver(b, "vfio-pci").IsOk);
        Assert.Equal(1u, a.Group!.OwnerCount);
        Assert.True(core.DmaOwnerClaimed(a.Group));
        core.UnbindDriver(a);
        Assert.Equal(0u, a.Group.OwnerCount);
        Assert.Empty(core.CheckInvariants());
    }

    [Fact]
    public void GroupClaimWhileAKernelDriverIsBoundIsEpermNamingTheDevice()
    {
        var (core, _, a, b) = Pair();
        core.BindDriver(b, "e1000e");
        core.BindDriver(a, "vfio-pci");
        var r = core.GroupClaimDmaOwner(a.Group!, new object());
        Assert.Equal(Errno.EPERM, r.Errno);
        Assert.Contains("b (e1000e)", r.Reason);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ClaimWhoseBlockingAttachFailsHalfWayLeavesTheGroupUnownedOnItsDefault(bool groupClaim)
    {
        // take ownership = set_group_domain(blocking) then owner/owner_cnt (spec 7): a failed switch rolls every device
        // back (spec 4.3 err_revert) and the owner is never recorded.
        var (core, drv, a, b) = Pair();
        var g = a.Group!;
        var def = g.Domain;
        drv.AttachFault = (d, dom) => d == b && dom != def ? Errno.ENOSPC : Errno.Ok;
        var r = groupClaim ? core.GroupClaimDmaOwner(g, new object()) : core.DeviceClaimDmaOwner(a, new object());
        Assert.Equal(Errno.ENOSPC, r.Errno);
        Assert.Same(def, g.Domain);
        Assert.All(new[] { a, b }, d => Assert.Same(def, d.AttachedDomain));
        Assert.All(new[] { a, b }, d => Assert.Same(def, drv.Contexts[d]));
        Assert.Null(g.Owner);
        Assert.Equal(0u, g.OwnerCount);
        Assert.Empty(core.CheckInvariants());
        drv.AttachFault = null;
        Assert.True(core.GroupClaimDmaOwner(g, new object()).IsOk);
    }

    [Fact]
    public void ClaimWhoseBlockingDomainCannotBeAllocatedChangesNothing()
    {
        // No static blocked domain: the core allocates an empty paging domain; its failure propagates (spec 4.2, 7).
        var (core, drv, a, _) = Pair();
        var g = a.Group!;
        var def = g.Domain;
        drv.AllocFault = (_, t) => t == IommuDomainType.Unmanaged ? Errno.ENOMEM : Errno.Ok;
        Assert.Equal(Errno.ENOMEM, core.GroupClaimDmaOwner(g, new object()).Errno);
        Assert.Same(def, g.Domain);
        Assert.Null(g.BlockingDomain);
        Assert.Null(g.Owner);
        Assert.Equal(0u, g.OwnerCount);
        Assert.Empty(core.CheckInvariants());
    }

    [Fact]
    public void ClaimPutsTheGroupInTheBlockingDomainAndReleaseRestoresTheDefault()
    {
        var (core, _, a, b) = Pair();
        var g = a.Group!;
        var cookie = new object();
        Assert.True(core.GroupClaimDmaOwner(g, cookie).IsOk);
        Assert.Same(g.BlockingDomain, g.Domain);
        Assert.Same(cookie, g.Owner);
        Assert.Equal(1u, g.OwnerCount);
        Assert.All(new[] { a, b }, d => Assert.Same(g.BlockingDomain, d.AttachedDomain));
        core.GroupReleaseDmaOwner(g);
        Assert.Same(g.DefaultDomain, g.Domain);
        Assert.Null(g.Owner);
        Assert.Equal(0u, g.OwnerCount);
    }

    [Fact]
    public void StaticBlockedDomainIsUsedWhenTheDriverHasOne()
    {
        var core = NewCore();
        var drv = new TestDriver(staticBlocked: true);
        var a = Dev("a");
        Boot(core, drv, a);
        Assert.True(core.GroupClaimDmaOwner(a.Group!, new object()).IsOk);
        Assert.Same(drv.StaticBlockedDomain, a.Group!.Domain);
    }

    [Fact]
    public void SecondGroupClaimIsEpermEvenWithTheSameCookie()
    {
        var (core, _, a, _) = Pair();
        var cookie = new object();
        Assert.True(core.GroupClaimDmaOwner(a.Group!, cookie).IsOk);
        Assert.Equal(Errno.EPERM, core.GroupClaimDmaOwner(a.Group!, cookie).Errno);
    }

    [Fact]
    public void DeviceClaimsWithOneCookieStackAndAnotherCookieIsEperm()
    {
        var (core, _, a, b) = Pair();
        var ctx = new object();
        Assert.True(core.DeviceClaimDmaOwner(a, ctx).IsOk);
        Assert.True(core.DeviceClaimDmaOwner(b, ctx).IsOk);
        Assert.Equal(2u, a.Group!.OwnerCount);
        Assert.Equal(Errno.EPERM, core.DeviceClaimDmaOwner(b, new object()).Errno);
        core.DeviceReleaseDmaOwner(a);
        Assert.Equal(1u, a.Group.OwnerCount);
        Assert.Same(a.Group.BlockingDomain, a.Group.Domain);
        core.DeviceReleaseDmaOwner(b);
        Assert.Same(a.Group.DefaultDomain, a.Group.Domain);
        Assert.Empty(core.CheckInvariants());
    }

    [Fact]
    public void DeviceClaimWhileAKernelDriverUsesTheGroupIsEperm()
    {
        var (core, _, a, b) = Pair();
        core.BindDriver(a, "virtio-pci");
        Assert.Equal(Errno.EPERM, core.DeviceClaimDmaOwner(b, new object()).Errno);
    }

    [Fact]
    public void ClaimWithoutCookieIsEinvalAndWithoutGroupIsEnodev()
    {
        var (core, _, a, _) = Pair();
        Assert.Equal(Errno.EINVAL, core.GroupClaimDmaOwner(a.Group!, null!).Errno);
        Assert.Equal(Errno.EINVAL, core.DeviceClaimDmaOwner(a, null!).Errno);
        var lone = Dev("noiommu0");
        Assert.Equal(Errno.ENODEV, core.HotplugAdd(lone).Errno);
        Assert.Equal(Errno.ENODEV, core.DeviceClaimDmaOwner(lone, new object()).Errno);
        Assert.True(core.BindDriver(lone, "e1000e").IsOk); // no group: use_default_domain succeeds
    }

    [Fact]
    public void BindingADmaApiDriverToAUserOwnedGroupIsEbusyButVfioBinds()
    {
        var (core, _, a, b) = Pair();
        Assert.True(core.GroupClaimDmaOwner(a.Group!, new object()).IsOk);
        var r = core.BindDriver(b, "e1000e");
        Assert.Equal(Errno.EBUSY, r.Errno);
        Assert.Contains("owned by a user", r.Reason);
        Assert.True(core.BindDriver(b, "vfio-pci").IsOk);
        Assert.Empty(core.CheckInvariants());
    }

    [Fact]
    public void ClaimWhileAnApiUsersDomainIsAttachedIsEbusy()
    {
        var (core, _, a, _) = Pair();
        core.AllocPagingDomain(a, out var user);
        Assert.True(core.AttachGroup(user!, a.Group!).IsOk);
        Assert.Equal(Errno.EBUSY, core.GroupClaimDmaOwner(a.Group!, new object()).Errno);
    }

    [Fact]
    public void DetachingTheUserDomainOfAnOwnedGroupReturnsToBlockingNotDefault()
    {
        var (core, _, a, _) = Pair();
        var g = a.Group!;
        core.GroupClaimDmaOwner(g, new object());
        core.AllocPagingDomain(a, out var user);
        Assert.True(core.AttachGroup(user!, g).IsOk);
        Assert.Same(user, g.Domain);
        core.DetachGroup(user!, g);
        Assert.Same(g.BlockingDomain, g.Domain);
        core.GroupReleaseDmaOwner(g);
        Assert.Same(g.DefaultDomain, g.Domain);
    }

    [Fact]
    public void KernelDriverCannotJoinAGroupOnAnApiUsersDomainWhileOthersUseIt()
    {
        var (core, _, a, b) = Pair();
        Assert.True(core.BindDriver(a, "e1000e").IsOk);
        core.AllocPagingDomain(a, out var user);
        Assert.True(core.AttachGroup(user!, a.Group!).IsOk); // attach_group does not check kernel use
        Assert.Equal(Errno.EBUSY, core.BindDriver(b, "e1000e").Errno);
    }
}

public class PreOwnershipApiTests
{
    private static (IommuCore Core, IommuDevice A, IommuDevice B) PairBefore519()
    {
        var core = NewCore(kernel: KernelVersion.V5_18);
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = "g";
        var a = Dev("a");
        var b = Dev("b");
        Boot(core, drv, a, b);
        return (core, a, b);
    }

    [Fact]
    public void Before519AGroupIsTakenOnlyWhenViableAndKernelBindsAreNotStopped()
    {
        var (core, a, b) = PairBefore519();
        Assert.False(core.Kernel.HasDmaOwnership);
        core.BindDriver(a, "e1000e");
        core.BindDriver(b, "vfio-pci");
        var r = core.GroupClaimDmaOwner(a.Group!, new object());
        Assert.Equal(Errno.EINVAL, r.Errno);
        Assert.Contains("not viable: a is bound to e1000e", r.Reason);
        core.UnbindDriver(a);
        Assert.True(core.GroupClaimDmaOwner(a.Group!, new object()).IsOk);
        Assert.True(core.BindDriver(a, "e1000e").IsOk); // nothing stopped this before 5.19
        Assert.Contains(core.Log, l => l.Contains("while group 0 is in use", StringComparison.Ordinal));
        core.GroupReleaseDmaOwner(a.Group!);
        Assert.Equal(1u, a.Group!.OwnerCount);
        Assert.Empty(core.CheckInvariants());
    }

    [Fact]
    public void Before519NoBindIsRefusedEvenWhileAnApiUsersDomainIsAttached()
    {
        // iommu_device_use_default_domain arrived with the ownership API in 5.19; before, the driver core's
        // dma_configure never asked the IOMMU core, so a bind cannot fail with EBUSY.
        var (core, a, b) = PairBefore519();
        Assert.True(core.BindDriver(a, "e1000e").IsOk);
        core.AllocPagingDomain(a, out var user);
        Assert.True(core.AttachGroup(user!, a.Group!).IsOk);
        Assert.True(core.BindDriver(b, "e1000e").IsOk);
        Assert.Equal(2u, a.Group!.OwnerCount);
    }

    private static (IommuCore Core, IommuDevice Port, IommuDevice Nic) BridgeAndNicInOneGroup()
    {
        var topo = PciTopo(("0000:00:1c.0", 0x060400, 0x8086, 0xa110, false), ("0000:01:00.0", 0x020000, 0x8086, 0x10d3, false));
        var core = NewCore(kernel: KernelVersion.V5_18);
        var drv = new TestDriver();
        var devs = topo.Devices.Select(p => IommuDevice.FromPci(p)).ToArray();
        foreach (var d in devs) drv.GroupKey[d.Name] = "g";
        Boot(core, drv, devs);
        return (core, devs.Single(d => d.Pci!.IsBridge), devs.Single(d => !d.Pci!.IsBridge));
    }

    [Fact]
    public void Before519ABridgeKeepsItsGroupViableWhateverDriverItIsBoundTo()
    {
        // vfio_dev_driver_allowed: hdr_type != PCI_HEADER_TYPE_NORMAL passes, whatever the driver (here shpchp).
        var (core, port, nic) = BridgeAndNicInOneGroup();
        Assert.True(core.BindDriver(port, "shpchp").IsOk);
        Assert.True(core.BindDriver(nic, "vfio-pci").IsOk);
        var r = core.GroupClaimDmaOwner(nic.Group!, new object());
        Assert.True(r.IsOk, r.ToString());
        Assert.Same(nic.Group!.BlockingDomain, nic.Group!.Domain);
        Assert.Empty(core.CheckInvariants());
    }

    [Fact]
    public void Before519OnlyPciStubIsAllowedByNameOnAnEndpoint()
    {
        // vfio_driver_allowed[] = { "pci-stub" }: a type-0 function bound to anything else (even pcieport) is not viable.
        var (core, port, nic) = BridgeAndNicInOneGroup();
        core.BindDriver(port, "pcieport");
        core.BindDriver(nic, "pcieport", driverManagedDma: true);
        var r = core.GroupClaimDmaOwner(nic.Group!, new object());
        Assert.Equal(Errno.EINVAL, r.Errno);
        Assert.Contains($"{nic.Name} is bound to pcieport", r.Reason);
        core.UnbindDriver(nic);
        core.BindDriver(nic, "pci-stub");
        Assert.True(core.GroupClaimDmaOwner(nic.Group!, new object()).IsOk);
    }
}

public class VfioVariantDriverTests
{
    [Theory]
    [InlineData("mlx5_vfio_pci")]
    [InlineData("hisi_acc_vfio_pci")]
    [InlineData("vfio-pci")]
    public void VfioPciVariantDriversManageTheirOwnDmaAndLeaveTheGroupClaimable(string driver)
    {
        // Variant drivers register through vfio_pci_core and set driver_managed_dma like vfio-pci (spec 7).
        var core = NewCore();
        var a = Dev("a");
        Boot(core, new TestDriver(), a);
        Assert.True(core.BindDriver(a, driver).IsOk);
        Assert.True(a.DriverManagedDma);
        Assert.Equal(0u, a.Group!.OwnerCount);
        Assert.True(core.GroupClaimDmaOwner(a.Group!, new object()).IsOk);
    }
}
