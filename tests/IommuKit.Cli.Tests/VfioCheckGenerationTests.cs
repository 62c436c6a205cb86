using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

/// <summary>vfio-check end to end on oracle machines edited as JSON machines: another kernel, a firmware RMRR.</summary>
public class VfioCheckGenerationTests
{
    private static string Write(Machine m, string tag)
    {
        var path = Path.Combine(Path.GetTempPath(), $"iommukit-cli-{tag}-{Environment.ProcessId}.json");
        File.WriteAllText(path, MachineJson.ToJson(m));
        return path;
    }

    private static Machine With(Machine m, string? kernel = null, IReadOnlyList<KernelGroup>? groups = null) =>
        m with { KernelRelease = kernel ?? m.KernelRelease, KernelGroups = groups ?? m.KernelGroups };

    [Fact]
    public void OnA515KernelTheViableGroupRuleAppliesAndBridgesPassWhateverTheirDriver()
    {
        // Group 9 of g_k612_intel_mixed: root ports 00:0c.0/.1 (pcieport) and two e1000e NICs.
        var path = Write(With(MachineSource.Load(Oracle("g_k612_intel_mixed")), kernel: "5.15.0-91-generic"), "k515");
        try
        {
            var r = Run("vfio-check", "--group", "9", "--json", "--source", path, "--pci-ids", "none");
            Assert.Equal(1, r.Code);
            Assert.Equal("viable-group", r.Json.GetProperty("rule").GetString());
            var devices = r.Json.GetProperty("devices").EnumerateArray().ToList();
            Assert.Equal("PCI interconnect (header type 1), allowed with pcieport", devices[0].GetProperty("reason").GetString());
            Assert.Equal("driver e1000e is not VFIO or an allowed driver (group not viable)", devices[2].GetProperty("reason").GetString());
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void DirectRegionInTheKernelsReservedRegionsMakesADriverlessGroupNotViable()
    {
        var m = MachineSource.Load(Oracle("g_k612_intel_mixed"));
        var rmrr = new ReservedRegionText(0x7a000000, 0x7a1fffff, "direct");
        var groups = m.KernelGroups!.Select(g => g.Id == 1 ? g with { ReservedRegions = [rmrr, .. g.ReservedRegions] } : g).ToList();
        var path = Write(With(m, groups: groups), "rmrr");
        try
        {
            var r = Run("vfio-check", "00:01.0", "--source", path, "--pci-ids", "none");
            Assert.Equal(1, r.Code);
            Assert.Contains("  - direct region 0x7a000000-0x7a1fffff (firmware RMRR): the kernel refuses a blocking or VM domain for the group (EINVAL)", r.Lines);
            Assert.Contains(r.Lines, l => l.StartsWith("  asked     00:01.0"));
            Assert.Contains(r.Lines, l => l.StartsWith("Verdict: NOT ASSIGNABLE: 00:01.0 (group 1)"));
        }
        finally { File.Delete(path); }
    }
}
