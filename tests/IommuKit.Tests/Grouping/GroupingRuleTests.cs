using IommuKit.Host;
using IommuKit.Grouping;
using IommuKit.Pci;
using Xunit;

namespace IommuKit.Tests.Grouping;

/// <summary>One test per rule of spec 2.2-2.6 on small hand-built topologies.</summary>
public class GroupingRuleTests
{
    [Fact]
    public void RootPortWithoutAcsSharesItsGroupWithEverythingBelow()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1).Endpoint("01:00.0").Group();
        Assert.True(r.Together("00:1c.0", "01:00.0"));
        var steps = r.Explain(PciAddress.Parse("01:00.0"));
        Assert.Contains(steps, s => s.Kind == GroupStepKind.AcsNotIsolated && s.Device == PciAddress.Parse("00:1c.0")
            && s.Text.Contains("00:1c.0 is a root port without an ACS capability, so everything below it shares its group"));
    }

    [Fact]
    public void RootPortWithAcsCapabilityIsolatesBecauseTheKernelEnablesIt()
    {
        // Control all off as firmware left it: the kernel's enabling step (IOMMU active) sets SV|RR|CR|UF.
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsCapOnly).Endpoint("01:00.0").Group();
        Assert.False(r.Together("00:1c.0", "01:00.0"));
        Assert.Equal(AcsFlags.Required, r.Context!.Acs.EffectiveControl(r.Machine.Topology[PciAddress.Parse("00:1c.0")]));
        Assert.Contains(r.Explain(PciAddress.Parse("01:00.0")), s => s.Kind == GroupStepKind.AcsIsolated && s.Text.Contains("SV|RR|CR|UF enabled"));
    }

    [Fact]
    public void RootPortMissingOnlyRequestRedirectIsNamedInTheExplanation()
    {
        // Snapshot with the IOMMU off: firmware left SV|CR|UF on. config_acs clears RR only, everything else stays firmware.
        var cap = AcsFlags.SV | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF;
        var t = T.New().RootPort("00:1c.4", sec: 1, acs: (cap, AcsFlags.SV | AcsFlags.CR | AcsFlags.UF)).Endpoint("01:00.0");
        t.Units.Clear();
        t.Cmdline = "intel_iommu=off";
        var r = t.Group("intel_iommu=on pci=config_acs=0xx@00:1c.4");
        Assert.True(r.IommuActive);
        Assert.True(r.Together("00:1c.4", "01:00.0"));
        Assert.Contains(r.Explain(PciAddress.Parse("01:00.0")), s => s.Text.Contains("00:1c.4 is a root port without ACS P2P Request Redirect enabled, so everything below it shares its group"));
    }

    [Fact]
    public void MissingCapabilityBitsCountAsHardWiredExceptEgressControl()
    {
        // Capability lists only RR|CR (plus EC): the check reduces to RR and CR enabled (spec 2.5 worked example).
        var cap = AcsFlags.RR | AcsFlags.CR | AcsFlags.EC | AcsFlags.DT;
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: (cap, AcsFlags.None)).Endpoint("01:00.0").Group();
        Assert.False(r.Together("00:1c.0", "01:00.0"));
    }

    [Fact]
    public void MultifunctionEndpointWithoutAcsSharesOneGroup()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn)
            .Endpoint("01:00.0", mf: true).Endpoint("01:00.1").Group();
        Assert.True(r.Together("01:00.0", "01:00.1"));
        Assert.False(r.Together("00:1c.0", "01:00.0"));
        Assert.Contains(r.Explain(PciAddress.Parse("01:00.1")), s => s.Kind == GroupStepKind.SameSlotFunction && s.Text.StartsWith("01:00.0 is another function of the multifunction device 01:00.1"));
    }

    [Fact]
    public void MultifunctionEndpointWithAcsGetsAGroupPerFunction()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn)
            .Endpoint("01:00.0", mf: true, acs: T.AcsCapOnly).Endpoint("01:00.1", acs: T.AcsCapOnly).Group();
        Assert.False(r.Together("01:00.0", "01:00.1"));
    }

    [Fact]
    public void SingleFunctionEndpointsOnTheRootBusGetSeparateGroups()
    {
        var r = T.New().Endpoint("00:02.0", type: PcieType.RcEnd, vendor: T.Other).Endpoint("00:03.0", type: PcieType.RcEnd).Conventional("00:04.0").Group();
        Assert.Equal(3, r.Groups.Count);
        Assert.Contains(r.Explain(PciAddress.Parse("00:02.0")), s => s.Kind == GroupStepKind.RootBus);
    }

    [Fact]
    public void ConventionalMultifunctionFunctionsOnTheRootBusShareAGroup()
    {
        var r = T.New().Conventional("00:1f.0", mf: true).Conventional("00:1f.2").Conventional("00:1f.3").Group();
        Assert.Single(r.Groups);
    }

    [Fact]
    public void NonIntelMultifunctionRcIntegratedEndpointsWithoutAcsShareAGroup()
    {
        var r = T.New().Endpoint("00:05.0", vendor: T.Other, mf: true, type: PcieType.RcEnd).Endpoint("00:05.1", vendor: T.Other, type: PcieType.RcEnd).Group();
        Assert.True(r.Together("00:05.0", "00:05.1"));
    }

    [Fact]
    public void PcieToPciBridgeAliasPutsTheBridgeAndEverythingBehindItInOneGroup()
    {
        var r = T.New().RootPort("00:1c.0", sec: 5, sub: 6, acs: T.AcsOn)
            .Dev("05:00.0", T.Qemu, 0x000e, PcieType.PciBridge, sec: 6)
            .Conventional("06:01.0").Conventional("06:02.0").Group();
        Assert.True(r.Together("05:00.0", "06:01.0"));
        Assert.True(r.Together("06:01.0", "06:02.0"));
        Assert.False(r.Together("00:1c.0", "05:00.0"));
        Assert.Contains(r.Explain(PciAddress.Parse("06:02.0")), s => s.Kind == GroupStepKind.BridgeAlias
            && s.Text.Contains("behind PCIe-to-PCI bridge 05:00.0, whose requests carry 06:00.0"));
    }

    [Fact]
    public void ConventionalPciBridgeTakesOwnershipOfRequestsBelowIt()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, sub: 2, acs: T.AcsOn)
            .Dev("01:00.0", 0x1b36, 0x0001, PcieType.None, sec: 2)
            .Conventional("02:01.0").Group();
        Assert.True(r.Together("01:00.0", "02:01.0"));
        Assert.Contains(r.Explain(PciAddress.Parse("02:01.0")), s => s.Text.Contains("behind conventional PCI bridge 01:00.0, whose requests carry 01:00.0"));
    }

    [Fact]
    public void SwitchDownstreamPortWithoutAcsGroupsWithItsEndpointsAndUpstreamPortStandsAlone()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, sub: 4, acs: T.AcsOn)
            .Dev("01:00.0", 0x104c, 0x8232, PcieType.Upstream, sec: 2, sub: 4)
            .Dev("02:00.0", 0x104c, 0x8233, PcieType.Downstream, sec: 3)
            .Dev("02:01.0", 0x104c, 0x8233, PcieType.Downstream, sec: 4)
            .Endpoint("03:00.0").Endpoint("04:00.0").Group();
        Assert.Equal("00:1c.0 | 01:00.0 | 02:00.0 03:00.0 | 02:01.0 04:00.0", r.Parts());
    }

    [Fact]
    public void RootPortWithoutAcsAboveASwitchPutsTheWholeSwitchInOneGroup()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, sub: 4)
            .Dev("01:00.0", 0x104c, 0x8232, PcieType.Upstream, sec: 2, sub: 4)
            .Dev("02:00.0", 0x104c, 0x8233, PcieType.Downstream, sec: 3, acs: T.AcsOn)
            .Dev("02:01.0", 0x104c, 0x8233, PcieType.Downstream, sec: 4, acs: T.AcsOn)
            .Endpoint("03:00.0").Endpoint("04:00.0").Group();
        Assert.Single(r.Groups);
        // The downstream ports have ACS but the path to the root does not: the explanation names the root port.
        Assert.Contains(r.Explain(PciAddress.Parse("03:00.0")), s => s.Device == PciAddress.Parse("00:1c.0") && s.Kind == GroupStepKind.AcsNotIsolated);
    }

    [Fact]
    public void MultifunctionRootPortsWithoutAcsShareOneGroupWithEverythingBelow()
    {
        var r = T.New().RootPort("00:0c.0", sec: 1, mf: true).RootPort("00:0c.1", sec: 2)
            .Endpoint("01:00.0").Endpoint("02:00.0").Group();
        Assert.Single(r.Groups);
    }

    [Fact]
    public void MultifunctionRootPortsWithAcsAreSeparate()
    {
        var r = T.New().RootPort("00:0c.0", sec: 1, mf: true, acs: T.AcsCapOnly).RootPort("00:0c.1", sec: 2, acs: T.AcsCapOnly)
            .Endpoint("01:00.0").Endpoint("02:00.0").Group();
        Assert.Equal(4, r.Groups.Count);
    }

    [Fact]
    public void UnmanagedDeviceGetsNoGroupAndDoesNotTakeANumber()
    {
        var r = T.New().Endpoint("00:02.0").Dev("00:1d.0", 0x1af4, 0x1057, PcieType.None, unit: null).Endpoint("00:1e.0").Group();
        Assert.Null(r.GroupOf(PciAddress.Parse("00:1d.0")));
        Assert.Equal([0, 1], r.Groups.Select(g => g.Id));
        Assert.Equal(GroupStepKind.NoGroup, Assert.Single(r.Explain(PciAddress.Parse("00:1d.0"))).Kind);
    }

    [Fact]
    public void GroupsAreNumberedInProbeOrderWithDevicesOfABusBeforeItsChildBuses()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn).Endpoint("01:00.0").Conventional("00:1f.0").Group();
        Assert.Equal(0, r.GroupOf(PciAddress.Parse("00:1c.0"))!.Id);
        Assert.Equal(1, r.GroupOf(PciAddress.Parse("00:1f.0"))!.Id);
        Assert.Equal(2, r.GroupOf(PciAddress.Parse("01:00.0"))!.Id);
    }

    [Fact]
    public void FingerprintDependsOnMembersAndIdsButNotOnGroupNumbers()
    {
        var a = T.New().Conventional("00:1f.0").RootPort("00:1c.0", sec: 1).Endpoint("01:00.0").Group();
        var b = T.New().Conventional("00:02.0").Conventional("00:1f.0").RootPort("00:1c.0", sec: 1).Endpoint("01:00.0").Group();
        var ga = a.GroupOf(PciAddress.Parse("01:00.0"))!;
        var gb = b.GroupOf(PciAddress.Parse("01:00.0"))!;
        Assert.NotEqual(ga.Id, gb.Id);
        Assert.Equal(ga.Fingerprint, gb.Fingerprint);
        Assert.Matches("^[0-9a-f]{12}$", ga.Fingerprint);
        var c = T.New().RootPort("00:1c.0", sec: 1).Endpoint("01:00.0", device: 0x0099).Group();
        Assert.NotEqual(ga.Fingerprint, c.GroupOf(PciAddress.Parse("01:00.0"))!.Fingerprint);
    }

    [Fact]
    public void PortWithoutExtendedConfigSpaceMarksItsGroupAsAGuess()
    {
        var r = T.New().Dev("00:1c.0", T.Qemu, 0x000c, PcieType.RootPort, sec: 1, vis: ConfigVisibility.NoExtended).Endpoint("01:00.0").Group();
        var g = r.GroupOf(PciAddress.Parse("01:00.0"))!;
        Assert.True(g.UnknownFacts);
        Assert.Contains(g.UnknownFactDevices, d => d.Address == PciAddress.Parse("00:1c.0"));
        Assert.Contains(r.Explain(PciAddress.Parse("01:00.0")), s => s.Kind == GroupStepKind.UnknownFacts);
    }

    [Fact]
    public void PcieFunctionBelowAPcieToPciBridgeHasNoExtendedConfigAndIsNotAGuess()
    {
        // The kernel marks buses below a PCIe-to-PCI bridge NO_EXTCFG (pci_bridge_child_ext_cfg_accessible): a 256-byte
        // config of a multifunction PCIe endpoint there is complete, and its functions have no ACS.
        var r = T.New().RootPort("00:1c.0", sec: 1, sub: 2, acs: T.AcsOn)
            .Dev("01:00.0", T.Qemu, 0x000e, PcieType.PciBridge, sec: 2)
            .Dev("02:01.0", T.Intel, 0x10d3, PcieType.Endpoint, mf: true, vis: ConfigVisibility.NoExtended)
            .Dev("02:01.1", T.Intel, 0x10d3, PcieType.Endpoint, vis: ConfigVisibility.NoExtended).Group();
        Assert.All(r.Groups, g => Assert.False(g.UnknownFacts));
        Assert.True(r.Together("01:00.0", "02:01.1"));
        var ep = r.Machine.Topology[PciAddress.Parse("02:01.0")];
        Assert.False(r.Context!.Acs.Unknown[ep.ProbeIndex]);
        Assert.DoesNotContain("guess", Wording.NotIsolated(ep, r.Context));
        // The same 256-byte view below a root port is a missing fact.
        var r2 = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn).Dev("01:00.0", T.Intel, 0x10d3, PcieType.Endpoint, mf: true, vis: ConfigVisibility.NoExtended).Group();
        Assert.True(r2.Context!.Acs.Unknown[0 + r2.Machine.Topology[PciAddress.Parse("01:00.0")].ProbeIndex]);
    }

    [Fact]
    public void CompleteFactsDoNotMarkGroupsAsGuesses()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn).Endpoint("01:00.0").Group();
        Assert.All(r.Groups, g => Assert.False(g.UnknownFacts));
    }

    [Fact]
    public void AcsPathEnabledWithAnEndDeviceStopsThere()
    {
        var m = T.New().RootPort("00:1c.0", sec: 1, sub: 3)
            .Dev("01:00.0", 0x104c, 0x8232, PcieType.Upstream, sec: 2, sub: 3, acs: T.AcsOn, mf: true)
            .Dev("02:00.0", 0x104c, 0x8233, PcieType.Downstream, sec: 3, acs: T.AcsOn).Build();
        var ctx = GroupingContext.Create(m, KernelCommandLine.Parse("intel_iommu=on"), true);
        var dp = m.Topology[PciAddress.Parse("02:00.0")];
        var up = m.Topology[PciAddress.Parse("01:00.0")];
        Assert.True(PciGrouping.AcsPathEnabled(dp, up, AcsFlags.Required, ctx));
        Assert.False(PciGrouping.AcsPathEnabled(dp, null, AcsFlags.Required, ctx)); // the root port has no ACS
    }

    [Fact]
    public void DevicesBehindAVmdControllerJoinTheControllersGroup()
    {
        // pci_real_dma_dev: functions in VMD domains (>= 0x10000) issue DMA with the VMD endpoint's requester ID.
        var r = T.New().Endpoint("00:0e.0", vendor: T.Intel, device: 0x9a0b)
            .RootPort("10000:e0:06.0", sec: 0xe1, acs: T.AcsOn).Endpoint("10000:e1:00.0").Endpoint("00:1f.0").Group();
        Assert.True(r.Together("00:0e.0", "10000:e0:06.0"));
        Assert.True(r.Together("00:0e.0", "10000:e1:00.0"));
        Assert.False(r.Together("00:0e.0", "00:1f.0"));
        Assert.Contains(r.Explain(PciAddress.Parse("10000:e1:00.0")), s => s.Kind == GroupStepKind.RealDmaDevice && s.Text.Contains("VMD controller 00:0e.0"));
    }

    [Fact]
    public void VirtualFunctionsAreNeverMultifunctionAndAreGroupedAfterBootInEnableOrder()
    {
        var sriov = new SriovInfo(0x120, 8, 2, 1, 1, 0x0011);
        var t = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn).RootPort("00:1d.0", sec: 2, acs: T.AcsOn)
            .Dev("01:00.0", T.Qemu, 0x0010, PcieType.Endpoint).Dev("01:00.1", T.Qemu, 0x0011, PcieType.Endpoint).Dev("01:00.2", T.Qemu, 0x0011, PcieType.Endpoint)
            .Dev("02:00.0", T.Qemu, 0x0010, PcieType.Endpoint).Dev("02:00.1", T.Qemu, 0x0011, PcieType.Endpoint)
            .Conventional("00:1f.0");
        var m = t.Build();
        // Give both PFs an SR-IOV capability with VFs enabled (2 and 1).
        var b = new PciTopologyBuilder();
        foreach (var d in m.Topology.Devices)
            b.Add(d.Address == PciAddress.Parse("01:00.0") ? d.Facts with { Sriov = sriov }
                : d.Address == PciAddress.Parse("02:00.0") ? d.Facts with { Sriov = sriov with { NumVfs = 1 } } : d.Facts);
        var m2 = new Machine { Topology = b.Build(), Origin = "vf", KernelRelease = t.Release, CommandLine = t.Cmdline, IommuUnits = t.Units };
        var r = ModelGrouping.Compute(m2);
        Assert.False(r.Together("01:00.1", "01:00.2")); // VFs are not multifunction: no ACS needed between them
        Assert.False(r.Together("01:00.0", "01:00.1"));
        // Boot-time devices first (00:1c.0 00:1d.0 00:1f.0 01:00.0 02:00.0 = 0..4), then VFs PF by PF.
        Assert.Equal(5, r.GroupOf(PciAddress.Parse("01:00.1"))!.Id);
        Assert.Equal(7, r.GroupOf(PciAddress.Parse("02:00.1"))!.Id);
        var r2 = ModelGrouping.Compute(m2, new GroupingOptions { VfEnableOrder = [PciAddress.Parse("02:00.0")] });
        Assert.Equal(5, r2.GroupOf(PciAddress.Parse("02:00.1"))!.Id);
        Assert.Equal(6, r2.GroupOf(PciAddress.Parse("01:00.1"))!.Id);
        Assert.EndsWith("group 6", r2.Explain(PciAddress.Parse("01:00.1"))[^1].Text);
    }

    [Fact]
    public void DeviceGroupWorksWithTheCallersOwnGroupObjects()
    {
        var m = T.New().RootPort("00:1c.0", sec: 1).Endpoint("01:00.0").Build();
        var ctx = GroupingContext.Create(m, KernelCommandLine.Parse(""), true);
        var mine = new Dictionary<PciDevice, List<string>>();
        foreach (var d in m.Topology.Devices)
        {
            var g = PciGrouping.DeviceGroup(d, ctx, x => mine.GetValueOrDefault(x), () => new List<string>());
            g.Add(d.Address.ToString());
            mine[d] = g;
        }
        Assert.Same(mine[m.Topology.Devices[0]], mine[m.Topology.Devices[1]]);
    }
}

