using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

public class ExplainCommandTests
{
    [Fact]
    public void DeviceBehindAPcieToPciBridgeIsExplainedByTheBridgesAlias()
    {
        var r = Run("explain", "0b:02.0", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", SampleIds);
        Assert.Equal(0, r.Code);
        AssertGolden("explain-g_k612_intel_mixed-0b_02.0.txt", r.Out);
    }

    [Fact]
    public void MultifunctionFunctionWithoutAcsIsExplainedBySameSlotSharing()
    {
        var r = Run("explain", "00:1f.2", "--json", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", SampleIds);
        Assert.Equal(0, r.Code);
        AssertGolden("explain-g_k612_intel_mixed-00_1f.2.json", r.Out);
        Assert.Contains(r.Json.GetProperty("steps").EnumerateArray(), s => s.GetProperty("kind").GetString() == "same-slot-function");
    }

    [Fact]
    public void EveryStepNamesADeviceOfTheMachine()
    {
        var r = Run("explain", "08:00.0", "--json", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        var steps = r.Json.GetProperty("steps").EnumerateArray().ToList();
        Assert.NotEmpty(steps);
        var addresses = Run("groups", "--json", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none").Json
            .GetProperty("groups").EnumerateArray().SelectMany(g => g.GetProperty("devices").EnumerateArray())
            .Select(d => d.GetProperty("address").GetString()).ToHashSet();
        Assert.All(steps, s => Assert.Contains(s.GetProperty("device").GetString(), addresses));
    }

    [Fact]
    public void WithoutAnIommuTheChainIsThePredictionAndExitIsTwo()
    {
        var r = Run("explain", "00:04.1", "--source", Oracle("f_no_viommu"), "--pci-ids", "none");
        Assert.Equal(2, r.Code);
        Assert.Contains(r.Lines, l => l.StartsWith("No active IOMMU") && l.EndsWith("The chain below is the prediction with the IOMMU enabled."));
        Assert.Contains(r.Lines, l => l.StartsWith("Group ") && l.Contains("(predicted by the model)"));
    }

    [Theory]
    [InlineData("0b:1f.7")]
    [InlineData("zz:zz.z")]
    public void UnknownOrMalformedAddressIsBadInput(string address) =>
        Assert.Equal(3, Run("explain", address, "--source", Oracle("g_k612_intel_mixed")).Code);
}
