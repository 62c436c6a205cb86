using System.Text.Json;
using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

public class GroupsCommandTests
{
    [Fact]
    public void GroupsRestingOnFactsANonRootDumpHidesAreMarkedAsGuessesNamingTheDevices()
    {
        // A real desktop dump taken without root: "Capabilities: <access denied>" hides PCIe types and ACS.
        var dump = Path.Combine(FixturesDir, "lspci", "amd-b550-asrock-pg4-nonroot.txt");
        var text = Run("groups", "--source", dump, "--pci-ids", "none");
        var guessed = text.Lines.Where(l => l.StartsWith("Group ", StringComparison.Ordinal) && l.Contains("(a guess: facts missing for ")).ToList();
        Assert.NotEmpty(guessed);
        Assert.Contains("root", text.Err);

        var json = Run("groups", "--json", "--source", dump, "--pci-ids", "none").Json;
        var groups = json.GetProperty("groups").EnumerateArray().ToList();
        var withUnknown = groups.Where(g => g.GetProperty("unknown_facts").GetArrayLength() > 0).ToList();
        Assert.Equal(guessed.Count, withUnknown.Count);
        // Each named device is one whose capabilities the dump hid (or whose bus range is unknown).
        var machine = IommuKit.Sources.MachineSource.Load(dump);
        Assert.All(withUnknown, g => Assert.All(g.GetProperty("unknown_facts").EnumerateArray(), a =>
            Assert.NotEqual(IommuKit.Pci.ConfigVisibility.Full, machine.Topology[IommuKit.Pci.PciAddress.Parse(a.GetString()!)].Facts.Visibility)));
        Assert.Contains(groups, g => g.GetProperty("unknown_facts").GetArrayLength() == 0);
    }

    [Fact]
    public void KernelGroupsAreNeverMarkedAsGuesses()
    {
        var json = Run("groups", "--json", "--source", Oracle("b_rootports"), "--pci-ids", "none").Json;
        Assert.All(json.GetProperty("groups").EnumerateArray(), g => Assert.Equal(0, g.GetProperty("unknown_facts").GetArrayLength()));
    }

    [Theory]
    [MemberData(nameof(MachinesWithLegacyGolden), MemberType = typeof(CliRunner))]
    public void LegacyOutputIsByteForByteRealLspciJoinedWithTheKernelsGroups(string machine)
    {
        // golden/legacy-*.txt come from pciutils' own lspci over the snapshot (make-legacy-golden.sh), not from us.
        var r = Run("groups", "--legacy", "--source", Oracle(machine), "--pci-ids", SampleIds);
        Assert.Equal(File.ReadAllText(Path.Combine(GoldenDir, $"legacy-{machine}.txt")), r.Out);
    }

