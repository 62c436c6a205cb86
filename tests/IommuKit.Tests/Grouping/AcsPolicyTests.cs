using IommuKit.Host;
using IommuKit.Grouping;
using IommuKit.Pci;
using Xunit;

namespace IommuKit.Tests.Grouping;

/// <summary>The kernel's ACS enabling step and command-line options (spec 2.7).</summary>
public class AcsPolicyTests
{
    private static readonly AcsFlags Cap4 = AcsFlags.SV | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF;

    private static AcsFlags? Ctl(GroupingResult r, string a) => r.Context!.Acs.EffectiveControl(r.Machine.Topology[PciAddress.Parse(a)]);

    [Fact]
    public void IommuOffSnapshotControlIsTheFirmwareValueAndTheKernelAddsItsBitsWhenTheIommuIsOn()
    {
        var t = T.New().RootPort("00:1c.0", sec: 1, acs: (Cap4 | AcsFlags.TB, AcsFlags.None)).Endpoint("01:00.0");
        t.Units.Clear();
        t.Cmdline = "intel_iommu=off";
        Assert.Empty(t.Group().Groups); // IOMMU off: no groups
        var r = t.Group(options: new GroupingOptions { ForceIommuActive = true });
        Assert.Equal(Cap4, Ctl(r, "00:1c.0")); // TB only for external-facing/untrusted/noats
        Assert.False(r.Together("00:1c.0", "01:00.0"));
    }

    [Fact]
    public void TranslationBlockingIsEnabledForExternalFacingPortsAndWithNoats()
    {
        var t = T.New().Dev("00:07.0", T.Intel, 0x9a23, PcieType.RootPort, (Cap4 | AcsFlags.TB, AcsFlags.None), sec: 1, external: true)
            .RootPort("00:1c.0", sec: 2, acs: (Cap4 | AcsFlags.TB, AcsFlags.None));
        var r = t.Group();
        Assert.Equal(Cap4 | AcsFlags.TB, Ctl(r, "00:07.0"));
        Assert.Equal(Cap4, Ctl(r, "00:1c.0"));
        Assert.Equal(Cap4 | AcsFlags.TB, Ctl(t.Group("intel_iommu=on pci=noats"), "00:1c.0"));
    }

