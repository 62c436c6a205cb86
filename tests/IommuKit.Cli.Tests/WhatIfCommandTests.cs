using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

public class WhatIfCommandTests
{
    [Fact]
    public void MovingACardFromANonAcsPortToAnAcsPortSplitsItsGroup()
    {
        // 04:00.0 shares group 9 with root ports 00:0c.0/.1 (no ACS); 00:0a.0 is a root port with ACS.
        var r = Run("whatif", "--move", "04:00.0=00:0a.0", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        Assert.Equal(0, r.Code);
        AssertGolden("whatif-g_k612_intel_mixed-move.txt", r.Out);
        Assert.Contains("00:0a.0 already has one; the model places the card beside it as device 01", r.Err);
    }

    [Fact]
    public void MoveInJsonMapsTheAddressesAndListsTheSplit()
    {
        var r = Run("whatif", "--json", "--move", "04:00.0=00:0a.0", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        Assert.Equal(0, r.Code);
        var j = r.Json;
        Assert.Equal("0000:03:01.0", j.GetProperty("change").GetProperty("move").GetProperty("addresses").GetProperty("0000:04:00.0").GetString());
        var change = Assert.Single(j.GetProperty("changes").EnumerateArray());
        Assert.Equal("split", change.GetProperty("kind").GetString());
        Assert.Equal(18, j.GetProperty("unchanged").GetInt32());
        Assert.Contains(j.GetProperty("groups_after").EnumerateArray(),
            g => g.GetProperty("devices").GetArrayLength() == 1 && g.GetProperty("devices")[0].GetProperty("address").GetString() == "0000:03:01.0");
    }

    [Fact]
    public void AcsOverrideOnAStockKernelBuysNothingAndSaysTheKernelIgnoresIt()
    {
        var r = Run("whatif", "--cmdline", "intel_iommu=on pcie_acs_override=downstream,multifunction",
            "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        Assert.Equal(1, r.Code);
        Assert.Contains("This change buys nothing: every group keeps exactly its members.", r.Lines);
        Assert.Contains("pcie_acs_override", r.Err);
        Assert.Contains("ignored", r.Err);
    }

    [Fact]
    public void AcsOverrideOnAStockKernelAlsoShowsWhatAPatchedKernelWouldSplit()
    {
        // c_switch: root port 00:07.0 has no ACS capability, so it, the switch below it and the NIC share a group;
        // downstream=override claims isolation for ports without ACS, which only a patched kernel honours.
        var r = Run("whatif", "--json", "--cmdline", "intel_iommu=on pcie_acs_override=downstream",
            "--source", Oracle("c_switch"), "--pci-ids", "none");
        Assert.Equal(1, r.Code);
        Assert.True(r.Json.GetProperty("buys_nothing").GetBoolean());
        var patched = r.Json.GetProperty("with_acs_override_patch").GetProperty("changes").EnumerateArray().ToList();
        Assert.Contains(patched, c => c.GetProperty("kind").GetString() == "split" &&
            c.GetProperty("before")[0].GetProperty("devices").EnumerateArray().Any(d => d.GetString() == "0000:00:07.0"));

        var text = Run("whatif", "--cmdline", "intel_iommu=on pcie_acs_override=downstream",
            "--source", Oracle("c_switch"), "--pci-ids", "none");
        Assert.Contains("On a kernel that carries the pcie_acs_override patch (Proxmox -pve, zen, liquorix, tkg):", text.Lines);
        Assert.Contains(text.Lines, l => l.StartsWith("  split: ", StringComparison.Ordinal));
    }

    [Fact]
    public void ChangeWithoutAnIgnoredOverrideHasNoPatchedKernelSection()
    {
        // No pcie_acs_override= in the change: nothing is ignored, so there is no "patched kernel" answer to add.
        var r = Run("whatif", "--json", "--cmdline", "console=ttyS0 intel_iommu=on iommu=nopt panic=-1 pci=disable_acs_redir=0000:00:06.0",
            "--source", Oracle("b_rootports"), "--pci-ids", "none");
        Assert.False(r.Json.TryGetProperty("with_acs_override_patch", out _));
    }

    [Fact]
    public void DisablingAcsRedirectOnARootPortMergesTheGroupBelowIt()
    {
        // b_rootports' 00:06.0 is a root port with ACS above 01:00.0; h_disable_acs_redir booted the same port with
        // pci=disable_acs_redir=0000:00:06.0 and the kernel then put 00:06.0 and 01:00.0 in one group.
        var r = Run("whatif", "--json", "--cmdline", "console=ttyS0 intel_iommu=on iommu=nopt panic=-1 pci=disable_acs_redir=0000:00:06.0",
            "--source", Oracle("b_rootports"), "--pci-ids", "none");
        Assert.Equal(0, r.Code);
        var changes = r.Json.GetProperty("changes").EnumerateArray().ToList();
        var merged = Assert.Single(changes);
        Assert.Equal("merged", merged.GetProperty("kind").GetString());
        Assert.Equal(["0000:00:06.0", "0000:01:00.0"], merged.GetProperty("after")[0].GetProperty("devices").EnumerateArray().Select(d => d.GetString()));
        Assert.False(r.Json.GetProperty("buys_nothing").GetBoolean());
    }

    [Fact]
    public void TurningTheIommuOffLeavesNoGroupsAndExitsTwo()
    {
        var r = Run("whatif", "--cmdline", "intel_iommu=off", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        Assert.Equal(2, r.Code);
        Assert.Contains(r.Lines, l => l.StartsWith("After the change no IOMMU would be active (intel_iommu=off"));
    }

    [Fact]
    public void WithoutAChangeItIsAUsageError() =>
        Assert.Equal(4, Run("whatif", "--source", Oracle("g_k612_intel_mixed")).Code);

    [Theory]
    [InlineData("04:00.0")]
    [InlineData("04:00.0=")]
    [InlineData("04:00.0=00:02.0")]
    [InlineData("1f:00.0=00:0a.0")]
    public void MalformedOrImpossibleMoveIsBadInput(string move) =>
        Assert.Equal(3, Run("whatif", "--move", move, "--source", Oracle("g_k612_intel_mixed")).Code);

    [Fact]
    public void MovingACardToThePortItIsAlreadyBelowIsBadInputNotACopyBesideItself()
    {
        // Before the fix, 04:00.0 "moved" below its own port 00:0c.0 was placed beside itself as device 01.
        var r = Run("whatif", "--move", "04:00.0=00:0c.0", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        Assert.Equal(3, r.Code);
        Assert.Equal("iommu: --move: 0000:04:00.0 is already on the bus below 0000:00:0c.0\n", r.Err);
    }
}
