using System.Text.Json;
using IommuKit.Host;
using IommuKit.Grouping;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Grouping;

/// <summary>
/// Differential tests against machines captured from a real kernel (tests/fixtures/oracle): the model must give the
/// kernel's groups, members and numbers, from the tarball as captured and from topology alone.
/// </summary>
public class OracleGroupingTests
{
    public static TheoryData<string> Machines()
    {
        var d = new TheoryData<string>();
        foreach (var m in Fixtures.OracleMachines()) d.Add(m);
        return d;
    }

    internal sealed record ExpectedGroup(int Id, List<string> Devices);

    internal static (string Cmdline, List<ExpectedGroup> Groups, Dictionary<string, int?> DeviceGroup) Expected(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.OracleExpected(name)));
        var root = doc.RootElement;
        var groups = new List<ExpectedGroup>();
        foreach (var g in root.GetProperty("groups").EnumerateArray())
            groups.Add(new ExpectedGroup(g.GetProperty("id").GetInt32(), g.GetProperty("devices").EnumerateArray().Select(x => x.GetString()!).ToList()));
        var dev = new Dictionary<string, int?>();
        foreach (var d in root.GetProperty("devices").EnumerateArray())
            dev[d.GetProperty("bdf").GetString()!] = d.GetProperty("group").ValueKind == JsonValueKind.Null ? null : d.GetProperty("group").GetInt32();
        return (root.GetProperty("cmdline").GetString()!, groups, dev);
    }

    private static string Render(IEnumerable<(int Id, IEnumerable<string> Devs)> groups) =>
        string.Join("\n", groups.OrderBy(g => g.Id).Select(g => $"{g.Id}: {string.Join(" ", g.Devs.Order(StringComparer.Ordinal))}"));

    private static string RenderModel(GroupingResult r) => Render(r.Groups.Select(g => (g.Id, g.Devices.Select(d => d.Address.ToString()))));

    private static string RenderPartition(IEnumerable<IEnumerable<string>> groups) =>
        string.Join("\n", groups.Select(g => string.Join(" ", g.Order(StringComparer.Ordinal))).Order(StringComparer.Ordinal));

    [Theory]
    [MemberData(nameof(Machines))]
    public void TarballAsCapturedGivesTheKernelsGroupsAndNumbers(string name)
    {
        var machine = MachineSource.Load(Fixtures.OracleTarball(name));
        var (cmdline, groups, _) = Expected(name);
        Assert.Equal(cmdline, machine.CommandLine);
        var result = ModelGrouping.Compute(machine, new GroupingOptions { VfEnableOrder = VfEnableOrder(cmdline) });
        AssertMatches(name, groups, result);
    }

    /// <summary>
    /// The capture init enables SR-IOV VFs in the order of its <c>oracle.sriov=PF/n,...</c> switch: the record of the
    /// order the VFs appeared, which the kernel's numbering follows and a snapshot alone does not show.
    /// </summary>
    internal static IReadOnlyList<PciAddress>? VfEnableOrder(string cmdline)
    {
        var v = KernelCommandLine.Parse(cmdline).LastValue("oracle.sriov");
        return v?.Split(',').Select(e => PciAddress.Parse(e.Split('/')[0])).ToList();
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void TopologyAloneWithoutTheKernelsGroupsPredictsTheKernelsGroups(string name)
    {
        var machine = MachineRewrite.WithoutKernelGroups(MachineSource.Load(Fixtures.OracleTarball(name)));
        Assert.Null(machine.KernelGroups);
        Assert.All(machine.Topology.Devices, d => Assert.Null(d.Facts.KernelGroup));
        var (cmdline, groups, _) = Expected(name);
        var result = ModelGrouping.Compute(machine, new GroupingOptions { CommandLine = KernelCommandLine.Parse(cmdline), VfEnableOrder = VfEnableOrder(cmdline) });
        AssertMatches(name, groups, result);
    }

    private static void AssertMatches(string name, List<ExpectedGroup> groups, GroupingResult result)
    {
        // Partition first (the clearest failure), then the numbers.
        Assert.Equal(RenderPartition(groups.Select(g => g.Devices)), RenderPartition(result.Groups.Select(g => g.Devices.Select(d => d.Address.ToString()))));
        Assert.Equal(!BindOrderNumbering(name), result.NumbersPredictable);
        if (result.NumbersPredictable)
            Assert.Equal(Render(groups.Select(g => (g.Id, (IEnumerable<string>)g.Devices))), RenderModel(result));
        Assert.All(result.Groups, g => Assert.False(g.UnknownFacts));
        Assert.Equal(groups.Count > 0, result.IommuActive);
    }

    /// <summary>virtio-iommu groups devices when their drivers bind, not in enumeration order (see docs/grouping.md).</summary>
    internal static bool BindOrderNumbering(string name) => name.Contains("virtio", StringComparison.Ordinal);

    [Theory]
    [MemberData(nameof(Machines))]
    public void DevicesWithoutAGroupInTheKernelHaveNoneInTheModel(string name)
    {
        var machine = MachineSource.Load(Fixtures.OracleTarball(name));
        var (_, _, dev) = Expected(name);
        var result = ModelGrouping.Compute(machine);
        foreach (var (bdf, g) in dev)
            Assert.Equal(g is null, result.GroupOf(PciAddress.Parse(bdf)) is null);
    }
}