/// <summary>The synthetic machine the benchmark uses groups as its construction says.</summary>
public class SyntheticMachineTests
{
    [Fact]
    public void SyntheticMachineGroupsEveryFunctionAndKeepsProbeOrderNumbering()
    {
        var m = SyntheticMachines.Build(5_000);
        Assert.InRange(m.Topology.Count, 5_000, 5_008); // a port's subtree is never cut short
        var r = ModelGrouping.Compute(m);
        Assert.Equal(m.Topology.Count, r.Groups.Sum(g => g.Devices.Count));
        // Groups are allocated in probe order: the first member of each group appears in increasing probe index.
        var firsts = r.Groups.Select(g => g.Devices[0].ProbeIndex).ToList();
        Assert.Equal(firsts.Order(), firsts);
        // Ports 00:04.0 (32) and 00:04.4 (36) lack ACS in the same multifunction slot: one group with everything below
        // both (a PCIe-to-PCI bridge with 4 devices, an 8-function endpoint). The other functions of the slot have ACS.
        var rp = m.Topology[new PciAddress(0, 0, 4, 0)];
        Assert.Equal((1 + 1 + 4) + (1 + 8), r.GroupOf(rp.Address)!.Devices.Count);
        Assert.True(r.Together("00:04.0", "00:04.4"));
        Assert.False(r.Together("00:04.0", "00:04.1"));
    }
}
