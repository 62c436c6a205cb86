using IommuKit.Core;
using IommuKit.Drivers;
using IommuKit.Grouping;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Simulation;
using IommuKit.Tests.Grouping;
using Xunit;

namespace IommuKit.Tests.Core;

/// <summary>
/// The opt-in <see cref="GroupPolicy.SplitByRequesterId"/>: the owner of a whole group may give requester-ID units
/// bonded only by acs-path/multifunction their own domains; alias units, other owners and Linux's policy are refused.
/// </summary>
public class SplitByRequesterIdTests
{
    /// <summary>
    /// Two groups: {01:00.0, 01:00.1}, a multifunction endpoint without ACS below an ACS root port (two units, one
    /// multifunction bond); {00:1d.0, 02:00.0, 03:01.0, 03:02.0}, a root port without ACS with a PCIe-to-PCI bridge and
    /// two conventional devices behind it (units {00:1d.0} and {02:00.0, 03:01.0, 03:02.0}: acs-path between, alias inside).
    /// </summary>
    internal sealed class Rig
    {
        public readonly HostModel Host;
        public readonly IommuCore Core;
        public readonly IommuDriverBase Driver;
        public readonly IommuHardware Hardware = new(name: "dmar0");
        public readonly object Owner = new();

        public Rig(bool split = true)
        {
            var m = T.New()
                .RootPort("00:1c.0", sec: 1, acs: T.AcsOn)
                .Endpoint("01:00.0", mf: true).Endpoint("01:00.1")
                .RootPort("00:1d.0", sec: 2, sub: 3)
                .Dev("02:00.0", T.Qemu, 0x000e, PcieType.PciBridge, sec: 3, sub: 3)
                .Conventional("03:01.0").Conventional("03:02.0")
                .Build();
            Host = HostModel.FromMachine(m);
            Core = Host.Core;
            Driver = (IommuDriverBase)Host.Driver!;
            Driver.Hardware = new Dictionary<string, IommuHardware> { ["dmar0"] = Hardware };
            if (split) Core.Policy = RequesterIdPolicy.SplitByRequesterId(Host);
        }

        public IommuDevice Dev(string a) => Core.FindDevice(PciAddress.Parse(a))!;

        public IommuGroup Claim(string member)
        {
            var g = Dev(member).Group!;
            Assert.True(Core.GroupClaimDmaOwner(g, Owner).IsOk);
            return g;
        }

        public IommuDomain NewDomain(string forDevice)
        {
            Assert.True(Core.AllocPagingDomain(Dev(forDevice), out var d).IsOk);
            return d!;
        }
    }

    [Fact]
    public void TheRigHasTheGroupsAndUnitsItClaims()
    {
        var rig = new Rig();
        Assert.Same(rig.Dev("01:00.0").Group, rig.Dev("01:00.1").Group);
        var units = rig.Core.RequesterIdUnitsOf(rig.Dev("03:01.0").Group!)!;
        Assert.Equal(["00:1d.0", "02:00.0,03:01.0,03:02.0"], units.Select(u => string.Join(",", u.Devices.Select(a => a.ToShortString()))));
        Assert.Equal([null, "alias through 02:00.0"], units.Select(u => u.SharedBecause));
        Assert.All(units, u => Assert.Null(u.InseparableBecause));
        Assert.Null(new Rig(split: false).Core.RequesterIdUnitsOf(rig.Dev("01:00.0").Group!));
    }

    [Fact]
    public void LinuxPolicyRefusesOneDeviceOfASharedGroupEvenToItsOwner()
    {
        var rig = new Rig(split: false);
        rig.Claim("01:00.0");
        var r = rig.Core.AttachDevice(rig.NewDomain("01:00.1"), rig.Dev("01:00.1"), rig.Owner);
        Assert.Equal(Errno.EINVAL, r.Errno);
        Assert.Contains("SplitByRequesterId is off", r.Reason);
        Assert.Empty(rig.Core.CheckInvariants());
    }

    [Fact]
    public void OwnerOfTheWholeGroupGivesAMultifunctionUnitItsOwnDomain()
    {
        var rig = new Rig();
        var g = rig.Claim("01:00.0");
        var dom = rig.NewDomain("01:00.1");
        Assert.True(rig.Core.AttachDevice(dom, rig.Dev("01:00.1"), rig.Owner).IsOk);
        Assert.Same(dom, rig.Core.GetDomainForDevice(rig.Dev("01:00.1")));
        Assert.Same(g.BlockingDomain, rig.Core.GetDomainForDevice(rig.Dev("01:00.0")));
        Assert.Same(g.BlockingDomain, g.Domain);
        Assert.Empty(rig.Core.CheckInvariants());
        // The other unit may have a third domain of its own.
        var dom0 = rig.NewDomain("01:00.0");
        Assert.True(rig.Core.AttachDevice(dom0, rig.Dev("01:00.0"), rig.Owner).IsOk);
        Assert.Same(dom0, rig.Dev("01:00.0").AttachedDomain);
        Assert.Empty(rig.Core.CheckInvariants());
    }

