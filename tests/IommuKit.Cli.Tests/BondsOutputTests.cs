using System.Text.Json;
using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

/// <summary>The two bonds in the tool's answers: <c>groups --json</c> units and bonds, <c>explain</c> per member, <c>vfio-check</c> address spaces.</summary>
public class BondsOutputTests
{
    private static JsonElement GroupWith(JsonElement groups, string address)
    {
        foreach (var g in groups.EnumerateArray())
            foreach (var d in g.GetProperty("devices").EnumerateArray())
                if (d.GetProperty("address").GetString() == address) return g;
        throw new Xunit.Sdk.XunitException($"no group holds {address}");
    }

    [Fact]
    public void GroupsJsonGivesEveryGroupUnitsAndBonds()
    {
        var r = Run("groups", "--json", "--source", Oracle("d_pcibridge"));
        Assert.Equal(0, r.Code);
        using var doc = JsonDocument.Parse(r.Out);
        var groups = doc.RootElement.GetProperty("groups");
        foreach (var g in groups.EnumerateArray())
        {
            int members = g.GetProperty("devices").GetArrayLength();
            int inUnits = g.GetProperty("units").EnumerateArray().Sum(u => u.GetProperty("devices").GetArrayLength());
            Assert.Equal(members, inUnits);
            Assert.Equal(members - 1, g.GetProperty("bonds").GetArrayLength());
        }
        // The PCIe-to-PCI bridge group: one unit reaching the IOMMU as 02:00.0, held by alias bonds.
        var bridge = GroupWith(groups, "0000:01:00.0");
        Assert.Equal(1, bridge.GetProperty("units").GetArrayLength());
        Assert.Contains("0x0200", bridge.GetProperty("units")[0].GetProperty("requester_ids").EnumerateArray().Select(x => x.GetString()));
        Assert.All(bridge.GetProperty("bonds").EnumerateArray(), b => Assert.Equal("alias", b.GetProperty("kind").GetString()));
        // The ICH9 functions: one unit each, multifunction bonds between them.
        var lpc = GroupWith(groups, "0000:00:1f.0");
        Assert.Equal(3, lpc.GetProperty("units").GetArrayLength());
        Assert.All(lpc.GetProperty("bonds").EnumerateArray(), b =>
        {
            Assert.Equal("multifunction", b.GetProperty("kind").GetString());
            Assert.True(b.GetProperty("between_units").GetBoolean());
        });
    }

    [Fact]
    public void ExplainNamesTheBondKindOfEveryMember()
    {
        var r = Run("explain", "08:00.0", "--source", Oracle("b_rootports"));
        Assert.Equal(0, r.Code);
        Assert.Contains("acs-path: 08:00.0 and 00:0c.0 share no requester ID; they are together because 00:0c.0 lacks ACS isolation", r.Out);
        var j = Run("explain", "00:0c.0", "--json", "--source", Oracle("b_rootports"));
        using var doc = JsonDocument.Parse(j.Out);
        var bonds = doc.RootElement.GetProperty("bonds").EnumerateArray().ToList();
        Assert.Equal(3, bonds.Count);
        var fn = bonds.Single(b => b.GetProperty("member").GetString() == "0000:00:0c.1");
        Assert.Equal("multifunction", fn.GetProperty("kind").GetString());
        Assert.Equal("00:0c.0 and 00:0c.1 share no requester ID; they are together because 00:0c.1 is multifunction without ACS", fn.GetProperty("text").GetString());
    }

    [Fact]
    public void VfioCheckSaysWhichDevicesMustShareAGuestAddressSpace()
    {
        var r = Run("vfio-check", "02:01.0", "--json", "--source", Oracle("d_pcibridge"));
        using var doc = JsonDocument.Parse(r.Out);
        var spaces = doc.RootElement.GetProperty("address_spaces").EnumerateArray().ToList();
        var one = Assert.Single(spaces);
        Assert.True(one.GetProperty("must_share").GetBoolean());
        Assert.Equal(6, one.GetProperty("devices").GetArrayLength());
        var mf = Run("vfio-check", "06:00.0", "--json", "--source", Oracle("b_rootports"));
        using var doc2 = JsonDocument.Parse(mf.Out);
        Assert.All(doc2.RootElement.GetProperty("address_spaces").EnumerateArray(), a => Assert.False(a.GetProperty("must_share").GetBoolean()));
        Assert.Equal(2, doc2.RootElement.GetProperty("address_spaces").GetArrayLength());
    }
}
