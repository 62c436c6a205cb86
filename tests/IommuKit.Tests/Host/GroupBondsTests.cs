using IommuKit.Grouping;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Host;

/// <summary>The Host layer's view of units and bonds: per shown group, and per member for explanations.</summary>
public class GroupBondsTests
{
    private static HostReport Oracle(string name) => HostAnalysis.Analyze(MachineSource.Load(Fixtures.OracleTarball(name)));

    [Fact]
    public void KernelGroupsShownGetTheModelsUnits()
    {
        var report = Oracle("d_pcibridge");
        var g = report.GroupOf(PciAddress.Parse("02:01.0"))!;
        Assert.Equal(GroupOrigin.Kernel, g.Origin);
        var u = GroupBonds.UnitsOf(report, g)!;
        Assert.Single(u.Units);
        Assert.Equal(g.Devices.Count, u.Units[0].Devices.Count);
    }

    [Fact]
    public void ExplainNamesTheBondOfEveryOtherMember()
    {
        var report = Oracle("b_rootports");
        var g = report.GroupOf(PciAddress.Parse("00:0c.0"))!;
        var lines = GroupBonds.MemberBonds(GroupBonds.UnitsOf(report, g)!, PciAddress.Parse("08:00.0"));
        Assert.Equal(["00:0c.0", "00:0c.1", "09:00.0"], lines.Select(l => l.Member.ToShortString()).Order());
        Assert.All(lines, l => Assert.Contains("share no requester ID", l.Text));
        Assert.Equal("08:00.0 and 00:0c.0 share no requester ID; they are together because 00:0c.0 lacks ACS isolation",
            lines.Single(l => l.Member == PciAddress.Parse("00:0c.0")).Text);
        var functions = GroupBonds.MemberBonds(GroupBonds.UnitsOf(report, g)!, PciAddress.Parse("00:0c.0"));
        Assert.Equal("00:0c.0 and 00:0c.1 share no requester ID; they are together because 00:0c.1 is multifunction without ACS",
            functions.Single(l => l.Member == PciAddress.Parse("00:0c.1")).Text);
    }

    [Fact]
    public void ExplainSaysAliasedMembersCannotBeToldApart()
    {
        var report = Oracle("h_mixed_more");
        var g = report.GroupOf(PciAddress.Parse("0e:01.0"))!;
        var lines = GroupBonds.MemberBonds(GroupBonds.UnitsOf(report, g)!, PciAddress.Parse("0e:01.0"));
        Assert.Equal(3, lines.Count);
        Assert.All(lines, l => Assert.Equal(BondKind.Alias, l.Kind));
        Assert.Equal("0e:01.0 reaches the IOMMU through 0d:02.0, which forwards its requests with its own ID 0d:02.0: they cannot be told apart",
            lines.Single(l => l.Member == PciAddress.Parse("0d:02.0")).Text);
    }

    [Fact]
    public void ExplainSaysDevicesBehindAPcieToPciBridgeReachTheIommuAsItsSecondaryBus()
    {
        var report = Oracle("d_pcibridge");
        var g = report.GroupOf(PciAddress.Parse("02:01.0"))!;
        var lines = GroupBonds.MemberBonds(GroupBonds.UnitsOf(report, g)!, PciAddress.Parse("02:01.0"));
        Assert.Equal("02:01.0 and 02:02.0 are behind PCIe-to-PCI bridge 01:00.0 and reach the IOMMU as 02:00.0: they cannot be told apart",
            lines.Single(l => l.Member == PciAddress.Parse("02:02.0")).Text);
        Assert.Equal("02:01.0 reaches the IOMMU through 01:00.0, which takes ownership of its requests as 02:00.0 (PCIe-to-PCI bridge): they cannot be told apart",
            lines.Single(l => l.Member == PciAddress.Parse("01:00.0")).Text);
    }

    [Fact]
    public void AddressSpacesSeparateAliasUnitsFromDevicesThatCouldHaveTheirOwn()
    {
        var m = Grouping.T.New().RootPort("00:1d.0", sec: 2, sub: 3)
            .Dev("02:00.0", Grouping.T.Qemu, 0x000e, PcieType.PciBridge, sec: 3, sub: 3)
            .Conventional("03:01.0").Conventional("03:02.0").Build();
        var r = ModelGrouping.Compute(m);
        var spaces = GroupBonds.AddressSpaces(r.Units(r.GroupOf(PciAddress.Parse("03:01.0"))!)!);
        Assert.Equal(2, spaces.Count);
        Assert.False(spaces[0].MustShare);
        Assert.Equal([PciAddress.Parse("00:1d.0")], spaces[0].Devices);
        Assert.Equal("00:1d.0 has a requester ID of its own (in the group because 00:1d.0 lacks ACS isolation): it could have its own guest address space, in the same VM", spaces[0].Reason);
        Assert.True(spaces[1].MustShare);
        Assert.Equal("02:00.0, 03:01.0, 03:02.0 share a requester ID (alias through 02:00.0): one guest address space", spaces[1].Reason);
        // A group of one device has nothing to choose.
        var single = ModelGrouping.Compute(Grouping.T.New().RootPort("00:1c.0", sec: 1, acs: Grouping.T.AcsOn).Endpoint("01:00.0").Build());
        Assert.Empty(GroupBonds.AddressSpaces(single.Units(single.GroupOf(PciAddress.Parse("01:00.0"))!)!));
    }
}