    [Fact]
    public void ConfigAcsRevertsBitsOutsideTheMaskToTheFirmwareValueDroppingTheKernelsEnabling()
    {
        // The documented example 10x@pci:0:0: RR set, TB cleared, SV "unchanged" = firmware value (0), and CR/UF too.
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: (Cap4 | AcsFlags.TB, AcsFlags.None)).Endpoint("01:00.0")
            .Group("intel_iommu=on pci=config_acs=10x@pci:0:0");
        Assert.Equal(AcsFlags.RR, Ctl(r, "00:1c.0"));
        Assert.True(r.Together("00:1c.0", "01:00.0"));
        Assert.Contains(r.Explain(PciAddress.Parse("00:1c.0")), s => s.Kind == GroupStepKind.AcsSetting && s.Text.Contains("revert to the firmware value"));
    }

    [Fact]
    public void ConfigAcsSettingEveryRequiredBitIsolates()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: (Cap4, AcsFlags.None)).Endpoint("01:00.0")
            .Group("intel_iommu=on pci=config_acs=11101@00:1c.0");
        Assert.Equal(Cap4, Ctl(r, "00:1c.0"));
        Assert.False(r.Together("00:1c.0", "01:00.0"));
    }

    [Fact]
    public void ConfigAcsAppliesEvenWithoutAnIommu()
    {
        var t = T.New().RootPort("00:1c.0", sec: 1, acs: (Cap4, AcsFlags.None));
        t.Units.Clear();
        t.Cmdline = "intel_iommu=off pci=config_acs=1x1x1@00:1c.0";
        var m = t.Build();
        var acs = AcsPolicy.Create(m, KernelCommandLine.Parse(m.CommandLine), iommuActive: false);
        Assert.Equal(AcsFlags.SV | AcsFlags.RR | AcsFlags.UF, acs.EffectiveControl(m.Topology.Devices[0]));
    }

    [Fact]
    public void DisableAcsRedirClearsRedirectAndRevertsTheRestToFirmware()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: (Cap4, AcsFlags.None)).RootPort("00:1d.0", sec: 2, acs: (Cap4, AcsFlags.None))
            .Endpoint("01:00.0").Endpoint("02:00.0")
            .Group("intel_iommu=on pci=disable_acs_redir=00:1c.0");
        Assert.Equal(AcsFlags.None, Ctl(r, "00:1c.0"));
        Assert.Equal(Cap4, Ctl(r, "00:1d.0"));
        Assert.True(r.Together("00:1c.0", "01:00.0"));
        Assert.False(r.Together("00:1d.0", "02:00.0"));
    }

    [Fact]
    public void ConfigAcsWithAnInvalidFlagCharacterIsIgnoredWithTheKernelsMessage()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: (Cap4, AcsFlags.None)).Group("intel_iommu=on pci=config_acs=10z@00:1c.0");
        Assert.Equal(Cap4, Ctl(r, "00:1c.0"));
        Assert.Contains(r.Messages, m => m.Contains("Invalid ACS flags") && m.Contains("Ignoring"));
    }

    [Fact]
    public void ConfigAcsWithoutAnAtSignSaysFlagsMissing()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: (Cap4, AcsFlags.None)).Group("intel_iommu=on pci=config_acs=00:1c.0");
        Assert.Contains(r.Messages, m => m.Contains("ACS Flags missing"));
    }

    [Fact]
    public void ConfigAcsMaskBeyondBitSixIsInvalid()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: (Cap4, AcsFlags.None)).Group("intel_iommu=on pci=config_acs=10000000@00:1c.0");
        Assert.Contains(r.Messages, m => m.Contains("Invalid ACS flags specified"));
        Assert.Equal(Cap4, Ctl(r, "00:1c.0"));
    }

    [Fact]
    public void ConfigAcsTakesTheFirstMatchingEntryOfASemicolonList()
    {
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: (Cap4, AcsFlags.None)).RootPort("00:1d.0", sec: 2, acs: (Cap4, AcsFlags.None))
            .Group("intel_iommu=on pci=config_acs=0000@00:1d.0;11101@00:1c.0;0@00:1c.0");
        Assert.Equal(Cap4, Ctl(r, "00:1c.0"));
        Assert.Equal(AcsFlags.None, Ctl(r, "00:1d.0"));
    }

    [Theory]
    [InlineData("pci:8086:a110", 1)]
    [InlineData("pci:0:0", 1)]
    [InlineData("pci:8086:0", 1)]
    [InlineData("pci:8086:a111", 0)]
    [InlineData("pci:8086:a110:1028:0000", 1)]
    [InlineData("pci:8086:a110:17aa:0", 0)]
    [InlineData("00:1c.0", 1)]
    [InlineData("0000:00:1c.0", 1)]
    [InlineData("0001:00:1c.0", 0)]
    [InlineData("00:1c.1", 0)]
    [InlineData("pci:zz", -22)]
    [InlineData("garbage", -22)]
    public void PciDevStrMatchFollowsTheKernelsSpecifierForms(string spec, int expected)
    {
        var m = T.New().Dev("00:1c.0", T.Intel, 0xa110, PcieType.RootPort, sec: 1, subVendor: 0x1028, subDevice: 0x07a1).Build();
        Assert.Equal(expected, PciDevStrMatch.Match(m.Topology.Devices[0], spec, 0, out _));
    }

    [Fact]
    public void PciDevStrMatchPathFormFollowsTheBridgeChainDownward()
    {
        var m = T.New().RootPort("00:1c.0", sec: 1, sub: 2).Dev("01:00.0", T.Other, 1, PcieType.Upstream, sec: 2).Endpoint("02:00.0").Build();
        var ep = m.Topology[PciAddress.Parse("02:00.0")];
        Assert.Equal(1, PciDevStrMatch.Match(ep, "00:1c.0/00.0/00.0", 0, out _));
        Assert.Equal(0, PciDevStrMatch.Match(ep, "00:1d.0/00.0/00.0", 0, out _));
        Assert.Equal(0, PciDevStrMatch.Match(ep, "00:1c.0/00.0/01.0", 0, out _));
        Assert.Equal(-22, PciDevStrMatch.Match(ep, "00:1c.0/00.0x", 0, out _));
    }

    [Theory]
    [InlineData("console=ttyS0", true)]
    [InlineData("intel_iommu=on", true)]
    [InlineData("intel_iommu=off", false)]
    [InlineData("intel_iommu=on,sm_on intel_iommu=off", false)]
    [InlineData("intel_iommu=off,on", true)]
    [InlineData("iommu=off", false)]
    [InlineData("iommu=pt", true)]
    [InlineData("iommu.passthrough=1", true)]
    public void IntelIommuIsActiveByDefaultUnlessTheCommandLineSwitchesItOff(string cmdline, bool active)
    {
        var r = T.New().Endpoint("00:02.0").Group(cmdline);
        Assert.Equal(active, r.IommuActive);
        Assert.Equal(active ? 1 : 0, r.Groups.Count);
    }

    [Fact]
    public void AmdIommuOffDisablesAmdVi()
    {
        var t = T.New().Endpoint("00:02.0");
        t.Units[0] = new IommuUnit("ivhd0", IommuKind.Amd, [], new Dictionary<string, string>());
        Assert.True(t.Group("").IommuActive);
        Assert.False(t.Group("amd_iommu=off").IommuActive);
        Assert.True(t.Group("intel_iommu=off").IommuActive);
    }

    [Fact]
    public void NoIommuUnitMeansNoGroupsUnlessAPredictionIsForced()
    {
        var t = T.New().RootPort("00:1c.0", sec: 1).Endpoint("01:00.0");
        t.Units.Clear();
        t.Cmdline = "console=ttyS0";
        var m = t.Build(withKernelGroups: true);
        Assert.Empty(ModelGrouping.Compute(m).Groups);
        var forced = ModelGrouping.Compute(m, new GroupingOptions { ForceIommuActive = true });
        Assert.Single(forced.Groups);
    }

    [Theory]
    [InlineData("6.8.4-3-pve", true)]
    [InlineData("6.5.11-7-PVE", true)]
    [InlineData("6.9.7-zen1-1-zen", true)]
    [InlineData("6.6.1-lqx1", true)]
    [InlineData("6.1.0-56-amd64", false)]
    [InlineData("6.8.0-41-generic", false)]
    public void AcsOverridePatchIsCarriedByProxmoxZenLiquorixKernelsOnly(string release, bool carries)
    {
        Assert.Equal(carries, AcsOverridePolicy.KernelCarriesOverride(release));
    }
}

