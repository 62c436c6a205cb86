using IommuKit.Host;
using IommuKit.Grouping;
using IommuKit.Pci;
using IommuKit.Sources.Lspci;
using Xunit;

namespace IommuKit.Tests.Grouping;

/// <summary>
/// Real lspci dumps (tests/fixtures/lspci): every one groups without error; the root dumps that carry the kernel's
/// own <c>IOMMU group:</c> lines are predicted exactly (partition); non-root dumps say their groups are guesses.
/// </summary>
public class LspciGroupingTests
{
    public static TheoryData<string> Dumps()
    {
        var data = new TheoryData<string>();
        foreach (var f in Fixtures.LspciDumps()) data.Add(Path.GetFileName(f));
        return data;
    }

    private static (Machine Machine, string Text) Load(string file)
    {
        var text = File.ReadAllText(Path.Combine(Fixtures.Lspci, file));
        return (LspciReader.Read(text, file), text);
    }

    /// <summary>A dump taken without root shows "&lt;access denied&gt;" instead of capabilities.</summary>
    private static bool IsRootDump(string text) => !text.Contains("<access denied>", StringComparison.Ordinal);

    [Theory]
    [MemberData(nameof(Dumps))]
    public void EveryCorpusDumpGroupsEveryDeviceOrSaysWhichRuleLeavesItOut(string file)
    {
        var (m, _) = Load(file);
        var r = ModelGrouping.Compute(MachineRewrite.WithoutKernelGroups(m), new GroupingOptions { ForceIommuActive = true });
        Assert.True(r.IommuActive);
        Assert.NotEmpty(r.Groups);
        foreach (var d in m.Topology.Devices)
        {
            var steps = r.Explain(d.Address);
            Assert.NotEmpty(steps);
            // A device the firmware rules leave out (AMD root complex and IOMMU function, Arm host bridges; issue 9)
            // has no group, and its explanation names the rule.
            if (r.GroupOf(d.Address) is null)
            {
                Assert.Equal(GroupStepKind.NoGroup, Assert.Single(steps).Kind);
                Assert.NotNull(r.Host!.Sequence.Platform.NoGroupReason(r.Machine.Topology[d.Address]));
            }
        }
        // Ids are dense from 0 in a fresh computation (lowest free id, nothing released).
        Assert.Equal(Enumerable.Range(0, r.Groups.Count), r.Groups.Select(g => g.Id));
    }

    [Theory]
    [MemberData(nameof(Dumps))]
    public void NonRootDumpsFlagTheirGroupsAsGuessesInsteadOfGuessingSilently(string file)
    {
        var (m, text) = Load(file);
        if (IsRootDump(text)) return;
        var r = ModelGrouping.Compute(MachineRewrite.WithoutKernelGroups(m), new GroupingOptions { ForceIommuActive = true });
        Assert.Contains(r.Groups, g => g.UnknownFacts);
        Assert.Contains(r.Messages, msg => msg.Contains("facts the source does not show", StringComparison.Ordinal));
    }

    public static TheoryData<string> RootDumpsWithKernelGroups()
    {
        var data = new TheoryData<string>();
        foreach (var f in Fixtures.LspciDumps())
        {
            var text = File.ReadAllText(f);
            if (IsRootDump(text) && text.Contains("IOMMU group:", StringComparison.Ordinal)) data.Add(Path.GetFileName(f));
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(RootDumpsWithKernelGroups))]
    public void RootDumpsWithKernelGroupLinesArePredictedFromTopologyAlone(string file)
    {
        var (m, _) = Load(file);
        Assert.NotNull(m.KernelGroups);
        var kernel = m.KernelGroups!;
        var grouped = new HashSet<PciAddress>(kernel.SelectMany(g => g.Devices));
        var r = ModelGrouping.Compute(MachineRewrite.WithoutKernelGroups(m));
        Assert.True(r.IommuActive);
        string Part(IEnumerable<IEnumerable<PciAddress>> groups) => string.Join("\n", groups
            .Select(g => string.Join(" ", g.Where(grouped.Contains).Order().Select(a => a.ToString())))
            .Where(s => s.Length > 0).Order(StringComparer.Ordinal));
        Assert.Equal(Part(kernel.Select(g => g.Devices)), Part(r.Groups.Select(g => g.Devices.Select(d => d.Address))));
    }
}

/// <summary>
/// The oracle machines rendered as real lspci output (tests/fixtures/lspci-generated, lspci 3.9 over the tarballs):
/// with neither command line nor IOMMU units, the groups predicted from the text are the kernel's.
/// </summary>
public class LspciGeneratedGroupingTests
{
    public static TheoryData<string> Files()
    {
        var data = new TheoryData<string>();
        var dir = Path.Combine(Fixtures.Root, "lspci-generated");
        foreach (var f in Directory.GetFiles(dir, "*.txt").Where(f => !f.EndsWith("MANIFEST.txt", StringComparison.Ordinal)).Order())
            data.Add(Path.GetFileName(f));
        return data;
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void GroupsPredictedFromLspciTextOfAnOracleMachineAreTheKernelsOrFlaggedAsGuesses(string file)
    {
        var text = File.ReadAllText(Path.Combine(Fixtures.Root, "lspci-generated", file));
        var m = LspciReader.Read(text, file);
        string name = file[..file.IndexOf('.')];
        var (_, groups, _) = OracleGroupingTests.Expected(name);
        if (groups.Count == 0) return; // IOMMU off in the capture: the text has no group lines to compare with
        var grouped = new HashSet<PciAddress>(groups.SelectMany(g => g.Devices).Select(PciAddress.Parse));
        var r = ModelGrouping.Compute(MachineRewrite.WithoutKernelGroups(m));
        string One(IEnumerable<PciAddress> g) => string.Join(" ", g.Where(grouped.Contains).Order().Select(a => a.ToString()));
        string Part(IEnumerable<IEnumerable<PciAddress>> gs) => string.Join("\n", gs.Select(One).Where(s => s.Length > 0).Order(StringComparer.Ordinal));
        var kernel = groups.Select(g => g.Devices.Select(PciAddress.Parse)).ToList();
        if (FullFacts(file))
        {
            Assert.Equal(Part(kernel), Part(r.Groups.Select(g => g.Devices.Select(d => d.Address))));
            return;
        }
        // Reduced forms (-v, -nnk, 256-byte hex) hide ACS: every group that is not the kernel's must say it is a guess.
        var kernelSets = kernel.Select(One).ToHashSet();
        foreach (var g in r.Groups)
        {
            string mine = One(g.Devices.Select(d => d.Address));
            if (mine.Length > 0 && !kernelSets.Contains(mine))
                Assert.True(g.UnknownFacts, $"{file}: group [{mine}] differs from the kernel's without being flagged as a guess");
        }
    }

    /// <summary>Forms that show every capability: -vv/-vvv text and full hex dumps.</summary>
    private static bool FullFacts(string file) =>
        file.Contains(".vvnn", StringComparison.Ordinal) || file.Contains(".vvvnn", StringComparison.Ordinal) || file.EndsWith(".hex.txt", StringComparison.Ordinal);
}
