using System.Buffers.Binary;
using IommuKit.Grouping;
using IommuKit.Pci;
using Xunit;

namespace IommuKit.Tests.Grouping;

/// <summary>The ACS quirk table (spec 2.7) and the DMA alias quirks (spec 2.8), one claim per test.</summary>
public class QuirkTests
{
    private static ConfigSpace Cfg(int size, params (int Offset, uint Value)[] dwords)
    {
        var b = new byte[size];
        foreach (var (o, v) in dwords) BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(o), v);
        return new ConfigSpace(b);
    }

    // --- Intel ---------------------------------------------------------------------------------------------------

    [Fact]
    public void IntelRciepQuirkSeparatesMultifunctionIntegratedEndpoints()
    {
        var r = T.New().Endpoint("00:05.0", vendor: T.Intel, device: 0x10d3, mf: true, type: PcieType.RcEnd)
            .Endpoint("00:05.1", vendor: T.Intel, device: 0x10d3, type: PcieType.RcEnd).Group();
        Assert.False(r.Together("00:05.0", "00:05.1"));
        Assert.Contains(r.Explain(PciAddress.Parse("00:05.1")), s => s.Kind == GroupStepKind.AcsQuirk && s.Text.StartsWith("ACS quirk for 8086:10d3 applies"));
    }

    [Fact]
    public void IntelRciepQuirkDoesNotApplyToIntelEndpointsBehindAPort()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn)
            .Endpoint("01:00.0", vendor: T.Intel, device: 0x10d3, mf: true).Endpoint("01:00.1", vendor: T.Intel, device: 0x10d3).Group();
        Assert.True(r.Together("01:00.0", "01:00.1"));
    }

    [Fact]
    public void IntelMultifunctionNicListSeparatesI350Functions()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn)
            .Endpoint("01:00.0", vendor: T.Intel, device: 0x1521, mf: true).Endpoint("01:00.1", vendor: T.Intel, device: 0x1521).Group();
        Assert.False(r.Together("01:00.0", "01:00.1"));
    }

    [Fact]
    public void IntelPchRootPortIsIsolatedWhenTheEnableQuirkTookEffect()
    {
        // Cougar Point root port 8086:1c10 without ACS capability; MPC (0xD8) bit 26 IRBNCE set by the quirk.
        var r = T.New().RootPort("00:1c.0", sec: 1, vendor: T.Intel, device: 0x1c10, config: Cfg(256, (0xD8, 1u << 26)))
            .Endpoint("01:00.0").Group();
        Assert.False(r.Together("00:1c.0", "01:00.0"));
        Assert.True(r.Context!.Acs.IntelPchQuirkEnabled(r.Machine.Topology[PciAddress.Parse("00:1c.0")]));
    }

    [Fact]
    public void IntelPchRootPortWithoutTheEnableQuirkIsNotIsolated()
    {
        // The source's boot had the IOMMU on and MPC bit 26 is clear: the quirk failed there, so the flag is not set.
        var r = T.New().RootPort("00:1c.0", sec: 1, vendor: T.Intel, device: 0x1c10, config: Cfg(256, (0xD8, 0)))
            .Endpoint("01:00.0").Group();
        Assert.True(r.Together("00:1c.0", "01:00.0"));
        Assert.Contains(r.Explain(PciAddress.Parse("01:00.0")), s => s.Text.Contains("Intel PCH root port (8086:1c10) whose ACS enable quirk did not take effect"));
    }

    [Fact]
    public void IntelPchEnableQuirkDependsOnTheLpcRcbaWhenTheSnapshotHadTheIommuOff()
    {
        T Build(uint rcba)
        {
            var t = T.New().RootPort("00:1c.0", sec: 1, vendor: T.Intel, device: 0x1c10, config: Cfg(256, (0xD8, 0)))
                .Dev("00:1f.0", T.Intel, 0x1c44, PcieType.None, cls: 0x060100, config: Cfg(256, (0xF0, rcba))).Endpoint("01:00.0");
            t.Units.Clear();
            t.Cmdline = "intel_iommu=off";
            return t;
        }
        Assert.False(Build(0xfed1c001).Group("intel_iommu=on").Together("00:1c.0", "01:00.0"));
        Assert.True(Build(0xfed1c000).Group("intel_iommu=on").Together("00:1c.0", "01:00.0"));
    }

    [Fact]
    public void IntelSunrisePointRootPortReadsItsAcsControlAtOffsetEight()
    {
        // ACS at 0x100: 32-bit capability at +4 = SV|RR|CR|UF, the real control at +8. The standard +6 reads garbage.
        uint cap = (uint)(AcsFlags.SV | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF);
        var cfgOn = Cfg(4096, (0x100, 0x0001000d), (0x104, cap), (0x108, cap));
        var t = T.New().Dev("00:1c.0", T.Intel, 0xa110, PcieType.RootPort, (AcsFlags.Required, AcsFlags.None), sec: 1, config: cfgOn).Endpoint("01:00.0");
        var r = t.Group();
        Assert.False(r.Together("00:1c.0", "01:00.0"));
        // With the IOMMU forced off in the source and then predicted on, the kernel's SPT enable sets the +8 bits.
        var cfgOff = Cfg(4096, (0x100, 0x0001000d), (0x104, cap), (0x108, 0));
        var t2 = T.New().Dev("00:1c.0", T.Intel, 0xa110, PcieType.RootPort, (AcsFlags.Required, AcsFlags.None), sec: 1, config: cfgOff).Endpoint("01:00.0");
        t2.Units.Clear(); t2.Cmdline = "intel_iommu=off";
        Assert.False(t2.Group("intel_iommu=on").Together("00:1c.0", "01:00.0"));
        // disable_acs_redir on an SPT port clears RR|CR|EC in the +8 register (pci_quirk_disable_intel_spt_pch_acs_redir).
        Assert.True(t.Group("intel_iommu=on pci=disable_acs_redir=00:1c.0").Together("00:1c.0", "01:00.0"));
    }

    // --- Hard "no" quirks ------------------------------------------------------------------------------------------

    [Fact]
    public void ZhaoxinPortOutsideTheListIsNotIsolatedEvenWithAcsEnabled()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn, vendor: AcsQuirks.VendorZhaoxin, device: 0x0700).Endpoint("01:00.0").Group();
        Assert.True(r.Together("00:1c.0", "01:00.0"));
        Assert.Contains(r.Explain(PciAddress.Parse("01:00.0")), s => s.Text.Contains("declares not isolated"));
    }

    [Fact]
    public void ZhaoxinListedPortIsIsolatedWithoutAnAcsCapability()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, vendor: AcsQuirks.VendorZhaoxin, device: 0x0717).Endpoint("01:00.0").Group();
        Assert.False(r.Together("00:1c.0", "01:00.0"));
    }

    [Fact]
    public void WangxunDeviceOutsideTheListIsNotIsolatedEvenWithAcsEnabled()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn)
            .Endpoint("01:00.0", vendor: AcsQuirks.VendorWangxun, device: 0x1000, mf: true, acs: T.AcsOn)
            .Endpoint("01:00.1", vendor: AcsQuirks.VendorWangxun, device: 0x1000, acs: T.AcsOn).Group();
        Assert.True(r.Together("01:00.0", "01:00.1"));
    }

    [Fact]
    public void WangxunListedNicFunctionsAreIsolated()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn)
            .Endpoint("01:00.0", vendor: AcsQuirks.VendorWangxun, device: 0x1001, mf: true)
            .Endpoint("01:00.1", vendor: AcsQuirks.VendorWangxun, device: 0x1001).Group();
        Assert.False(r.Together("01:00.0", "01:00.1"));
    }

    // --- Other vendors ----------------------------------------------------------------------------------------------

    [Fact]
    public void AmdSouthbridgeQuirkIsolatesOnlyWithAnIvrsTable()
    {
        T Build() => T.New().Endpoint("00:14.0", vendor: AcsQuirks.VendorAti, device: 0x4385, mf: true, type: PcieType.None)
            .Endpoint("00:14.3", vendor: AcsQuirks.VendorAti, device: 0x439d, type: PcieType.None);
        Assert.False(Build().Group(options: new GroupingOptions { HasIvrs = true }).Together("00:14.0", "00:14.3"));
        Assert.True(Build().Group(options: new GroupingOptions { HasIvrs = false }).Together("00:14.0", "00:14.3"));
    }

    [Fact]
    public void SolarflareMultifunctionEndpointQuirkSeparatesFunctions()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn)
            .Endpoint("01:00.0", vendor: AcsQuirks.VendorSolarflare, device: 0x0903, mf: true)
            .Endpoint("01:00.1", vendor: AcsQuirks.VendorSolarflare, device: 0x0903).Group();
        Assert.False(r.Together("01:00.0", "01:00.1"));
    }

    [Theory]
    [InlineData(AcsQuirks.VendorQcom, 0x0400)]
    [InlineData(AcsQuirks.VendorHxt, 0x0401)]
    [InlineData(AcsQuirks.VendorCavium, 0xa100)]
    [InlineData(AcsQuirks.VendorAmcc, 0xE004)]
    [InlineData(AcsQuirks.VendorAmpere, 0xE00A)]
    [InlineData(AcsQuirks.VendorBroadcom, 0xD714)]
    [InlineData(AcsQuirks.VendorLoongson, 0x7A09)]
    [InlineData(AcsQuirks.VendorAmazonAl, 0x0031)]
    [InlineData(AcsQuirks.VendorNxp, 0x8d81)]
    public void QuirkedRootPortsWithoutAcsAreIsolated(ushort vendor, ushort device)
    {
        var r = T.New().RootPort("00:01.0", sec: 1, vendor: vendor, device: device).Endpoint("01:00.0").Group();
        Assert.False(r.Together("00:01.0", "01:00.0"));
    }

    [Fact]
    public void CaviumQuirkCoversOnlyThunderXRootPortIds()
    {
        var r = T.New().RootPort("00:01.0", sec: 1, vendor: AcsQuirks.VendorCavium, device: 0xa900).Endpoint("01:00.0").Group();
        Assert.True(r.Together("00:01.0", "01:00.0"));
    }

    [Fact]
    public void AmazonAnnapurnaQuirkGrantsExactlyTheRequiredFlags()
    {
        var m = T.New().RootPort("00:01.0", sec: 1, vendor: AcsQuirks.VendorAmazonAl, device: 0x0031).Build();
        var ctx = GroupingContext.Create(m, KernelCommandLine.Empty, true);
        var rp = m.Topology.Devices[0];
        Assert.True(PciGrouping.AcsEnabled(rp, AcsFlags.Required, ctx));
        Assert.False(PciGrouping.AcsEnabled(rp, AcsFlags.Required | AcsFlags.EC, ctx));
    }

    [Fact]
    public void QuirkTableIsInKernelOrderWithTheCatchAllVendorHooksAfterTheIdLists()
    {
        var t = AcsQuirks.Table;
        int Index(Func<AcsQuirkEntry, bool> p) => t.ToList().FindIndex(e => p(e));
        Assert.Equal(AcsQuirkHook.AmdSouthbridge, t[0].Hook);
        Assert.True(Index(e => e.Hook == AcsQuirkHook.IntelRciep) > Index(e => e.Vendor == AcsQuirks.VendorIntel && e.Device == 0x15b8));
        Assert.True(Index(e => e.Hook == AcsQuirkHook.IntelPch) > Index(e => e.Hook == AcsQuirkHook.QcomRootPort));
        Assert.Equal(Index(e => e.Hook == AcsQuirkHook.IntelPch) + 1, Index(e => e.Hook == AcsQuirkHook.IntelSptPch));
        Assert.Equal(AcsQuirkHook.WangxunNic, t[^1].Hook);
        Assert.Equal(AcsQuirkHook.ZhaoxinPorts, t[^2].Hook);
    }

    // --- pcie_acs_override -----------------------------------------------------------------------------------------

    [Fact]
    public void AcsOverrideDownstreamIsolatesPortsWithoutAcsOnKernelsThatCarryIt()
    {
        var t = T.New().RootPort("00:1c.0", sec: 1).Endpoint("01:00.0");
        t.Release = "6.8.4-3-pve";
        var r = t.Group("intel_iommu=on pcie_acs_override=downstream");
        Assert.False(r.Together("00:1c.0", "01:00.0"));
        Assert.Contains(r.Messages, m => m.Contains("non-IOMMU protected peer-to-peer DMA"));
        Assert.Contains(r.Explain(PciAddress.Parse("01:00.0")), s => s.Text.Contains("out-of-tree pcie_acs_override"));
    }

    [Fact]
    public void AcsOverrideIsIgnoredByAStockDebianKernelAndSaysSo()
    {
        var t = T.New().RootPort("00:1c.0", sec: 1).Endpoint("01:00.0");
        t.Release = "6.1.0-56-amd64";
        var r = t.Group("intel_iommu=on pcie_acs_override=downstream,multifunction");
        Assert.True(r.Together("00:1c.0", "01:00.0"));
        Assert.Contains(r.Messages, m => m.Contains("is ignored") && m.Contains("6.1.0-56-amd64"));
        var forced = t.Group("intel_iommu=on pcie_acs_override=downstream", new GroupingOptions { KernelCarriesAcsOverride = true });
        Assert.False(forced.Together("00:1c.0", "01:00.0"));
    }

    [Fact]
    public void AcsOverrideNeverOverridesADeviceThatHasAnAcsCapabilityEvenWhenDisabled()
    {
        var t = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsCapOnly).Endpoint("01:00.0");
        t.Release = "6.8.4-3-pve";
        var r = t.Group("intel_iommu=on pci=disable_acs_redir=00:1c.0 pcie_acs_override=downstream");
        Assert.True(r.Together("00:1c.0", "01:00.0"));
    }

    [Fact]
    public void AcsOverrideMultifunctionAndIdEntriesIsolateEndpoints()
    {
        T Build() { var t = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn).Endpoint("01:00.0", device: 0x5678, mf: true).Endpoint("01:00.1", device: 0x5678); t.Release = "6.9.7-zen1"; return t; }
        Assert.True(Build().Group("intel_iommu=on").Together("01:00.0", "01:00.1"));
        Assert.False(Build().Group("intel_iommu=on pcie_acs_override=multifunction").Together("01:00.0", "01:00.1"));
        Assert.False(Build().Group("intel_iommu=on pcie_acs_override=id:1234:5678").Together("01:00.0", "01:00.1"));
        Assert.True(Build().Group("intel_iommu=on pcie_acs_override=id:1234:9999").Together("01:00.0", "01:00.1"));
    }

    [Fact]
    public void AcsOverrideIsTheLastEntrySoARealHardNoQuirkWins()
    {
        var t = T.New().RootPort("00:1c.0", sec: 1, vendor: AcsQuirks.VendorZhaoxin, device: 0x0700).Endpoint("01:00.0");
        t.Release = "6.8.4-3-pve";
        Assert.True(t.Group("intel_iommu=on pcie_acs_override=downstream").Together("00:1c.0", "01:00.0"));
    }

    // --- DMA alias quirks ------------------------------------------------------------------------------------------

    [Fact]
    public void RicohFunctionZeroAliasJoinsTheFunctionsEvenWithAcs()
    {
        T Build(ushort dev1) => T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn)
            .Endpoint("01:00.0", vendor: 0x1180, device: 0xe822, mf: true, acs: T.AcsOn).Endpoint("01:00.1", vendor: 0x1180, device: dev1, acs: T.AcsOn);
        Assert.True(Build(0xe832).Group().Together("01:00.0", "01:00.1"));
        Assert.False(Build(0xe823).Group().Together("01:00.0", "01:00.1"));
        var r = Build(0xe832).Group();
        Assert.Contains(r.Explain(PciAddress.Parse("01:00.1")), s => s.Kind == GroupStepKind.AliasQuirk);
    }

    [Fact]
    public void MarvellGhostFunctionOneAliasJoinsARealFunctionOne()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn)
            .Endpoint("01:00.0", vendor: 0x1b4b, device: 0x9230, mf: true, acs: T.AcsOn).Endpoint("01:00.1", vendor: T.Other, acs: T.AcsOn).Group();
        Assert.True(r.Together("01:00.0", "01:00.1"));
        var m = r.Machine;
        var ctx = r.Context!;
        var rids = new List<ushort>();
        PciGrouping.ForEachDmaAlias(m.Topology[PciAddress.Parse("01:00.0")], ctx, (d, rid) => { rids.Add(rid); return 0; });
        Assert.Equal(new ushort[] { 0x0100, 0x0101 }, rids);
    }

    [Fact]
    public void AdaptecFixedAliasNeedsTheSubsystemMatch()
    {
        Assert.NotNull(DmaAliasQuirks.For(T.New().Dev("01:00.0", 0x9005, 0x0285, PcieType.None, subVendor: 0x9005, subDevice: 0x02bb).Build().Topology.Devices[0])?.Mask);
        Assert.Null(DmaAliasQuirks.For(T.New().Dev("01:00.0", 0x9005, 0x0285, PcieType.None, subVendor: 0x9005, subDevice: 0x0200).Build().Topology.Devices[0]));
    }

    [Fact]
    public void PlxNtbAliasesEveryDevfnSoItsWholeBusSharesAGroup()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, sub: 2, acs: T.AcsOn)
            .Dev("01:00.0", 0x10b5, 0x8747, PcieType.Upstream, sec: 2)
            .Dev("02:00.0", 0x10b5, 0x8747, PcieType.Downstream, acs: T.AcsOn, sec: 3)
            .Endpoint("02:00.1", vendor: 0x10b5, device: 0x87b0, acs: T.AcsOn)
            .Group();
        Assert.True(r.Together("02:00.0", "02:00.1"));
    }

    [Fact]
    public void PcieBridgeAliasFlagMakesAConventionalBridgeUseItsSecondaryBusAsRequester()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, sub: 2, acs: T.AcsOn)
            .Dev("01:00.0", 0x1b21, 0x1080, PcieType.None, sec: 2).Conventional("02:00.0").Group();
        var ctx = r.Context!;
        Assert.True(ctx.AliasInfo(r.Machine.Topology[PciAddress.Parse("01:00.0")])!.PcieBridgeAlias);
        var rids = new List<(PciAddress, ushort)>();
        PciGrouping.ForEachDmaAlias(r.Machine.Topology[PciAddress.Parse("02:00.0")], ctx, (d, rid) => { rids.Add((d.Address, rid)); return 0; });
        Assert.Equal([(PciAddress.Parse("02:00.0"), (ushort)0x0200), (PciAddress.Parse("01:00.0"), (ushort)0x0200)], rids);
        Assert.True(r.Together("01:00.0", "02:00.0"));
    }

    [Fact]
    public void PcieBridgeAliasFlagNeedsAPcieParent()
    {
        var m = T.New().Dev("00:1e.0", 0x8086, 0x244e, PcieType.None, sec: 1).Build();
        Assert.Null(DmaAliasQuirks.For(m.Topology.Devices[0])); // on a root bus: no flag
    }

    [Fact]
    public void AliasWalkStopsAtAnXlateRootBridge()
    {
        var m = T.New().Dev("00:01.0", 0x14e4, 0x9000, PcieType.RootPort, sec: 1, sub: 3, acs: T.AcsOn)
            .Dev("01:00.0", T.Qemu, 0x000e, PcieType.PciBridge, sec: 2, sub: 3)
            .Dev("02:01.0", T.Other, 3, PcieType.None, sec: 3).Conventional("03:00.0").Build();
        var ctx = GroupingContext.Create(m, KernelCommandLine.Empty, true);
        var seen = new List<PciAddress>();
        PciGrouping.ForEachDmaAlias(m.Topology[PciAddress.Parse("03:00.0")], ctx, (d, _) => { seen.Add(d.Address); return 0; });
        Assert.Equal([PciAddress.Parse("03:00.0"), PciAddress.Parse("02:01.0"), PciAddress.Parse("01:00.0")], seen);

        // Same walk with the XLATE_ROOT bridge in the middle: it stops before reaching the PCIe-to-PCI bridge.
        var m2 = T.New().RootPort("00:01.0", sec: 1, sub: 3, acs: T.AcsOn)
            .Dev("01:00.0", T.Qemu, 0x000e, PcieType.PciBridge, sec: 2, sub: 3)
            .Dev("02:01.0", 0x14e4, 0x9084, PcieType.None, sec: 3).Conventional("03:00.0").Build();
        var ctx2 = GroupingContext.Create(m2, KernelCommandLine.Empty, true);
        seen.Clear();
        PciGrouping.ForEachDmaAlias(m2.Topology[PciAddress.Parse("03:00.0")], ctx2, (d, _) => { seen.Add(d.Address); return 0; });
        Assert.Equal([PciAddress.Parse("03:00.0")], seen);
    }

    [Fact]
    public void SwitchtecNtbAliasesAreReportedAsUnknownFacts()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn).Dev("01:00.1", 0x11f8, 0x8536, PcieType.Endpoint, cls: 0x068000).Group();
        Assert.True(r.GroupOf(PciAddress.Parse("01:00.1"))!.UnknownFacts);
    }

    [Fact]
    public void VcaAliasCoversFunctionsZeroToFourOfEverySlot()
    {
        var info = DmaAliasQuirks.For(T.New().Dev("01:00.0", 0x8086, 0x2954, PcieType.Endpoint).Build().Topology.Devices[0])!;
        Assert.True(info.HasAlias((31 << 3) | 4));
        Assert.False(info.HasAlias((31 << 3) | 5));
    }

    [Fact]
    public void MicX200AliasesTheThreeFixedDevfns()
    {
        var info = DmaAliasQuirks.For(T.New().Dev("01:00.0", 0x8086, 0x2260, PcieType.Endpoint).Build().Topology.Devices[0])!;
        Assert.Equal(3, Enumerable.Range(0, 256).Count(info.HasAlias));
        Assert.True(info.HasAlias((0x12 << 3) | 3));
    }
}
