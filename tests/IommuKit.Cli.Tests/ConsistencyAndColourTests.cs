using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

public class ConsistencyAndColourTests
{
    /// <summary>g_k612_intel_mixed with the kernel's group 3 cut in two: 00:04.1 alone in a new group 19.</summary>
    private static string MachineWithATamperedKernelGroup()
    {
        var m = MachineSource.Load(Oracle("g_k612_intel_mixed"));
        var gone = PciAddress.Parse("0000:00:04.1");
        var groups = m.KernelGroups!.Select(g => g.Id == 3 ? g with { Devices = g.Devices.Where(d => d != gone).ToList() } : g).ToList();
        groups.Add(new KernelGroup(19, "DMA-FQ", groups[0].ReservedRegions, [gone]));
        var tampered = m with { KernelGroups = groups };
        var path = Path.Combine(Path.GetTempPath(), $"iommukit-cli-tampered-{Environment.ProcessId}.json");
        File.WriteAllText(path, MachineJson.ToJson(tampered));
        return path;
    }

    [Fact]
    public void KernelGroupsTheModelDisagreesWithAreShownWithAWarningNamingTheDevicesAndExitOne()
    {
        var path = MachineWithATamperedKernelGroup();
        try
        {
            var r = Run("groups", "--source", path, "--pci-ids", "none");
            Assert.Equal(1, r.Code);
            Assert.Contains("20 IOMMU groups from the kernel; the model disagrees in 2 place(s).", r.Lines);
            Assert.Contains("warning: model disagrees with the kernel: kernel group 3 is 00:04.0; the model's group 3 is 00:04.0 00:04.1", r.Err);
            Assert.Contains("warning: model disagrees with the kernel: kernel group 19 is 00:04.1; the model's group 3 is 00:04.0 00:04.1", r.Err);
            var j = Run("groups", "--json", "--source", path, "--pci-ids", "none");
            Assert.Equal(2, j.Json.GetProperty("disagreements").GetArrayLength());
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void ManyDisagreementsAreAFewLinesAndACountWhileJsonListsThemAll()
    {
        // The kernel's groups merged in pairs (0+1, 2+3, ...): the model disagrees once per merged pair.
        var m = MachineSource.Load(Oracle("g_k612_intel_mixed"));
        var kg = m.KernelGroups!.OrderBy(g => g.Id).ToList();
        var pairs = kg.Chunk(2).Select(p => p[0] with { Devices = p.SelectMany(g => g.Devices).ToList() }).ToList();
        var merged = m with { KernelGroups = pairs };
        var path = Path.Combine(Path.GetTempPath(), $"iommukit-cli-merged-{Environment.ProcessId}.json");
        File.WriteAllText(path, MachineJson.ToJson(merged));
        try
        {
            var j = Run("groups", "--json", "--source", path, "--pci-ids", "none");
            int total = j.Json.GetProperty("disagreements").GetArrayLength();
            Assert.True(total > Rendering.ReportText.MaxDisagreementLines, $"only {total} disagreements");
            var r = Run("groups", "--source", path, "--pci-ids", "none");
            Assert.Equal(1, r.Code);
            var lines = r.Err.Split('\n').Where(l => l.StartsWith("warning: model disagrees with the kernel", StringComparison.Ordinal)).ToList();
            Assert.Equal(Rendering.ReportText.MaxDisagreementLines + 1, lines.Count);
            Assert.Equal($"warning: model disagrees with the kernel in {total - Rendering.ReportText.MaxDisagreementLines} more place(s): --json lists every one (\"disagreements\")", lines[^1]);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void ExplainReportsOnlyTheDisagreementsAboutItsDevice()
    {
        var path = MachineWithATamperedKernelGroup();
        try
        {
            var split = Run("explain", "00:04.1", "--json", "--source", path, "--pci-ids", "none");
            Assert.Equal(1, split.Code);
            Assert.Equal(2, split.Json.GetProperty("disagreements").GetArrayLength());
            var other = Run("explain", "00:1f.2", "--source", path, "--pci-ids", "none");
            Assert.Equal(0, other.Code);
            Assert.DoesNotContain("model disagrees", other.Err);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void ColourIsUsedOnlyWhenTheConsoleAllowsIt()
    {
        var o = new StringWriter();
        Program.Run(["groups", "--group", "2", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none"], new CliConsole(o, new StringWriter(), color: true));
        Assert.Contains("\u001b[1mGroup 2\u001b[0m", o.ToString());
        var plain = Run("groups", "--group", "2", "--source", Oracle("g_k612_intel_mixed"), "--pci-ids", "none");
        Assert.DoesNotContain("\u001b", plain.Out);
    }

    [Fact]
    public void NoTextLineEndsWithWhitespace()
    {
        foreach (var args in new[]
                 {
                     new[] { "groups", "--source", Oracle("g_k612_intel_mixed") },
                     new[] { "vfio-check", "04:00.0", "--source", Oracle("g_k612_intel_mixed") },
                     new[] { "explain", "00:1f.2", "--source", Oracle("g_k612_intel_mixed") },
                     new[] { "groups", "--source", Oracle("f_no_viommu") },
                 })
        {
            var r = Run([.. args, "--pci-ids", SampleIds]);
            Assert.All(r.Lines, l => Assert.Equal(l.TrimEnd(), l));
        }
    }

    private static string RepoFile(string relative, [CallerFilePath] string caller = "") =>
        File.ReadAllText(Path.Combine(Path.GetDirectoryName(caller)!, "..", "..", relative));

    private static string OneLine(string text) => Regex.Replace(text, @"\s+", " ");

    /// <summary>The analysis commands documented in docs/cli.md, each with its own "Exit codes:" line.</summary>
    [Theory]
    [InlineData("groups")]
    [InlineData("explain")]
    [InlineData("vfio-check")]
    [InlineData("whatif")]
    [InlineData("diff")]
    [InlineData("slots")]
    public void HelpStatesTheExitCodesDocsCliMdStatesForTheCommand(string name)
    {
        var command = Program.BuildRoot(new CliConsole(TextWriter.Null, TextWriter.Null, false)).Subcommands.Single(c => c.Name == name);
        var line = command.Description!.Split('\n').Single(l => l.StartsWith("Exit codes: ", StringComparison.Ordinal));
        Assert.EndsWith("3 bad input, 4 usage error.", line);
        Assert.Contains($"`{line}`", RepoFile("docs/cli.md"));
    }

    [Fact]
    public void RootHelpListsEveryExitCodeAsReadmeDoes()
    {
        var root = Program.BuildRoot(new CliConsole(TextWriter.Null, TextWriter.Null, false));
        var line = root.Description!.Split('\n').Single(l => l.StartsWith("Exit codes: ", StringComparison.Ordinal));
        foreach (var code in Enum.GetValues<ExitCode>()) Assert.Contains($"{(int)code} {ExitCodeHelp.Meaning(code)}", line);
        Assert.Contains(line.TrimEnd('.'), OneLine(RepoFile("README.md")));
    }
}
