using System.Text.Json;
using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

public class VfioCheckCommandTests
{
    /// <summary>Drivers that do not take DMA ownership on 5.19+ kernels (every oracle machine runs 6.1 or 6.12).</summary>
    private static bool HarmlessOnModernKernels(string? driver) => driver is null or "vfio-pci" or "pci-stub" or "pcieport";

    [Theory]
    [MemberData(nameof(MachinesWithGroups), MemberType = typeof(CliRunner))]
    public void EveryKernelGroupIsViableExactlyWhenNoMemberHasADmaApiDriverAndExitsByItsVerdict(string machine)
    {
        using var exp = JsonDocument.Parse(File.ReadAllText(OracleExpected(machine)));
        var driverOf = exp.RootElement.GetProperty("devices").EnumerateArray().ToDictionary(
            d => d.GetProperty("bdf").GetString()!,
            d => d.GetProperty("driver").ValueKind == JsonValueKind.Null ? null : d.GetProperty("driver").GetString());
        foreach (var g in exp.RootElement.GetProperty("groups").EnumerateArray())
        {
            int id = g.GetProperty("id").GetInt32();
            bool expected = g.GetProperty("devices").EnumerateArray().All(d => HarmlessOnModernKernels(driverOf[d.GetString()!]));
            var r = Run("vfio-check", "--group", id.ToString(), "--json", "--source", Oracle(machine), "--pci-ids", "none");
            Assert.Equal(expected, r.Json.GetProperty("viable").GetBoolean());
            string verdict = r.Json.GetProperty("verdict").GetString()!;
            Assert.Equal(verdict is "ready" or "needs-binding" ? 0 : 1, r.Code);
            // Ready is exactly "viable now, and nothing of the host's in the group".
            if (verdict == "ready") Assert.True(expected);
            if (verdict == "needs-binding") Assert.False(expected);
            Assert.Equal("dma-ownership", r.Json.GetProperty("rule").GetString());
            foreach (var d in r.Json.GetProperty("devices").EnumerateArray())
                Assert.Equal(HarmlessOnModernKernels(driverOf[d.GetProperty("address").GetString()!]) ? "ok" : "blocking", d.GetProperty("status").GetString());
        }
    }

    [Fact]
    public void MultifunctionNicWithDriversBoundIsNotViableAndTheFixBindsBothFunctions()
    {
        var r = Run("vfio-check", "00:04.0", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", SampleIds);
        Assert.Equal(1, r.Code);
        AssertGolden("vfio-check-g_k612_intel_mixed-00_04.0.txt", r.Out);
    }

    [Fact]
    public void DeviceBehindARootPortWithoutAcsListsTheHostsLossesAndTheSlotFix()
    {
        var r = Run("vfio-check", "04:00.0", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", SampleIds);
        Assert.Equal(1, r.Code);
        AssertGolden("vfio-check-g_k612_intel_mixed-04_00.0.txt", r.Out);
    }

    [Fact]
    public void GroupOfDevicesBoundToPciStubIsViableButSharesTheLpcBridgeAndSmbus()
    {
        var r = Run("vfio-check", "--group", "9", "--source", Oracle("g_k612_virtio_pt"), "--pci-ids", SampleIds);
        Assert.Equal(1, r.Code);
        Assert.Contains(r.Lines, l => l.StartsWith("Verdict: SHARES GROUP: group 9 also holds 00:1f.0, 00:1f.3", StringComparison.Ordinal));
        AssertGolden("vfio-check-g_k612_virtio_pt-group9.txt", r.Out);
    }

    [Fact]
    public void DriverlessSataGroupWithARelaxableRegionIsViableButSharesTheLpcBridgeInJson()
    {
        var r = Run("vfio-check", "00:1f.2", "--json", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", SampleIds);
        Assert.Equal(1, r.Code);
        Assert.True(r.Json.GetProperty("viable").GetBoolean());
        Assert.Equal("shares-group", r.Json.GetProperty("verdict").GetString());
        AssertGolden("vfio-check-g_k612_intel_mixed-00_1f.2.json", r.Out);
    }

    [Fact]
    public void NoIommuExitsTwoAndStillShowsThePredictedVerdict()
    {
        var r = Run("vfio-check", "01:00.0", "--source", Oracle("f_no_viommu"), "--pci-ids", SampleIds);
        Assert.Equal(2, r.Code);
        Assert.Contains(r.Lines, l => l.StartsWith("No active IOMMU: the kernel made no IOMMU groups"));
        Assert.Contains(r.Lines, l => l.StartsWith("Verdict: NO IOMMU: 01:00.0"));
        var j = Run("vfio-check", "01:00.0", "--json", "--source", Oracle("f_no_viommu"), "--pci-ids", "none");
        Assert.Equal(2, j.Code);
        Assert.Equal("no-iommu", j.Json.GetProperty("verdict").GetString());
        Assert.False(j.Json.GetProperty("viable").GetBoolean());
    }

    [Fact]
    public void TheVirtioIommuFunctionItselfIsInNoGroupAndNotViable()
    {
        var r = Run("vfio-check", "00:1d.0", "--source", Oracle("g_k612_virtio_pt"), "--pci-ids", "none");
        Assert.Equal(1, r.Code);
        Assert.Contains(r.Lines, l => l == "Verdict: NOT ASSIGNABLE: 0000:00:1d.0 is in no IOMMU group: no IOMMU unit manages it, so VFIO cannot take it.");
    }

    [Fact]
    public void DeviceInNoGroupHasTheSameJsonFieldsAsAnyVerdict()
    {
        // docs/json.md: fields are never omitted. The no-group answer used to leave out rule, devices, host_losses,
        // fixes and notes.
        var inGroup = Run("vfio-check", "00:04.0", "--json", "--source", Oracle("g_k612_virtio_pt"), "--pci-ids", "none").Json;
        var r = Run("vfio-check", "00:1d.0", "--json", "--source", Oracle("g_k612_virtio_pt"), "--pci-ids", "none");
        Assert.Equal(1, r.Code);
        var j = r.Json;
        Assert.Equal(inGroup.EnumerateObject().Select(p => p.Name), j.EnumerateObject().Select(p => p.Name));
        Assert.Equal(JsonValueKind.Null, j.GetProperty("group").ValueKind);
        Assert.Equal(JsonValueKind.Null, j.GetProperty("rule").ValueKind);
        Assert.Equal(0, j.GetProperty("devices").GetArrayLength());
        Assert.Contains("no IOMMU unit manages it", Assert.Single(j.GetProperty("problems").EnumerateArray()).GetString());
    }

    [Theory]
    [InlineData("0b:1f.7")]
    [InlineData("not-an-address")]
    public void UnknownOrMalformedAddressIsBadInput(string address)
    {
        var r = Run("vfio-check", address, "--source", Oracle("g_k612_intel_mixed"));
        Assert.Equal(3, r.Code);
        Assert.Equal("", r.Out);
        Assert.StartsWith("iommu: ", r.Err);
    }

    [Fact]
    public void UnknownGroupIsBadInput() =>
        Assert.Equal(3, Run("vfio-check", "--group", "42", "--source", Oracle("g_k612_intel_mixed")).Code);

    [Fact]
    public void AddressAndGroupTogetherOrNeitherIsAUsageError()
    {
        Assert.Equal(4, Run("vfio-check", "--source", Oracle("g_k612_intel_mixed")).Code);
        Assert.Equal(4, Run("vfio-check", "00:02.0", "--group", "2", "--source", Oracle("g_k612_intel_mixed")).Code);
    }
}
