using IommuKit.Host;
using IommuKit.Grouping;
using IommuKit.Pci;
using Xunit;

namespace IommuKit.Tests.Host;

public class GroupReportChangeTests
{
    private static readonly PciTopology Topo = Build();

    private static PciTopology Build()
    {
        var b = new PciTopologyBuilder();
        foreach (var a in new[] { "00:01.0", "00:02.0", "00:03.0", "00:04.0", "00:05.0" })
            b.Add(new PciDeviceFacts { Address = PciAddress.Parse(a), VendorId = 0x8086, DeviceId = 0x10d3, ClassCode = 0x020000 });
        return b.Build();
    }

    private static GroupReport G(int id, params string[] members) =>
        new(id, GroupOrigin.Model, null, null, $"fp{id}", members.Select(m => Topo[PciAddress.Parse(m)]).ToList());

    [Fact]
    public void OneGroupBecomingTwoIsASplitAndRenumberingAloneIsNoChange()
    {
        var before = new[] { G(0, "00:01.0", "00:02.0"), G(1, "00:03.0") };
        var after = new[] { G(5, "00:01.0"), G(6, "00:02.0"), G(0, "00:03.0") };
        var d = GroupReportChange.Compute(before, after);
        Assert.Equal([GroupChangeKind.Split, GroupChangeKind.Unchanged], d.Select(e => e.Kind));
        Assert.Equal([5, 6], d[0].After.Select(g => g.Id));
    }

    [Fact]
    public void TwoGroupsBecomingOneIsAMergeAndAnExchangeIsReshaped()
    {
        var merged = GroupReportChange.Compute([G(0, "00:01.0"), G(1, "00:02.0")], [G(0, "00:01.0", "00:02.0")]);
        Assert.Equal(GroupChangeKind.Merged, Assert.Single(merged).Kind);
        var reshaped = GroupReportChange.Compute([G(0, "00:01.0", "00:02.0"), G(1, "00:03.0", "00:04.0")],
                                         [G(0, "00:01.0", "00:03.0"), G(1, "00:02.0", "00:04.0")]);
        Assert.Equal(GroupChangeKind.Reshaped, Assert.Single(reshaped).Kind);
    }

    [Fact]
    public void DevicesOnOneSideOnlyAreAddedOrRemoved()
    {
        var d = GroupReportChange.Compute([G(0, "00:01.0"), G(1, "00:05.0")], [G(0, "00:01.0"), G(1, "00:04.0")]);
        Assert.Equal([GroupChangeKind.Unchanged, GroupChangeKind.Removed, GroupChangeKind.Added], d.Select(e => e.Kind));
    }

    [Fact]
    public void AMovedDeviceIsMatchedThroughTheAddressMap()
    {
        var map = new Dictionary<PciAddress, PciAddress> { [PciAddress.Parse("00:05.0")] = PciAddress.Parse("00:04.0") };
        var d = GroupReportChange.Compute([G(0, "00:01.0", "00:05.0")], [G(0, "00:01.0"), G(1, "00:04.0")], map);
        Assert.Equal(GroupChangeKind.Split, Assert.Single(d).Kind);
    }
}
