using System.Text.Json;
using IommuKit.Host;
using IommuKit.Passthrough;
using IommuKit.Sources;
using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

/// <summary>
/// Issue 10: vfio-check answers "can I give this card to a VM, and what must I do?" with one class, over real dumps
/// of real machines (tests/fixtures/lspci, SOURCES.md says where each came from).
/// </summary>
public class VerdictTests
{
    private static string Dump(string name) => Path.Combine(FixturesDir, "lspci", name + ".txt");
    private const string B560 = "intel-b560-rocketlake-asrock-b560m-hdv-debian-acs-iommugroups";
    private const string X99 = "intel-x99-asrock-extreme4-pve";
    private const string Z690 = "intel-z690-alderlake-asrock-z690-pro-rs-debian-acs-iommugroups";

    private static CliRunner.Result Check(string dump, string address, params string[] more) =>
        Run(["vfio-check", address, "--json", "--pci-ids", "none", "--source", Dump(dump), .. more]);

    [Fact]
    public void GtxAloneInItsGroupOnHostDriversNeedsBindingNotNotViable()
    {
        var r = Check(B560, "01:00.0");
        Assert.Equal(0, r.Code);
        var j = r.Json;
        Assert.Equal("needs-binding", j.GetProperty("verdict").GetString());
        Assert.Equal(8, j.GetProperty("group").GetProperty("id").GetInt32());
        Assert.Equal(["asked", "same-card", "same-card", "same-card"], j.GetProperty("devices").EnumerateArray().Select(d => d.GetProperty("role").GetString()));
        Assert.Equal(["nvidia", "snd_hda_intel", "xhci_hcd", null], j.GetProperty("devices").EnumerateArray().Select(d => d.GetProperty("driver").GetString()));
        var steps = j.GetProperty("steps").EnumerateArray().ToList();
        Assert.Equal(["unbind", "override", "probe"], steps.Take(3).Select(s => s.GetProperty("action").GetString()));
        Assert.Equal("/sys/bus/pci/drivers/nvidia/unbind", steps[0].GetProperty("path").GetString());
        Assert.Equal("/sys/bus/pci/devices/0000:01:00.0/driver_override", steps[1].GetProperty("path").GetString());
        Assert.Equal("vfio-pci", steps[1].GetProperty("text").GetString());
        Assert.Equal("/sys/bus/pci/drivers_probe", steps[2].GetProperty("path").GetString());
        // The UCSI function has no driver: override and probe only.
        Assert.Equal(11, steps.Count);
    }

    [Fact]
    public void GtxVerdictTextIsGolden()
    {
        var r = Run("vfio-check", "01:00.0", "--pci-ids", "none", "--source", Dump(B560));
        Assert.Equal(0, r.Code);
        Assert.DoesNotContain("NOT VIABLE", r.Out);
        Assert.Contains("Verdict: NEEDS BINDING: 01:00.0 (group 8) holds only this card", r.Out);
        AssertGolden("vfio-check-b560-gtx1660.txt", r.Out);
    }

    [Theory]
    [InlineData(X99, "00:05.4")] // I/O APIC
    [InlineData(B560, "00:1f.0")] // LPC
    [InlineData(B560, "00:1f.4")] // SMBus
    [InlineData(B560, "00:01.0")] // root port
    [InlineData(B560, "00:00.0")] // host bridge
    [InlineData(B560, "00:08.0")] // system peripheral
    public void HostFunctionsAreNotAssignableAndNeverAdvisedToBind(string dump, string address)
    {
        var r = Check(dump, address);
        Assert.Equal(1, r.Code);
        Assert.Equal("not-assignable", r.Json.GetProperty("verdict").GetString());
        Assert.Contains("never passed through", Assert.Single(r.Json.GetProperty("reasons").EnumerateArray()).GetString());
        var b = Run("bind", address, "--source", Dump(dump));
        Assert.Equal(1, b.Code);
        Assert.Contains($"iommu: refusing to bind {address}: not-assignable", b.Err);
    }

    [Fact]
    public void ManagementEngineIsAssignableOnlyWithForce()
    {
        Assert.Equal("not-assignable", Check(B560, "00:16.0").Json.GetProperty("verdict").GetString());
        var forced = Check(B560, "00:16.0", "--force");
        Assert.Equal("needs-binding", forced.Json.GetProperty("verdict").GetString());
        Assert.Equal(0, forced.Code);
    }

    [Fact]
    public void OnboardAudioSharingThePchGroupSharesItAndNamesWhatTheHostLoses()
    {
        var r = Check(B560, "00:1f.3");
        Assert.Equal(1, r.Code);
        var j = r.Json;
        Assert.Equal("shares-group", j.GetProperty("verdict").GetString());
        var roles = j.GetProperty("devices").EnumerateArray().ToDictionary(d => d.GetProperty("address").GetString()!, d => d.GetProperty("role").GetString());
        Assert.Equal("asked", roles["0000:00:1f.3"]);
        Assert.All(new[] { "0000:00:1f.0", "0000:00:1f.4", "0000:00:1f.5", "0000:00:1f.6" }, a => Assert.Equal("other", roles[a]));
        var losses = j.GetProperty("host_losses").EnumerateArray().Select(l => l.GetProperty("address").GetString()).ToList();
        Assert.Contains("0000:00:1f.0", losses);
        Assert.Contains("0000:00:1f.4", losses);
        Assert.Contains(j.GetProperty("splits").EnumerateArray(), s => s.GetString()!.StartsWith("pcie_acs_override", StringComparison.Ordinal));
        Assert.Equal(1, Run("bind", "00:1f.3", "--source", Dump(B560)).Code);
    }

