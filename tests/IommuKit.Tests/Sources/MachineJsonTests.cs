using System.Text;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Sources;

public class MachineJsonTests
{
    public static TheoryData<string> Machines()
    {
        var data = new TheoryData<string>();
        foreach (var m in Fixtures.OracleMachines()) data.Add(m);
        return data;
    }

    private static Machine RoundTrip(Machine m, bool includeConfig)
    {
        using var ms = new MemoryStream();
        MachineJson.Write(m, ms, includeConfig);
        ms.Position = 0;
        return MachineJson.Read(ms, "roundtrip.json");
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void WritingThenReadingGivesTheSameMachine(string name)
    {
        var m = MachineSource.Load(Fixtures.OracleTarball(name));
        SourceTestKit.AssertSameMachine(m, RoundTrip(m, includeConfig: true));
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void WithoutConfigBytesTheDecodedFactsStillRoundTrip(string name)
    {
        var m = MachineSource.Load(Fixtures.OracleTarball(name));
        var back = RoundTrip(m, includeConfig: false);
        Assert.Equal(m.Topology.Count, back.Topology.Count);
        for (int i = 0; i < m.Topology.Count; i++)
        {
            Assert.Null(back.Topology.Devices[i].Facts.Config);
            SourceTestKit.AssertSameFacts(m.Topology.Devices[i].Facts, back.Topology.Devices[i].Facts, compareConfig: false);
            Assert.Equal(m.Topology.Devices[i].Parent?.Address, back.Topology.Devices[i].Parent?.Address);
        }
    }

    [Fact]
    public void HandWrittenMachineWithoutConfigBuildsTheTopologyFromBridgeBuses()
    {
        const string json = """
        {
          "format": "iommukit-machine", "version": 1,
          // comments and trailing commas are accepted in hand-written files
          "devices": [
            {"address": "0000:00:1c.0", "vendor": "0x8086", "device": "0xa110", "class": "0x060400",
             "bridge_buses": {"primary": 0, "secondary": 1, "subordinate": 2}, "pcie_type": "root_port",
             "acs": {"capability": ["SrcValid", "ReqRedir", "CmpltRedir", "UpstreamFwd"], "control": ["SV", "RR"]}},
            {"address": "01:00.0", "vendor": "0x10de", "device": "0x1b80", "class": "0x030000", "pcie_type": "endpoint", "driver": "nouveau"},
          ],
        }
        """;
        var m = MachineJson.Read(Encoding.UTF8.GetBytes(json), "hand.json");
        var gpu = m.Topology[PciAddress.Parse("0000:01:00.0")];
        Assert.Equal(PciAddress.Parse("0000:00:1c.0"), gpu.Parent!.Address);
        Assert.Equal(PcieType.Endpoint, gpu.PcieType);
        Assert.Equal("nouveau", gpu.Driver);
        var port = gpu.Parent;
        Assert.Equal(1, port.Facts.HeaderLayout);
        Assert.Equal(AcsFlags.Required, port.Acs!.Capability);
        Assert.Equal(AcsFlags.SV | AcsFlags.RR, port.Acs.Control);
        Assert.Null(m.KernelGroups);
    }

    [Theory]
    [InlineData("""{"format": "other", "version": 1, "devices": []}""", "$.format")]
    [InlineData("""{"format": "iommukit-machine", "version": 2, "devices": []}""", "$.version: version 2 is not supported")]
    [InlineData("""{"format": "iommukit-machine", "version": 1}""", "$: missing \"devices\"")]
    [InlineData("""{"format": "iommukit-machine", "version": 1, "devices": [{"address": "zz", "vendor": "0x1", "device": "0x2", "class": "0x3"}]}""", "$.devices[0].address")]
    [InlineData("""{"format": "iommukit-machine", "version": 1, "devices": [{"address": "00:01.0", "vendor": "8086", "device": "0x2", "class": "0x3"}]}""", "$.devices[0].vendor")]
    [InlineData("""{"format": "iommukit-machine", "version": 1, "devices": [{"address": "00:01.0", "vendor": "0x18086", "device": "0x2", "class": "0x3"}]}""", "above the maximum")]
    [InlineData("""{"format": "iommukit-machine", "version": 1, "devices": [{"address": "00:01.0", "vendor": "0x1", "device": "0x2", "class": "0x3", "pcie_type": "switch"}]}""", "$.devices[0].pcie_type")]
    [InlineData("""{"format": "iommukit-machine", "version": 1, "devices": [{"address": "00:01.0", "vendor": "0x1", "device": "0x2", "class": "0x3", "acs": {"capability": ["Magic"]}}]}""", "$.devices[0].acs.capability[0]")]
    [InlineData("""{"format": "iommukit-machine", "version": 1, "devices": [{"address": "00:01.0", "vendor": "0x1", "device": "0x2", "class": "0x3"}, {"address": "0000:00:01.0", "vendor": "0x1", "device": "0x2", "class": "0x3"}]}""", "$.devices[1].address: 0000:00:01.0 appears twice")]
    [InlineData("""{"format": "iommukit-machine", "version": 1, "devices": [{"address": "00:01.0", "config": "abc"}]}""", "$.devices[0].config")]
    [InlineData("""{"format": "iommukit-machine", "version": 1, "devices": [], "kernel_groups": [{"id": 1}, {"id": 1}]}""", "$.kernel_groups[1].id")]
    [InlineData("""{"format": "iommukit-machine", "version": 1, "devices": [{"address": "00:01.0", "vendor": "0x1", "device": "0x2", "class": "0x3"}], "kernel_groups": [{"id": 1, "devices": ["00:01.0", "0000:00:01.0"]}]}""", "$.kernel_groups[0].devices: 0000:00:01.0 is in more than one place of kernel_groups")]
    [InlineData("""{"format": "iommukit-machine", "version": 1, "devices": [{"address": "00:01.0", "vendor": "0x1", "device": "0x2", "class": "0x3"}], "kernel_groups": [{"id": 1, "devices": ["00:01.0"]}, {"id": 2, "devices": ["00:01.0"]}]}""", "$.kernel_groups[1].devices: 0000:00:01.0 is in more than one place")]
    [InlineData("""{"format": "iommukit-machine", "version": 1, "devices": [], "kernel_groups": [{"id": 1, "reserved_regions": [{"start": "0x10", "end": "0x1", "type": "msi"}]}]}""", "is below start")]
    public void SemanticErrorsNameTheJsonPathAndTheRule(string json, string expected)
    {
        var ex = Assert.Throws<InputException>(() => MachineJson.Read(Encoding.UTF8.GetBytes(json), "m.json"));
        Assert.StartsWith("m.json: ", ex.Message);
        Assert.Contains(expected, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void SyntaxErrorsNameTheLine()
    {
        var ex = Assert.Throws<InputException>(() => MachineJson.Read(Encoding.UTF8.GetBytes("{\n \"format\": \"iommukit-machine\",\n \"version\": 1,\n \"devices\": [ }\n"), "m.json"));
        Assert.StartsWith("m.json:4: ", ex.Message);
        Assert.Contains("not valid JSON", ex.Message);
    }

    [Fact]
    public void ConfigBytesThatDisagreeWithAnExplicitFieldAreRejected()
    {
        var m = MachineSource.Load(Fixtures.OracleTarball("a_rootcomplex"));
        string json = MachineJson.ToJson(m).Replace("\"pcie_type\": \"rc_integrated_endpoint\"", "\"pcie_type\": \"endpoint\"");
        var ex = Assert.Throws<InputException>(() => MachineJson.Read(Encoding.UTF8.GetBytes(json), "m.json"));
        Assert.Contains(".pcie_type: \"endpoint\" disagrees with the config bytes (rc_integrated_endpoint)", ex.Message);
    }

    [Fact]
    public void ExplicitIdsWinOverConfigBytesLikeTheKernelsViewOfAVirtualFunction()
    {
        var m = MachineSource.Load(Fixtures.OracleTarball("a_rootcomplex"));
        string json = MachineJson.ToJson(m).Replace("\"vendor\": \"0x8086\"", "\"vendor\": \"0x8087\"");
        var back = MachineJson.Read(Encoding.UTF8.GetBytes(json), "m.json");
        Assert.Contains(back.Topology.Devices, d => d.VendorId == 0x8087);
    }

    [Fact]
    public void DeepNestingIsRejectedNotRecursedInto()
    {
        string json = new string('[', 10_000) + new string(']', 10_000);
        var ex = Assert.Throws<InputException>(() => MachineJson.Read(Encoding.UTF8.GetBytes(json), "deep.json"));
        Assert.Contains("not valid JSON", ex.Message);
    }

    [Fact]
    public void MachineSourceDetectsJsonByItsLeadingBrace()
    {
        var m = MachineSource.Load(Fixtures.OracleTarball("a_rootcomplex"));
        var bytes = Encoding.UTF8.GetBytes("\n  " + MachineJson.ToJson(m));
        Assert.Equal(MachineSourceKind.Json, MachineSource.Detect(bytes));
        SourceTestKit.AssertSameMachine(m, MachineSource.LoadBytes(bytes, "a.json"));
    }
}
