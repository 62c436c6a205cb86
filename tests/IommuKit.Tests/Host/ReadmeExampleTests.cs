using IommuKit.Host;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Host;

/// <summary>The README's library example compiles and answers as the command does (kept verbatim below).</summary>
public class ReadmeExampleTests
{
    private static void Example(TextWriter Console, string path)
    {
        var machine = MachineSource.Load(path);
        var report = HostAnalysis.Analyze(machine);         // the groups exactly as `iommu groups` shows them
        foreach (var g in report.Groups)
            Console.WriteLine($"group {g.Id} {g.Type}: {string.Join(' ', g.Devices.Select(d => d.Address))}");
        var nic = report.Groups.SelectMany(g => g.Devices).First(d => d.ClassCode >> 16 == 0x02);
        var check = HostAnalysis.VfioCheck(report, nic.Address, group: null);
        Console.WriteLine($"{nic.Address}: {check.Class}; {string.Join("; ", check.Steps.Select(Wording.Action))}");
    }

    [Fact]
    public void TheReadmeExampleRunsOnACapturedMachine()
    {
        var output = new StringWriter();
        Example(output, Fixtures.OracleTarball("b_rootports"));
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("group 4 DMA-FQ: 0000:00:08.0 0000:03:00.0", lines);
        Assert.StartsWith("0000:03:00.0: NeedsBinding; unbind 0000:03:00.0 from e1000e: echo 0000:03:00.0 > /sys/bus/pci/drivers/e1000e/unbind; ", lines[^1]);
    }

    [Fact]
    public void TheReadmeShowsTheSameCode()
    {
        string readme = File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "README.md"));
        int start = readme.IndexOf("```csharp\nusing IommuKit.Host;", StringComparison.Ordinal);
        Assert.True(start >= 0, "README has no library example");
        var block = readme[start..readme.IndexOf("```\n", start + 10, StringComparison.Ordinal)];
        string mine = File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "tests", "IommuKit.Tests", "Host", "ReadmeExampleTests.cs"));
        foreach (var line in block.Split('\n').Skip(4).Where(l => l.Trim().Length > 0 && !l.Contains("MachineSource.Load")))
            Assert.Contains(line.Trim(), mine);
    }
}
