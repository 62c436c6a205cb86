using IommuKit.Host;
using IommuKit.Grouping;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Grouping;

/// <summary>What-ifs (changed command line, moved card) and the partition diff.</summary>
public class WhatIfTests
{
    private static Machine Mixed() => MachineSource.Load(Fixtures.OracleTarball("g_k61_intel_mixed"));

    [Fact]
    public void AcsOverrideDownstreamSplitsTheGroupOfARootPortWithoutAcsOnAProxmoxKernel()
    {
        var m = MachineRewrite.WithCommandLine(Mixed(), "console=ttyS0 intel_iommu=on iommu=nopt panic=-1");
        var (today, then, diff) = GroupingWhatIf.WithCommandLine(m, "intel_iommu=on pcie_acs_override=downstream",
            new GroupingOptions { KernelCarriesAcsOverride = true });
        Assert.True(today.Together("00:08.0", "02:00.0"));
        Assert.False(then.Together("00:08.0", "02:00.0"));
        var split = diff.Of(GroupChangeKind.Split).ToList();
        Assert.Contains(split, c => c.Before.Single().Devices.Any(d => d.Address == PciAddress.Parse("02:00.0")));
        Assert.False(diff.NothingChanged);
    }

    [Fact]
    public void AcsOverrideOnTheStockDebianKernelBuysNothingAndTheDiffSaysSo()
    {
        var (_, then, diff) = GroupingWhatIf.WithCommandLine(Mixed(), "intel_iommu=on pcie_acs_override=downstream,multifunction");
        Assert.True(diff.NothingChanged);
        Assert.Contains(then.Messages, m => m.Contains("is ignored"));
    }

    [Fact]
    public void DisablingAcsRedirectOnAnIsolatedRootPortMergesItWithItsEndpoint()
    {
        var (_, then, diff) = GroupingWhatIf.WithCommandLine(Mixed(), "intel_iommu=on pci=disable_acs_redir=00:06.0");
        Assert.True(then.Together("00:06.0", "01:00.0"));
        Assert.Contains(diff.Of(GroupChangeKind.Merged), c => c.After.Single().Devices.Any(d => d.Address == PciAddress.Parse("01:00.0")));
    }

    [Fact]
    public void IntelIommuOffRemovesEveryGroup()
    {
        var (_, then, diff) = GroupingWhatIf.WithCommandLine(Mixed(), "intel_iommu=off");
        Assert.Empty(then.Groups);
        Assert.All(diff.Changes, c => Assert.Equal(GroupChangeKind.Removed, c.Kind));
    }

    [Fact]
    public void MovingACardFromARootPortWithoutAcsToOneWithAcsSplitsItFromThePort()
    {
        var m = Mixed();
        // 02:00.0 (e1000e) sits below 00:08.0 (no ACS); 00:06.0 has ACS and holds 01:00.0 at slot 0: use slot 1.
        var (today, then, diff, map) = GroupingWhatIf.MoveSlot(m, PciAddress.Parse("02:00.0"), PciAddress.Parse("00:06.0"), newDevice: 1);
        var moved = map[PciAddress.Parse("02:00.0")];
        Assert.Equal(PciAddress.Parse("01:01.0"), moved);
        Assert.True(today.Together("00:08.0", "02:00.0"));
        var g = then.GroupOf(moved)!;
        Assert.Single(g.Devices);
        Assert.Null(then.GroupOf(PciAddress.Parse("02:00.0")));
        Assert.Contains(diff.Of(GroupChangeKind.Split), c => c.Before.Single().Devices.Any(d => d.Address == PciAddress.Parse("00:08.0")));
    }

    [Fact]
    public void MovingABridgeMovesEverythingBelowIt()
    {
        var m = Mixed();
        // The PCIe-to-PCI bridge 0a:00.0 with 0b:01.0 and 0b:02.0 behind it moves below root port 00:06.0.
        var moved = MachineRewrite.MoveSlot(m, PciAddress.Parse("0a:00.0"), PciAddress.Parse("00:06.0"), 3, out var map);
        Assert.Equal(m.Topology.Count, moved.Topology.Count);
        var nb = moved.Topology[map[PciAddress.Parse("0a:00.0")]];
        Assert.Equal(PciAddress.Parse("00:06.0"), nb.Parent!.Address);
        Assert.Equal(2, PciTopology.Below(nb).Count());
        var r = ModelGrouping.Compute(moved);
        Assert.True(r.Together(map[PciAddress.Parse("0a:00.0")].ToString(), map[PciAddress.Parse("0b:02.0")].ToString()));
    }

    [Fact]
    public void MovingACardIntoAnOccupiedSlotIsBadInput()
    {
        Assert.Throws<InputException>(() => MachineRewrite.MoveSlot(Mixed(), PciAddress.Parse("02:00.0"), PciAddress.Parse("00:06.0"), 0, out _));
        Assert.Throws<InputException>(() => MachineRewrite.MoveSlot(Mixed(), PciAddress.Parse("02:00.0"), PciAddress.Parse("00:02.0"), 0, out _));
    }

    [Fact]
    public void DiffOfTheSameTopologyOnTwoKernelsFindsNothingChanged()
    {
        var a = ModelGrouping.Compute(MachineSource.Load(Fixtures.OracleTarball("g_k61_intel_mixed")));
        var b = ModelGrouping.Compute(MachineSource.Load(Fixtures.OracleTarball("g_k612_intel_mixed")));
        var diff = PartitionDiff.Compute(a, b);
        Assert.True(diff.NothingChanged);
        Assert.Equal(a.Groups.Select(g => g.Fingerprint), b.Groups.Select(g => g.Fingerprint));
    }

    [Fact]
    public void DiffOfDifferentMachinesReportsAddedAndRemovedGroups()
    {
        var a = ModelGrouping.Compute(MachineSource.Load(Fixtures.OracleTarball("e_strict")));
        var b = ModelGrouping.Compute(MachineSource.Load(Fixtures.OracleTarball("b_rootports")));
        var diff = PartitionDiff.Compute(a, b);
        Assert.False(diff.NothingChanged);
        Assert.Contains(diff.Changes, c => c.Kind == GroupChangeKind.Unchanged); // the q35 board functions stay
        Assert.Contains(diff.Changes, c => c.Kind is GroupChangeKind.Added or GroupChangeKind.Reshaped);
    }
}