/// <summary>Kernels before 6.11: no config_acs, and disable_acs_redir clears bits from the enabled value.</summary>
public class AcsPolicyOldKernelTests
{
    [Fact]
    public void KernelsBefore611IgnoreConfigAcsAndSaySo()
    {
        var t = T.New().RootPort("00:1c.0", sec: 1, acs: (AcsFlags.Required, AcsFlags.None)).Endpoint("01:00.0");
        t.Release = "6.1.0-56-amd64";
        var r = t.Group("intel_iommu=on pci=config_acs=0000@00:1c.0");
        Assert.False(r.Together("00:1c.0", "01:00.0"));
        Assert.Contains(r.Messages, m => m.Contains("predates it (Linux 6.11)"));
        Assert.False(r.Context!.Acs.ConfigAcsSemantics);
    }

    [Fact]
    public void KernelsBefore611ClearOnlyTheRedirectBitsWithDisableAcsRedir()
    {
        var t = T.New().RootPort("00:1c.0", sec: 1, acs: (AcsFlags.Required, AcsFlags.None)).Endpoint("01:00.0");
        t.Release = "5.15.0-122-generic";
        var r = t.Group("intel_iommu=on pci=disable_acs_redir=00:1c.0");
        Assert.Equal(AcsFlags.SV | AcsFlags.UF, r.Context!.Acs.EffectiveControl(r.Machine.Topology.Devices[0]));
        Assert.True(r.Together("00:1c.0", "01:00.0"));
    }
}

/// <summary>Bounds on what a hostile command line can cost.</summary>
public class AcsPolicyBoundsTests
{
    [Fact]
    public void OverlongPathSpecifierIsAParseErrorNotASlowWalk()
    {
        var m = T.New().Endpoint("00:02.0").Build();
        string path = "00:02.0" + string.Concat(Enumerable.Repeat("/00.0", 1000));
        Assert.Equal(-22, PciDevStrMatch.Match(m.Topology.Devices[0], path, 0, out _));
    }

    [Fact]
    public void ConfigAcsValueIsCutAtTheKernelsCommandLineSize()
    {
        string many = string.Join(";", Enumerable.Repeat("0@00:1d.0", 1000)) + ";11101@00:1c.0";
        var (_, config) = AcsPolicy.PciAcsParams(KernelCommandLine.Parse("pci=config_acs=" + many));
        Assert.Equal(AcsPolicy.MaxAcsParamChars, config!.Length);
    }
}
