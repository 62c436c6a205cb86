using System.Text.Json;
using IommuKit.Host;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Cli.Tests;

/// <summary>
/// <c>iommu fleet</c> over the captured machines and the real dumps gives, per machine and device class, the counts
/// that running <c>iommu vfio-check ADDRESS --json</c> on each device of that class one machine at a time gives.
/// </summary>
public class FleetCommandTests
{
    private static string OracleDir => Path.Combine(CliRunner.FixturesDir, "oracle");
    private static string LspciDir => Path.Combine(CliRunner.FixturesDir, "lspci");

    [Fact]
    public void FleetCountsEqualVfioCheckRunMachineByMachine()
    {
        var run = CliRunner.Run("fleet", "--json", OracleDir, LspciDir);
        Assert.Equal(0, run.Code);
        var machines = run.Json.GetProperty("machines").EnumerateArray().ToList();
        var expectedFiles = Directory.GetFiles(OracleDir, "*.tar.gz").Concat(Directory.GetFiles(LspciDir, "*.txt")).ToList();
        Assert.Equal(expectedFiles.Count, machines.Count);
        // The oracle directory's *.expected.json are JSON but not machines: reported and skipped, never fatal.
        var skipped = run.Json.GetProperty("skipped").EnumerateArray().Select(s => s.GetProperty("path").GetString()!).ToList();
        Assert.Equal(Directory.GetFiles(OracleDir, "*.expected.json").Order(StringComparer.Ordinal).Select(p => p.Replace(CliRunner.FixturesDir + "/", "")), skipped);
        Assert.Equal(skipped.Count, run.Err.Split('\n').Count(l => l.StartsWith("warning: skipped ", StringComparison.Ordinal)));

        int counted = 0;
        foreach (var m in machines)
        {
            var path = Path.Combine(CliRunner.FixturesDir, m.GetProperty("path").GetString()!);
            var machine = MachineSource.Load(path);
            var expected = new Dictionary<string, Dictionary<string, int>>();
            foreach (var d in machine.Topology.Devices)
            {
                if (Fleet.ClassOf(d) is not { } cls) continue;
                var name = cls switch { AssignableClass.Gpu => "gpu", AssignableClass.Nic => "nic", _ => "nvme" };
                var check = CliRunner.Run("vfio-check", d.Address.ToString(), "--json", "--pci-ids", "none", "--source", path);
                var word = check.Json.GetProperty("verdict").GetString()!;
                if (!expected.TryGetValue(name, out var byWord)) expected[name] = byWord = [];
                byWord[word] = byWord.GetValueOrDefault(word) + 1;
                counted++;
            }
            foreach (var cls in m.GetProperty("classes").EnumerateObject())
            {
                var byWord = expected.GetValueOrDefault(cls.Name) ?? [];
                Assert.Equal(byWord.Values.Sum(), cls.Value.GetProperty("devices").GetInt32());
                foreach (var word in new[] { "ready", "needs-binding", "shares-group", "not-assignable", "no-iommu" })
                    Assert.True(byWord.GetValueOrDefault(word) == cls.Value.GetProperty(word).GetInt32(),
                        $"{path} {cls.Name} {word}: fleet {cls.Value.GetProperty(word).GetInt32()}, vfio-check {byWord.GetValueOrDefault(word)}");
            }
        }
        Assert.True(counted > 100, "the fixtures hold GPUs, NICs and NVMe drives to count");
    }

    [Fact]
    public void ABaselineOfOneMachineShowsTheOthersDrifting()
    {
        var c = CliRunner.Oracle("c_switch");
        var d = CliRunner.Oracle("d_pcibridge");
        var fingerprints = HostAnalysis.Analyze(MachineSource.Load(c)).Groups.Select(g => g.Fingerprint).ToList();
        var baseline = Path.Combine(Path.GetTempPath(), $"iommu-baseline-{Guid.NewGuid():n}.txt");
        File.WriteAllLines(baseline, ["# c_switch", .. fingerprints.Select(f => f + "  a comment")]);
        try
        {
            var run = CliRunner.Run("fleet", "--json", "--baseline", baseline, c, d);
            Assert.Equal(1, run.Code);
            var ms = run.Json.GetProperty("machines").EnumerateArray().ToList();
            Assert.Empty(ms[0].GetProperty("drifted").EnumerateArray());
            var otherGroups = HostAnalysis.Analyze(MachineSource.Load(d)).Groups.Select(g => g.Fingerprint).Where(f => !fingerprints.Contains(f));
            Assert.Equal(otherGroups, ms[1].GetProperty("drifted").EnumerateArray().Select(x => x.GetString()));
            Assert.Equal(0, CliRunner.Run("fleet", "--baseline", baseline, c).Code);
            File.WriteAllText(baseline, "not-a-fingerprint\n");
            var bad = CliRunner.Run("fleet", "--baseline", baseline, c);
            Assert.Equal(3, bad.Code);
            Assert.Contains(":1: 'not-a-fingerprint' is not a group fingerprint", bad.Err, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(baseline);
        }
    }

    [Fact]
    public void CsvHasOneRowPerMachineAndClassAndBadFilesAreSkipped()
    {
        var bad = Path.Combine(Path.GetTempPath(), $"iommu-bad-{Guid.NewGuid():n}.json");
        File.WriteAllText(bad, "{ \"format\": \"iommukit-machine\", \"version\": 1, ");
        try
        {
            var run = CliRunner.Run("fleet", "--csv", CliRunner.Oracle("c_switch"), bad, CliRunner.Oracle("a_rootcomplex"));
            Assert.Equal(0, run.Code);
            var lines = run.Lines;
            Assert.Equal("machine,class,devices,ready,needs_binding,shares_group,not_assignable,no_iommu,groups,iommu,drifted_groups", lines[0]);
            Assert.Equal(1 + 2 * 3, lines.Length);
            Assert.StartsWith("oracle/c_switch.tar.gz,gpu,", lines[1], StringComparison.Ordinal);
            Assert.StartsWith("oracle/a_rootcomplex.tar.gz,nvme,", lines[6], StringComparison.Ordinal);
            Assert.Contains($"warning: skipped {bad}", run.Err, StringComparison.Ordinal);
            Assert.Equal(3, CliRunner.Run("fleet", bad).Code);
        }
        finally
        {
            File.Delete(bad);
        }
    }

    [Fact]
    public void SurveyDoesNotDependOnParallelism()
    {
        var paths = Directory.GetFiles(OracleDir, "*.tar.gz").Order(StringComparer.Ordinal).Take(12).ToList();
        var one = Fleet.Survey(paths, MachineSource.Load, maxParallelism: 1);
        var many = Fleet.Survey(paths, MachineSource.Load, maxParallelism: 4);
        Assert.Equal(one.Machines.Select(m => (m.Path, m.Groups, string.Join(",", m.Fingerprints), string.Join(";", m.Classes))),
            many.Machines.Select(m => (m.Path, m.Groups, string.Join(",", m.Fingerprints), string.Join(";", m.Classes))));
    }
}
