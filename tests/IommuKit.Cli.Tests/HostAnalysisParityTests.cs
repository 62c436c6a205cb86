using IommuKit.Host;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Cli.Tests;

/// <summary>
/// A library caller gets exactly what the command prints: <see cref="HostAnalysis"/>'s records against the JSON of
/// the same commands, on every captured machine and on real lspci dumps (the CLI holds no policy of its own).
/// </summary>
public class HostAnalysisParityTests
{
    public static IEnumerable<object[]> Sources() =>
        Directory.GetFiles(Path.Combine(CliRunner.FixturesDir, "oracle"), "*.tar.gz").Order().Select(p => new object[] { p })
            .Concat(Directory.GetFiles(Path.Combine(CliRunner.FixturesDir, "lspci"), "*.txt").Order().Take(12).Select(p => new object[] { p }));

    [Theory]
    [MemberData(nameof(Sources))]
    public void GroupsJsonIsTheHostReport(string path)
    {
        var report = HostAnalysis.Analyze(MachineSource.Load(path));
        var cli = CliRunner.Run("groups", "--json", "--pci-ids", "none", "--source", path);
        Assert.Equal(report.State == IommuState.Off ? 2 : report.Disagreements.Count > 0 ? 1 : 0, cli.Code);
        var json = cli.Json;
        Assert.Equal(report.Predicted ? "model" : "kernel", json.GetProperty("origin").GetString());
        var groups = json.GetProperty("groups").EnumerateArray().ToList();
        Assert.Equal(report.Groups.Count, groups.Count);
        for (int i = 0; i < groups.Count; i++)
        {
            var g = report.Groups[i];
            Assert.Equal(g.Id, groups[i].GetProperty("id").GetInt32());
            Assert.Equal(g.Fingerprint, groups[i].GetProperty("fingerprint").GetString());
            Assert.Equal(g.Type, groups[i].GetProperty("type").GetString());
            Assert.Equal(g.Devices.Select(d => d.Address.ToString()), groups[i].GetProperty("devices").EnumerateArray().Select(d => d.GetProperty("address").GetString()));
        }
        Assert.Equal(report.Disagreements.Select(d => d.Text), json.GetProperty("disagreements").EnumerateArray().Select(x => x.GetString()));
        Assert.Equal(report.Notes, json.GetProperty("warnings").EnumerateArray().Select(x => x.GetString()));
    }

    [Theory]
    [MemberData(nameof(Sources))]
    public void ExplainAndVfioCheckJsonAreTheHostRecords(string path)
    {
        var report = HostAnalysis.Analyze(MachineSource.Load(path));
        var device = report.Machine.Topology.Devices[^1].Address;
        var explain = HostAnalysis.Explain(report, device);
        var cliExplain = CliRunner.Run("explain", device.ToString(), "--json", "--pci-ids", "none", "--source", path).Json;
        Assert.Equal(explain.Steps.Select(s => s.Text), cliExplain.GetProperty("steps").EnumerateArray().Select(s => s.GetProperty("text").GetString()));
        var vfio = HostAnalysis.VfioCheck(report, device, null);
        var cliVfio = CliRunner.Run("vfio-check", device.ToString(), "--json", "--pci-ids", "none", "--source", path).Json;
        string word = vfio.Class switch
        {
            VerdictClass.Ready => "ready", VerdictClass.NeedsBinding => "needs-binding", VerdictClass.SharesGroup => "shares-group",
            VerdictClass.NotAssignable => "not-assignable", _ => "no-iommu",
        };
        Assert.Equal(word, cliVfio.GetProperty("verdict").GetString());
        Assert.Equal(vfio.Problems, cliVfio.GetProperty("problems").EnumerateArray().Select(x => x.GetString()));
    }
}