/// <summary>Explanations of the oracle machines: every device has one, and they name the rules the README lists.</summary>
public class OracleExplanationTests
{
    private static GroupingResult Compute(string name) => ModelGrouping.Compute(MachineSource.Load(Fixtures.OracleTarball(name)));

    [Theory]
    [MemberData(nameof(OracleGroupingTests.Machines), MemberType = typeof(OracleGroupingTests))]
    public void EveryDeviceHasAnExplanationEndingWithItsGroup(string name)
    {
        var r = Compute(name);
        foreach (var d in r.Machine.Topology.Devices)
        {
            var steps = r.Explain(d.Address);
            Assert.NotEmpty(steps);
            if (r.GroupOf(d.Address) is { } g) Assert.EndsWith($"group {g.Id}", steps[^1].Text);
            else Assert.Equal(GroupStepKind.NoGroup, steps[^1].Kind);
        }
    }

    [Fact]
    public void ExplanationsNameTheRootPortTheBridgeAndTheQuirk()
    {
        var r = Compute("g_k61_intel_mixed");
        Assert.Contains(r.Explain(PciAddress.Parse("02:00.0")), s => s.Device == PciAddress.Parse("00:08.0") && s.Text.Contains("00:08.0 is a root port without an ACS capability, so everything below it shares its group"));
        Assert.Contains(r.Explain(PciAddress.Parse("0b:02.0")), s => s.Text.Contains("behind PCIe-to-PCI bridge 0a:00.0, whose requests carry 0b:00.0"));
        Assert.Contains(r.Explain(PciAddress.Parse("00:05.1")), s => s.Kind == GroupStepKind.AcsQuirk && s.Text.StartsWith("ACS quirk for 8086:10d3 applies"));
        Assert.Contains(r.Explain(PciAddress.Parse("03:00.1")), s => s.Kind == GroupStepKind.SameSlotFunction && s.Text.Contains("is another function of the multifunction device"));
        Assert.Contains(r.Explain(PciAddress.Parse("05:00.0")), s => s.Text.Contains("00:0c.1 is a root port without an ACS capability"));
    }

    [Fact]
    public void VirtioIommuFunctionItselfIsExplainedAsUnmanaged()
    {
        var r = Compute("g_k612_virtio_pt");
        var steps = r.Explain(PciAddress.Parse("00:1d.0"));
        Assert.Equal(GroupStepKind.NoGroup, Assert.Single(steps).Kind);
        Assert.Contains("not managed by any IOMMU unit", steps[0].Text);
    }

    [Fact]
    public void EagerAndOnDemandExplanationsAgree()
    {
        var m = MachineSource.Load(Fixtures.OracleTarball("g_k612_intel_mixed"));
        var eager = ModelGrouping.Compute(m, new GroupingOptions { RecordExplanations = true });
        var lazy = ModelGrouping.Compute(m);
        foreach (var d in m.Topology.Devices)
            Assert.Equal(eager.Explain(d.Address), lazy.Explain(d.Address));
    }
}

/// <summary>
/// The snapshots show each ACS control register after the kernel's own enabling step and command line: replaying that
/// step on the recovered firmware value must give back exactly what the kernel wrote, on every machine.
/// </summary>
public class OracleAcsControlTests
{
    [Theory]
    [MemberData(nameof(OracleGroupingTests.Machines), MemberType = typeof(OracleGroupingTests))]
    public void EffectiveAcsControlUnderTheRecordedCommandLineEqualsWhatTheKernelWrote(string name)
    {
        var m = MachineSource.Load(Fixtures.OracleTarball(name));
        var cmd = KernelCommandLine.Parse(m.CommandLine);
        var active = IommuActivation.Decide(m, cmd).Active;
        var acs = AcsPolicy.Create(m, cmd, active);
        int checkedPorts = 0;
        foreach (var d in m.Topology.Devices)
        {
            if (d.Acs is not { } a) continue;
            Assert.True(a.Control == acs.EffectiveControl(d), $"{name} {d.Address}: kernel wrote {a.Control}, model {acs.EffectiveControl(d)}");
            checkedPorts++;
        }
        Assert.True(checkedPorts > 0 || !m.Topology.Devices.Any(d => d.Acs is not null));
    }

    [Fact]
    public void Linux61DisableAcsRedirKeepsTheEnabledBitsOutsideTheMaskAnd612RevertsThemToFirmware()
    {
        AcsFlags? Ctl(string name)
        {
            var m = MachineSource.Load(Fixtures.OracleTarball(name));
            var t = MachineRewrite.WithoutKernelGroups(m);
            var r = ModelGrouping.Compute(t);
            return r.Context!.Acs.EffectiveControl(t.Topology[PciAddress.Parse("00:06.0")]);
        }
        Assert.Equal(AcsFlags.SV | AcsFlags.UF, Ctl("h_disable_acs_redir"));
        Assert.Equal(AcsFlags.None, Ctl("h_k612_disable_acs_redir"));
    }
}
