using IommuKit.Core;
using IommuKit.Drivers;
using IommuKit.Paging;
using IommuKit.Simulation;
using Xunit;
using static IommuKit.Tests.Core.CoreRig;

namespace IommuKit.Tests.Core;

/// <summary>The core reports what it does as typed events; the text log is one subscriber.</summary>
public class EventTests
{
    private static (IommuCore Core, IommuHardware Hw, IommuDevice Nic, List<IommuEvent> Seen) Boot()
    {
        var topo = PciTopo(("0000:00:02.0", 0x020000, 0x8086, 0x10d3, false));
        var core = NewCore("iommu.strict=1");
        var seen = new List<IommuEvent>();
        core.Subscribe(e => { lock (seen) seen.Add(e); });
        var hw = new IommuHardware(name: "dmar0");
        var drv = new VtdDriver([new VtdUnit("dmar0", [], IncludeAll: true)], f => IoPageTables.Create(f))
        {
            Hardware = new Dictionary<string, IommuHardware> { ["dmar0"] = hw },
        };
        var nic = IommuDevice.FromPci(topo.Devices[0]);
        CoreRig.Boot(core, drv, nic);
        return (core, hw, nic, seen);
    }

    [Fact]
    public void BootOwnershipAttachDetachFreeAndTypeChangesEachRaiseTheirEvent()
    {
        var (core, _, nic, seen) = Boot();
        var group = nic.Group!;
        var def = group.DefaultDomain!;
        Assert.Contains(new DomainAllocatedEvent(def, group), seen);
        Assert.Contains(new GroupAttachedEvent(group, def, null), seen);

        seen.Clear();
        var owner = new object();
        Assert.True(core.GroupClaimDmaOwner(group, owner).IsOk);
        Assert.True(core.AllocPagingDomain(nic, out var user).IsOk);
        Assert.True(core.AttachGroup(user!, group).IsOk);
        core.DetachGroup(user!, group);
        core.FreeDomain(user!);
        core.GroupReleaseDmaOwner(group);
        var blocking = group.BlockingDomain!;
        Assert.Equal<IommuEvent>(
        [
            new GroupAttachedEvent(group, blocking, def), new OwnershipChangedEvent(group, owner, true),
            new DomainAllocatedEvent(user!, group), new GroupAttachedEvent(group, user!, blocking),
            new GroupAttachedEvent(group, blocking, user!), new GroupDetachedEvent(group, user!, blocking),
            new DomainFreedEvent(user!), new GroupAttachedEvent(group, def, blocking), new OwnershipChangedEvent(group, owner, false),
        ], seen.Where(e => e is not LogLineEvent));

        seen.Clear();
        Assert.True(core.StoreType(group, "identity").IsOk);
        var change = Assert.Single(seen.OfType<DefaultTypeChangedEvent>());
        Assert.Equal((IommuDomainType.Dma, IommuDomainType.Identity), (change.Old, change.New));
        Assert.Contains(new DomainFreedEvent(def), seen);
    }

    [Fact]
    public void AHardwareFaultReachesSubscribersNamingTheDeviceAndDomain()
    {
        var (_, hw, nic, seen) = Boot();
        ushort rid = nic.Pci!.Address.RequesterId;
        Assert.Equal(DmaTranslationKind.Fault, hw.Translate(rid, 0x7000, write: true).Kind);
        var f = Assert.Single(seen.OfType<DmaFaultEvent>());
        Assert.Equal(("dmar0", rid, nic, nic.Group!.DefaultDomain, 0x7000UL, true, "NotPresent"),
            (f.Unit, f.RequesterId, f.Device, f.Domain, f.Address, f.Write, f.Reason));
    }

    [Fact]
    public void TheTextLogIsASubscriberAndDisposingASubscriptionStopsDelivery()
    {
        var core = NewCore("intel_iommu=strict");
        var lines = new List<string>();
        var sub = core.Subscribe(e => { if (e is LogLineEvent l) lines.Add(l.Line); });
        core.SetDmaStrict("a reason");
        Assert.Equal(core.Log.Skip(core.Log.Count - lines.Count), lines);
        Assert.Equal("a reason", lines[^1]);
        sub.Dispose();
        int n = lines.Count;
        core.SetDmaStrict("another");
        Assert.Equal(n, lines.Count);
    }

    [Fact]
    public void DetachGroupOfADomainTheGroupIsNotOnChangesNothing()
    {
        var (core, _, nic, _) = Boot();
        var group = nic.Group!;
        Assert.True(core.GroupClaimDmaOwner(group, new object()).IsOk);
        Assert.True(core.AllocPagingDomain(nic, out var a).IsOk);
        Assert.True(core.AllocPagingDomain(nic, out var b).IsOk);
        Assert.True(core.AttachGroup(a!, group).IsOk);
        core.DetachGroup(b!, group);
        Assert.Same(a, group.Domain);
        Assert.Contains(core.Log, l => l.Contains("detach of") && l.Contains("but the group is on"));
    }
}

/// <summary>The error model of the control path: results for the caller's mistakes, a typed ownership claim.</summary>
public class ControlPathErrorTests
{
    [Fact]
    public void ACoreRefusesAGroupOfAnotherCore()
    {
        var drvA = new TestDriver();
        var a = NewCore();
        Boot(a, drvA, Dev("a0"));
        var b = NewCore();
        Boot(b, new TestDriver(), Dev("b0"));
        var foreign = b.Groups[0];
        Assert.True(a.AllocPagingDomain(a.Devices[0], out var d).IsOk);
        Assert.Equal(Errno.EINVAL, a.AttachGroup(d!, foreign).Errno);
        Assert.Equal(Errno.EINVAL, a.StoreType(foreign, "identity").Errno);
        var r = a.GroupClaimDmaOwner(foreign, new object());
        Assert.Equal(Errno.EINVAL, r.Errno);
        Assert.Contains("another IOMMU core", r.Reason);
        Assert.Throws<ArgumentException>(() => a.DetachGroup(d!, foreign));
        Assert.Equal(0u, foreign.OwnerCount);
    }

    [Fact]
    public void DisposingAnOwnershipClaimReleasesTheGroupOnce()
    {
        var core = NewCore();
        Boot(core, new TestDriver(staticBlocked: true), Dev("d0"));
        var g = core.Groups[0];
        Assert.True(core.ClaimDmaOwnership(g, out var claim).IsOk);
        Assert.Same(g.BlockingDomain, g.Domain);
        Assert.Same(claim, g.Owner);
        Assert.Equal(Errno.EPERM, core.ClaimDmaOwnership(g, out var second).Errno);
        Assert.Null(second);
        claim!.Dispose();
        claim.Dispose();
        Assert.False(claim.IsHeld);
        Assert.Same(g.DefaultDomain, g.Domain);
        Assert.DoesNotContain(core.Log, l => l.Contains("release of DMA ownership that is not held"));
    }
}