    [Theory]
    [MemberData(nameof(MachinesWithGroups), MemberType = typeof(CliRunner))]
    public void JsonShowsTheKernelsGroupsTypesRegionsAndDevices(string machine)
    {
        var r = Run("groups", "--json", "--source", Oracle(machine), "--pci-ids", "none");
        Assert.Contains(r.Code, new[] { 0, 1 });
        using var exp = JsonDocument.Parse(File.ReadAllText(OracleExpected(machine)));
        var devices = exp.RootElement.GetProperty("devices").EnumerateArray().ToDictionary(d => d.GetProperty("bdf").GetString()!);
        var got = r.Json;
        Assert.True(got.GetProperty("iommu_active").GetBoolean());
        Assert.Equal("kernel", got.GetProperty("origin").GetString());
        var groups = got.GetProperty("groups").EnumerateArray().ToList();
        var expGroups = exp.RootElement.GetProperty("groups").EnumerateArray().ToList();
        Assert.Equal(expGroups.Count, groups.Count);
        for (int i = 0; i < groups.Count; i++)
        {
            var g = groups[i];
            var e = expGroups[i];
            Assert.Equal(e.GetProperty("id").GetInt32(), g.GetProperty("id").GetInt32());
            Assert.Equal("kernel", g.GetProperty("origin").GetString());
            Assert.Equal(e.GetProperty("type").GetString(), g.GetProperty("type").GetString());
            var regions = e.GetProperty("reserved_regions").EnumerateArray()
                .Select(x => $"{x.GetProperty("start").GetString()} {x.GetProperty("end").GetString()} {x.GetProperty("type").GetString()}");
            Assert.Equal(regions, g.GetProperty("reserved_regions").EnumerateArray().Select(x => x.GetString()));
            Assert.Matches("^[0-9a-f]{12}$", g.GetProperty("fingerprint").GetString());
            var members = g.GetProperty("devices").EnumerateArray().ToList();
            Assert.Equal(e.GetProperty("devices").EnumerateArray().Select(x => x.GetString()), members.Select(m => m.GetProperty("address").GetString()));
            foreach (var m in members)
            {
                var d = devices[m.GetProperty("address").GetString()!];
                Assert.Equal(d.GetProperty("vendor").GetString(), m.GetProperty("vendor").GetString());
                Assert.Equal(d.GetProperty("device").GetString(), m.GetProperty("device").GetString());
                Assert.Equal(d.GetProperty("class").GetString(), m.GetProperty("class").GetString());
                Assert.Equal(d.GetProperty("driver").ValueKind == JsonValueKind.Null ? null : d.GetProperty("driver").GetString(),
                    m.GetProperty("driver").ValueKind == JsonValueKind.Null ? null : m.GetProperty("driver").GetString());
            }
        }
    }

