using IommuKit.Core;
using Xunit;
using static IommuKit.Tests.Core.CoreRig;

namespace IommuKit.Tests.Core;

public class DomainAndAttachTests
{
    [Fact]
    public void DomainTypeValuesAreTheKernelsFlagValues()
    {
        Assert.Equal(0x00, (int)IommuDomainType.Blocked);
        Assert.Equal(0x04, (int)IommuDomainType.Identity);
        Assert.Equal(0x01, (int)IommuDomainType.Unmanaged);
        Assert.Equal(0x03, (int)IommuDomainType.Dma);
        Assert.Equal(0x0b, (int)IommuDomainType.DmaFq);
        Assert.True(IommuDomainType.DmaFq.IsDmaApi());
        Assert.False(IommuDomainType.Unmanaged.IsDmaApi());
        Assert.Equal("DMA-FQ", IommuDomainType.DmaFq.SysfsName());
        Assert.Equal("unknown", IommuDomainType.Platform.SysfsName());
    }

    [Fact]
    public void EveryDeviceOfAGroupIsAttachedToTheGroupsOneDomain()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = drv.GroupKey["c"] = "g";
        var devs = new[] { Dev("a"), Dev("b"), Dev("c") };
        Boot(core, drv, devs);
        var g = devs[0].Group!;
        Assert.Same(g, devs[2].Group);
        Assert.All(devs, d => Assert.Same(g.Domain, d.AttachedDomain));
        Assert.All(devs, d => Assert.Same(g.Domain, drv.Contexts[d]));
        Assert.Same(g.DefaultDomain, g.Domain);
        Assert.Empty(core.CheckInvariants());
    }

    [Fact]
    public void SingleDeviceAttachIsRefusedOnASharedGroup()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = "g";
        var a = Dev("a");
        Boot(core, drv, a, Dev("b"));
        Assert.True(core.AllocPagingDomain(a, out var user).IsOk);
        var r = core.AttachDevice(user!, a);
        Assert.Equal(Errno.EINVAL, r.Errno);
        Assert.Contains("a single device of a shared group", r.Reason);
        Assert.Same(a.Group!.DefaultDomain, a.AttachedDomain);
    }

    [Fact]
    public void SingleDeviceAttachWorksForAGroupOfOneAndDetachReturnsToTheDefault()
    {
        var core = NewCore();
        var drv = new TestDriver();
        var a = Dev("a");
        Boot(core, drv, a);
        Assert.True(core.AllocPagingDomain(a, out var user).IsOk);
        Assert.Equal(IommuDomainType.Unmanaged, user!.Type);
        Assert.True(core.AttachDevice(user, a).IsOk);
        Assert.Same(user, a.Group!.Domain);
        core.DetachDevice(user, a);
        Assert.Same(a.Group.DefaultDomain, a.Group.Domain);
    }

    [Fact]
    public void AttachingOverAnotherUsersDomainIsBusy()
    {
        var core = NewCore();
        var drv = new TestDriver();
        var a = Dev("a");
        Boot(core, drv, a);
        core.AllocPagingDomain(a, out var d1);
        core.AllocPagingDomain(a, out var d2);
        Assert.True(core.AttachGroup(d1!, a.Group!).IsOk);
        Assert.Equal(Errno.EBUSY, core.AttachGroup(d2!, a.Group!).Errno);
        Assert.True(core.ReplaceGroupDomain(d2!, a.Group!).IsOk);
        Assert.Same(d2, a.Group!.Domain);
    }

    [Fact]
    public void DomainOfAnotherDriverIsRefusedWithEinval()
    {
        var core = NewCore();
        var drv = new TestDriver();
        var other = new TestDriver(name: "other");
        var a = Dev("a");
        Boot(core, drv, a);
        other.AllocPagingDomain(a, IommuDomainType.Unmanaged, out var foreign);
        Assert.Equal(Errno.EINVAL, core.AttachGroup(foreign!, a.Group!).Errno);
    }

    [Fact]
    public void GroupSwitchFailingHalfWayRollsEveryDeviceBack()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = drv.GroupKey["c"] = "g";
        var devs = new[] { Dev("a"), Dev("b"), Dev("c") };
        Boot(core, drv, devs);
        var g = devs[0].Group!;
        var def = g.Domain;
        core.AllocPagingDomain(devs[0], out var user);
        drv.AttachFault = (d, dom) => d.Name == "c" && dom == user ? Errno.ENOSPC : Errno.Ok;
        var r = core.AttachGroup(user!, g);
        Assert.Equal(Errno.ENOSPC, r.Errno);
        Assert.Same(def, g.Domain);
        Assert.All(devs, d => Assert.Same(def, d.AttachedDomain));
        Assert.All(devs, d => Assert.Same(def, drv.Contexts[d]));
        Assert.Empty(core.CheckInvariants());
    }
}