    [Fact]
    public void SplitAttachIsRefusedWithoutOwnershipOrToAnotherOwner()
    {
        var rig = new Rig();
        var dom = rig.NewDomain("01:00.1");
        var r = rig.Core.AttachDevice(dom, rig.Dev("01:00.1"), rig.Owner);
        Assert.Equal(Errno.EPERM, r.Errno);
        Assert.Contains("not wholly owned by the caller", r.Reason);
        rig.Claim("01:00.0");
        r = rig.Core.AttachDevice(dom, rig.Dev("01:00.1"), new object());
        Assert.Equal(Errno.EPERM, r.Errno);
        Assert.Contains("another owner", r.Reason);
        Assert.Same(rig.Dev("01:00.0").Group!.BlockingDomain, rig.Dev("01:00.1").AttachedDomain);
        Assert.Empty(rig.Core.CheckInvariants());
    }

    [Fact]
    public void SplitAttachIsRefusedWhileAKernelDriverUsesTheGroup()
    {
        var rig = new Rig();
        Assert.True(rig.Core.BindDriver(rig.Dev("01:00.0"), "e1000e").IsOk);
        var r = rig.Core.AttachDevice(rig.NewDomain("01:00.1"), rig.Dev("01:00.1"), rig.Owner);
        Assert.Equal(Errno.EPERM, r.Errno);
    }

    [Fact]
    public void SplitAttachIsRefusedForADeviceJoinedByAlias()
    {
        var rig = new Rig();
        rig.Claim("00:1d.0");
        var r = rig.Core.AttachDevice(rig.NewDomain("03:01.0"), rig.Dev("03:01.0"), rig.Owner);
        Assert.Equal(Errno.EINVAL, r.Errno);
        Assert.Contains("shares a requester ID with 02:00.0, 03:02.0", r.Reason);
        Assert.Contains("alias through 02:00.0", r.Reason);
        Assert.Empty(rig.Core.CheckInvariants());
    }

    [Fact]
    public void AUnitBondedToTheRestBySharedIdsOrUnknownToThePolicyIsRefused()
    {
        // The core trusts only what the resolver says: a unit joined to the rest by an alias or quirk bond, or a group
        // the resolver cannot tell, keeps one domain.
        var rig = new Rig(split: false);
        rig.Core.Policy = GroupPolicy.SplitByRequesterId(members =>
            [.. members.Select(m => new RequesterIdUnitInfo([m.Address], InseparableBecause: $"bonded to 01:00.0 by quirk"))]);
        rig.Claim("01:00.0");
        var dom = rig.NewDomain("01:00.1");
        var r = rig.Core.AttachDevice(dom, rig.Dev("01:00.1"), rig.Owner);
        Assert.Equal(Errno.EINVAL, r.Errno);
        Assert.Contains("bonded to 01:00.0 by quirk", r.Reason);
        rig.Core.Policy = GroupPolicy.SplitByRequesterId(_ => null);
        r = rig.Core.AttachDevice(dom, rig.Dev("01:00.1"), rig.Owner);
        Assert.Equal(Errno.EINVAL, r.Errno);
        Assert.Contains("unknown to the policy", r.Reason);
        Assert.Empty(rig.Core.CheckInvariants());
    }

    [Fact]
    public void TheAliasUnitBehindAPcieToPciBridgeSplitsFromThePortWithoutAcs()
    {
        var rig = new Rig();
        var g = rig.Claim("00:1d.0");
        var dom = rig.NewDomain("03:01.0");
        Assert.True(rig.Core.AttachRequesterIdUnit(dom, rig.Dev("03:01.0"), rig.Owner).IsOk);
        foreach (var a in new[] { "02:00.0", "03:01.0", "03:02.0" }) Assert.Same(dom, rig.Dev(a).AttachedDomain);
        Assert.Same(g.BlockingDomain, rig.Dev("00:1d.0").AttachedDomain);
        Assert.Empty(rig.Core.CheckInvariants());
    }

    [Fact]
    public void AUnitThatIsTheWholeGroupIsAttachedAsTheGroup()
    {
        var rig = new Rig();
        var m = T.New().RootPort("00:1c.0", sec: 1, sub: 2, acs: T.AcsOn)
            .Dev("01:00.0", T.Qemu, 0x000e, PcieType.PciBridge, sec: 2).Conventional("02:01.0").Build();
        var host = HostModel.FromMachine(m);
        host.Core.Policy = RequesterIdPolicy.SplitByRequesterId(host);
        var dev = host.Core.FindDevice(PciAddress.Parse("02:01.0"))!;
        Assert.True(host.Core.GroupClaimDmaOwner(dev.Group!, rig.Owner).IsOk);
        Assert.True(host.Core.AllocPagingDomain(dev, out var dom).IsOk);
        var r = host.Core.AttachRequesterIdUnit(dom!, dev, rig.Owner);
        Assert.Equal(Errno.EINVAL, r.Errno);
        Assert.Contains("attach the group", r.Reason);
    }

