using IommuKit.Samples;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests;

/// <summary>The package README (docs/library.md) shows docs/samples/ReadmeSample.cs, which this project compiles; run
/// on a QEMU capture, it prints the groups the captured kernel made, members and numbers.</summary>
public class ReadmeSampleTests
{
    [Theory]
    [InlineData("d_pcibridge")]
    [InlineData("c_switch")]
    [InlineData("h_amd_iommu")]
    public void TheReadmeExamplePrintsTheGroupsTheCapturedKernelMade(string capture)
    {
        string path = Fixtures.OracleTarball(capture);
        var output = new StringWriter();
        ReadmeSample.PrintGroups(path, output);

        var printed = new Dictionary<string, int>();
        int group = -1;
        foreach (string line in output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("group ", StringComparison.Ordinal)) group = int.Parse(line.Split(' ')[1]);
            else printed.Add(line.Trim().Split(' ')[0], group);
        }
        var kernel = MachineSource.Load(path).Topology.Devices
            .Where(d => d.Facts.KernelGroup is not null)
            .ToDictionary(d => d.Address.ToString(), d => d.Facts.KernelGroup!.Value);
        Assert.NotEmpty(kernel);
        Assert.Equal(kernel.OrderBy(p => p.Key), printed.OrderBy(p => p.Key));
    }

    [Fact]
    public void TheReadmeShowsTheExampleThatIsCompiledAndRun()
    {
        string doc = File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "docs", "library.md")).ReplaceLineEndings("\n");
        string source = File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "docs", "samples", "ReadmeSample.cs")).ReplaceLineEndings("\n");
        Assert.Contains("```csharp\n" + source.TrimEnd() + "\n```", doc);
    }
}