    [Fact]
    public void TextListsEveryGroupWithTypeRegionsFingerprintAndDevices()
    {
        var r = Run("groups", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", SampleIds);
        Assert.Equal(0, r.Code);
        Assert.Equal("", r.Err);
        AssertGolden("groups-g_k612_intel_mixed.txt", r.Out);
    }

    [Fact]
    public void JsonGoldenOfTwoGroupsShowsTheDocumentedSchema()
    {
        var r = Run("groups", "--json", "--group", "3", "--group", "12", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", SampleIds);
        Assert.Equal(0, r.Code);
        AssertGolden("groups-g_k612_intel_mixed-3-12.json", r.Out);
    }

    [Fact]
    public void GroupsWithSameMembersAndIdsHaveTheSameFingerprintAcrossKernels()
    {
        var a = Run("groups", "--json", "--source", Oracle("g_k61_intel_mixed"), "--pci-ids", "none").Json;
        var b = Run("groups", "--json", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none").Json;
        Assert.Equal(a.GetProperty("groups").EnumerateArray().Select(g => g.GetProperty("fingerprint").GetString()),
                     b.GetProperty("groups").EnumerateArray().Select(g => g.GetProperty("fingerprint").GetString()));
    }

    [Theory]
    [MemberData(nameof(MachinesWithoutGroups), MemberType = typeof(CliRunner))]
    public void MachineWithoutAnIommuSaysSoExitsTwoAndShowsThePredictionLabelled(string machine)
    {
        var r = Run("groups", "--source", Oracle(machine), "--pci-ids", "none");
        Assert.Equal(2, r.Code);
        Assert.StartsWith("No active IOMMU: the kernel made no IOMMU groups", r.Lines[3]);
        Assert.Contains(r.Lines, l => l.StartsWith("Prediction: the ") && l.EndsWith(" groups the kernel would make with the IOMMU enabled:"));
        var headers = r.Lines.Where(l => l.StartsWith("Group ")).ToList();
        Assert.NotEmpty(headers);
        Assert.All(headers, h => Assert.Contains("(predicted)", h));

        var j = Run("groups", "--json", "--source", Oracle(machine), "--pci-ids", "none");
        Assert.Equal(2, j.Code);
        Assert.False(j.Json.GetProperty("iommu_active").GetBoolean());
        Assert.Equal("model", j.Json.GetProperty("origin").GetString());
        Assert.All(j.Json.GetProperty("groups").EnumerateArray(), g => Assert.Equal("model", g.GetProperty("origin").GetString()));
    }

    [Theory]
    [InlineData("f_intel_iommu_off")]
    [InlineData("f_no_viommu")]
    public void PredictionWithoutAnIommuIsTheKernelsGroupsTypesAndRegionsOfTheSameTopologyWithVtdOn(string machine)
    {
        // f_intel_iommu_off, f_no_viommu and f_intel_iommu_default are the same topology "E": VT-d off, absent, on.
        static List<string> Groups(JsonElement j) => j.GetProperty("groups").EnumerateArray()
            .Select(g => string.Join(" ", g.GetProperty("devices").EnumerateArray().Select(d => d.GetProperty("address").GetString())) +
                         $" | {g.GetProperty("type").GetString()} | " +
                         string.Join("; ", g.GetProperty("reserved_regions").EnumerateArray().Select(r => r.GetString())))
            .Order(StringComparer.Ordinal).ToList();
        var off = Run("groups", "--json", "--source", Oracle(machine), "--pci-ids", "none");
        var on = Run("groups", "--json", "--source", Oracle("f_intel_iommu_default"), "--pci-ids", "none");
        Assert.Equal(2, off.Code);
        Assert.Equal(Groups(on.Json), Groups(off.Json));
        Assert.Contains(off.Json.GetProperty("warnings").EnumerateArray(), w => w.GetString()!.Contains("assume an Intel VT-d IOMMU"));
    }

    [Fact]
    public void NoIommuTextNamesTheOptionThatTurnedItOff()
    {
        var r = Run("groups", "--source", Oracle("f_intel_iommu_off"), "--pci-ids", SampleIds);
        Assert.Equal(2, r.Code);
        AssertGolden("groups-f_intel_iommu_off.txt", r.Out);
    }

    [Fact]
    public void NoIommuUnderCmdlineNamesTheOptionOfThatCommandLine()
    {
        // Before the fix the advice read the source's command line (intel_iommu=on) and said to enable VT-d in firmware.
        var r = Run("groups", "--cmdline", "intel_iommu=off", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        Assert.Equal(2, r.Code);
        Assert.Contains("The command line turns it off (intel_iommu=off): remove that, and enable VT-d in the firmware.", r.Lines);
    }

    [Fact]
    public void LegacyWithoutAnIommuPrintsNothingOnStdoutAndExitsTwo()
    {
        var r = Run("groups", "--legacy", "--source", Oracle("f_no_viommu"), "--pci-ids", "none");
        Assert.Equal(2, r.Code);
        Assert.Equal("", r.Out);
        Assert.Contains("no active IOMMU", r.Err);
    }

    [Fact]
    public void GpuFilterKeepsOnlyGroupsWithADisplayController()
    {
        var r = Run("groups", "--gpu", "--json", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        var groups = r.Json.GetProperty("groups").EnumerateArray().ToList();
        Assert.Single(groups);
        Assert.Equal("0x030000", groups[0].GetProperty("devices")[0].GetProperty("class").GetString());
    }

    [Fact]
    public void StorageFilterKeepsTheWholeGroupOfTheSataController()
    {
        var r = Run("groups", "--storage", "--legacy", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", SampleIds);
        Assert.Equal(
        [
            "IOMMU Group 12 00:1f.0 ISA bridge [0601]: Intel Corporation 82801IB (ICH9) LPC Interface Controller [8086:2918] (rev 02)",
            "IOMMU Group 12 00:1f.2 SATA controller [0106]: Intel Corporation 82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode] [8086:2922] (rev 02)",
            "IOMMU Group 12 00:1f.3 Serial bus controller [0c05]: Intel Corporation Device [8086:2930] (rev 02)",
        ], r.Lines);
    }

    [Fact]
    public void GroupFilterIsRepeatableAndCombinesWithAClassFilter()
    {
        var r = Run("groups", "--group", "9", "--group", "1", "--json", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        Assert.Equal([1, 9], r.Json.GetProperty("groups").EnumerateArray().Select(g => g.GetProperty("id").GetInt32()));
        var n = Run("groups", "--group", "1", "--network", "--json", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        Assert.Equal(0, n.Json.GetProperty("groups").GetArrayLength());
    }

    [Fact]
    public void UnknownGroupNumberIsBadInput()
    {
        var r = Run("groups", "--group", "99", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        Assert.Equal(3, r.Code);
        Assert.Equal("", r.Out);
        Assert.Contains("group 99: no such group", r.Err);
    }

    [Fact]
    public void MissingSourceFileIsBadInput()
    {
        var r = Run("groups", "--source", "/nonexistent/machine.tar.gz");
        Assert.Equal(3, r.Code);
        Assert.StartsWith("iommu: ", r.Err);
    }

    [Fact]
    public void JsonAndLegacyTogetherIsAUsageError()
    {
        var r = Run("groups", "--json", "--legacy", "--source", Oracle("g_k612_intel_mixed"));
        Assert.Equal(4, r.Code);
    }

    [Fact]
    public void UnreadablePciIdsIsBadInput()
    {
        var r = Run("groups", "--pci-ids", "/nonexistent/pci.ids", "--source", Oracle("g_k612_intel_mixed"));
        Assert.Equal(3, r.Code);
    }

    [Fact]
    public void CmdlineOverrideShowsTheModelsGroupsAndSaysWhy()
    {
        var r = Run("groups", "--json", "--cmdline", "intel_iommu=on", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        Assert.Equal(0, r.Code);
        Assert.Equal("model", r.Json.GetProperty("origin").GetString());
        Assert.Equal("intel_iommu=on", r.Json.GetProperty("cmdline").GetString());
        Assert.Contains(r.Json.GetProperty("warnings").EnumerateArray(), w => w.GetString()!.Contains("under --cmdline"));
    }

    /// <summary>A live Debian host's command line: boot loader noise around the few parameters IommuKit reads.</summary>
    private const string LiveCommandLine =
        "BOOT_IMAGE=/boot/vmlinuz-6.12.95+deb12-amd64 root=UUID=0f3c6a52-8e1b-4a57-9c35-4d7a1f0b2e11 ro quiet splash " +
        "intel_iommu=on iommu=pt vfio-pci.ids=10de:2484,10de:228b rd.driver.pre=vfio-pci mitigations=auto " +
        "pcie_acs_override=downstream,multifunction iommu.strict=1 vfio_iommu_type1.allow_unsafe_interrupts=1 " +
        "loglevel=3 nvidia-drm.modeset=1";

    [Fact]
    public void HeaderShowsOnlyTheCommandLineParametersIommuKitReadsAndCountsTheRest()
    {
        var r = Run("groups", "--cmdline", LiveCommandLine, "--group", "0", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", SampleIds);
        AssertGolden("groups-live-cmdline.txt", r.Out);
        Assert.Equal(LiveCommandLine, Run("groups", "--json", "--cmdline", LiveCommandLine, "--group", "0",
            "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none").Json.GetProperty("cmdline").GetString());
    }

    [Theory]
    [InlineData("", "(none)")]
    [InlineData("quiet splash", "no IOMMU or ACS parameters (+2 others)")]
    [InlineData("quiet intel-iommu=on", "intel-iommu=on (+1 other)")]
    [InlineData("pci=noaer,config_acs=xx000x@00:1c.0 iommu.passthrough=0", "pci=noaer,config_acs=xx000x@00:1c.0 iommu.passthrough=0")]
    [InlineData("iommu_foo=1 iommu. dyndbg=\"file x +p\"", "no IOMMU or ACS parameters (+3 others)")]
    [InlineData("intremap=off x \"amd_iommu=on fullflush\"", "intremap=off amd_iommu=\"on fullflush\" (+1 other)")]
    public void CommandLineSummaryKeepsWhatTheModelsReadInOrder(string text, string expected)
    {
        Assert.Equal(expected, Rendering.CommandLineText.Summary(KernelCommandLine.Parse(text)));
    }
}