    [Fact]
    public void AFailedUnitAttachRollsEveryDeviceBack()
    {
        var rig = new Rig();
        var g = rig.Claim("00:1d.0");
        var dom = rig.NewDomain("03:01.0");
        var failing = rig.Dev("03:02.0");
        rig.Driver.AttachFault = (d, x) => d == failing && x == dom ? Errno.ENOSPC : Errno.Ok;
        var r = rig.Core.AttachRequesterIdUnit(dom, rig.Dev("03:01.0"), rig.Owner);
        Assert.Equal(Errno.ENOSPC, r.Errno);
        foreach (var a in new[] { "00:1d.0", "02:00.0", "03:01.0", "03:02.0" })
        {
            Assert.Same(g.BlockingDomain, rig.Dev(a).AttachedDomain);
            Assert.Same(g.BlockingDomain, rig.Core.GetDomainForDevice(rig.Dev(a)));
        }
        Assert.Empty(rig.Core.CheckInvariants());
        // Nothing was recorded as split: a group attach is not busy.
        rig.Driver.AttachFault = null;
        Assert.True(rig.Core.AttachGroup(rig.NewDomain("00:1d.0"), g).IsOk);
    }

    [Fact]
    public void ReleasingOwnershipReturnsEveryUnitToTheGroupsDefaultDomain()
    {
        var rig = new Rig();
        var g = rig.Claim("01:00.0");
        Assert.True(rig.Core.AttachDevice(rig.NewDomain("01:00.1"), rig.Dev("01:00.1"), rig.Owner).IsOk);
        rig.Core.GroupReleaseDmaOwner(g);
        Assert.Same(g.DefaultDomain, g.Domain);
        Assert.Same(g.DefaultDomain, rig.Dev("01:00.0").AttachedDomain);
        Assert.Same(g.DefaultDomain, rig.Dev("01:00.1").AttachedDomain);
        Assert.Empty(rig.Core.CheckInvariants());
    }

    [Fact]
    public void DetachingAUnitReturnsItToTheGroupsDomainAndGroupWideChangesWaitForIt()
    {
        var rig = new Rig();
        var g = rig.Claim("01:00.0");
        var dom = rig.NewDomain("01:00.1");
        Assert.True(rig.Core.AttachDevice(dom, rig.Dev("01:00.1"), rig.Owner).IsOk);
        Assert.Equal(Errno.EBUSY, rig.Core.AttachGroup(rig.NewDomain("01:00.0"), g).Errno);
        Assert.Equal(Errno.EBUSY, rig.Core.AttachDevice(rig.NewDomain("01:00.1"), rig.Dev("01:00.1"), rig.Owner).Errno);
        rig.Core.DetachDevice(dom, rig.Dev("01:00.1"));
        Assert.Same(g.BlockingDomain, rig.Dev("01:00.1").AttachedDomain);
        Assert.Empty(rig.Core.CheckInvariants());
        Assert.True(rig.Core.AttachGroup(rig.NewDomain("01:00.0"), g).IsOk);
    }

    [Fact]
    public void HardwareContextsFollowUnitsOnePerRequesterId()
    {
        var rig = new Rig();
        rig.Claim("01:00.0");
        var dom = rig.NewDomain("01:00.1");
        Assert.True(rig.Core.AttachDevice(dom, rig.Dev("01:00.1"), rig.Owner).IsOk);
        var c1 = rig.Hardware.GetContext(0x0101)!;
        Assert.Equal(IommuContextKind.Translated, c1.Kind);
        Assert.Same(dom.PageTable, c1.Table);
        Assert.Equal(IommuContextKind.Blocked, rig.Hardware.GetContext(0x0100)!.Kind);
    }

    [Fact]
    public void InvariantCheckNamesAUnitOnTwoDomainsAndAChangedOwner()
    {
        var rig = new Rig();
        var g = rig.Claim("00:1d.0");
        var dom = rig.NewDomain("03:01.0");
        Assert.True(rig.Core.AttachRequesterIdUnit(dom, rig.Dev("03:01.0"), rig.Owner).IsOk);
        // Break the state behind the core's back: one device of the alias unit on another domain, another owner.
        using (new GroupLockScope(g))
        {
            rig.Dev("03:02.0").AttachedDomain = g.BlockingDomainLocked;
            g.OwnerLocked = new object();
        }
        var problems = rig.Core.CheckInvariants();
        Assert.Contains(problems, p => p.Contains("its requester-ID unit (02:00.0,03:01.0,03:02.0)"));
        Assert.Contains(problems, p => p.Contains("owner changed"));
    }
}