    [Fact]
    public void RelatedFunctionInAnotherGroupIsListedAndBoundWithTheCard()
    {
        var r = Check(Z690, "03:00.0");
        Assert.Equal(0, r.Code);
        var related = Assert.Single(r.Json.GetProperty("related").EnumerateArray());
        Assert.Equal("0000:03:00.1", related.GetProperty("address").GetString());
        Assert.Equal(16, related.GetProperty("group").GetInt32());
        Assert.Contains(r.Json.GetProperty("steps").EnumerateArray(),
            s => s.GetProperty("path").GetString() == "/sys/bus/pci/devices/0000:03:00.1/driver_override");
        var text = Run("vfio-check", "03:00.0", "--pci-ids", "none", "--source", Dump(Z690));
        Assert.Contains("  - 03:00.1 is part of this card and sits in group 16 (driver snd_hda_intel)", text.Lines);
    }

    [Fact]
    public void DriverlessDisplayAloneInItsGroupIsReady()
    {
        var r = Run("vfio-check", "00:01.0", "--json", "--pci-ids", "none", "--source", Oracle("g_k612_intel_mixed"));
        Assert.Equal(0, r.Code);
        Assert.Equal("ready", r.Json.GetProperty("verdict").GetString());
        Assert.True(r.Json.GetProperty("viable").GetBoolean());
    }

    [Fact]
    public void AGroupOfPciStubFunctionsWithTheLpcBridgeSharesItDespiteBeingViable()
    {
        // Every member is on pci-stub, so the kernel would let VFIO take the group; but it holds the LPC bridge and
        // SMBus: the user would give the platform's own functions away.
        var r = Run("vfio-check", "--group", "9", "--json", "--pci-ids", "none", "--source", Oracle("g_k612_virtio_pt"));
        Assert.Equal(1, r.Code);
        Assert.Equal("shares-group", r.Json.GetProperty("verdict").GetString());
        Assert.True(r.Json.GetProperty("viable").GetBoolean());
        Assert.Equal("0000:00:1f.2", r.Json.GetProperty("devices").EnumerateArray().Single(d => d.GetProperty("role").GetString() == "asked").GetProperty("address").GetString());
    }

    [Fact]
    public void VmWithoutAVirtualIommuIsNoIommuAndSaysSo()
    {
        var r = Run("vfio-check", "01:00.0", "--json", "--pci-ids", "none", "--source", Oracle("f_no_viommu"));
        Assert.Equal(2, r.Code);
        Assert.Equal("no-iommu", r.Json.GetProperty("verdict").GetString());
        Assert.Contains("virtual machine without a virtual IOMMU", r.Json.GetProperty("no_iommu_cause").GetString());
    }

    [Fact]
    public void IntelIommuOffNamesTheSwitch()
    {
        var r = Run("vfio-check", "00:04.0", "--json", "--pci-ids", "none", "--source", Oracle("f_intel_iommu_off"));
        Assert.Equal(2, r.Code);
        Assert.Contains("intel_iommu=off", r.Json.GetProperty("no_iommu_cause").GetString());
    }

    [Fact]
    public void ModelDisagreementIsOneNoteAboutTheAskedGroupAndKeepsTheExitCode()
    {
        var r = Run("vfio-check", "00:05.4", "--pci-ids", "none", "--source", Dump(X99));
        var notes = r.Err.Split('\n').Where(l => l.Contains("model", StringComparison.Ordinal) && l.Contains("kernel", StringComparison.Ordinal)).ToList();
        Assert.Equal("warning: the model does not reproduce the kernel's group 35 (4 differences); the verdict uses the kernel's group (--check-model lists them and makes them an error)",
            Assert.Single(notes));
        var ready = Run("vfio-check", "01:00.0", "--pci-ids", "none", "--source", Dump(X99), "--check-model");
        Assert.Contains(ready.Err.Split('\n'), l => l.StartsWith("warning: model disagrees with the kernel:", StringComparison.Ordinal));
        Assert.Equal(1, ready.Code);
    }

    public static IEnumerable<object[]> Dumps() =>
        Directory.EnumerateFiles(Path.Combine(FixturesDir, "lspci"), "*.txt").Order().Select(f => new object[] { Path.GetFileNameWithoutExtension(f) });

    /// <summary>
    /// On every real dump, for every device: a host function is never ready or needs-binding, never appears in a plan's
    /// steps, and the exit code is the class's.
    /// </summary>
    [Theory]
    [MemberData(nameof(Dumps))]
    public void NoHostFunctionIsEverReadyOrBoundOnAnyRealDump(string dump)
    {
        var machine = MachineSource.Load(Dump(dump));
        var report = HostAnalysis.Analyze(machine);
        foreach (var d in machine.Topology.Devices)
        {
            var v = HostAnalysis.VfioCheck(report, d.Address, null);
            if (HostFunctions.Classify(d) is { } k && k != HostFunctionKind.ManagementEngine)
                Assert.True(v.Class is VerdictClass.NotAssignable or VerdictClass.NoIommu, $"{dump} {d.Address} ({k}) is {v.Class}");
            foreach (var s in v.Steps)
            {
                var target = machine.Topology.Find(IommuKit.Pci.PciAddress.Parse(s.Device!))!;
                Assert.True(HostFunctions.Classify(target) is null, $"{dump}: the plan for {d.Address} touches host function {target.Address}");
            }
            if (v.Class == VerdictClass.NeedsBinding) Assert.NotEmpty(v.Steps);
            if (v.Class is VerdictClass.Ready or VerdictClass.NeedsBinding)
                Assert.DoesNotContain(v.Members, m => m.Role == DeviceRole.Other);
        }
    }
}
