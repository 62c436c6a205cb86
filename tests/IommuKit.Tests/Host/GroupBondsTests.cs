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
}
