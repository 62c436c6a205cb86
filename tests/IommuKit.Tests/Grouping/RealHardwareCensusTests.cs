using System.Text.RegularExpressions;
using IommuKit.Grouping;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources.Lspci;
using Xunit;
using Xunit.Abstractions;

namespace IommuKit.Tests.Grouping;

/// <summary>
/// Issue 9's census: every real lspci dump we hold that carries the kernel's own <c>IOMMU group:</c> lines and was
/// taken as root is predicted with those lines removed. Members must be exact on every dump (including which devices
/// the kernel gives no group); numbers must be exact whenever the model says they are predictable, and when it says
/// they are not it must say why. The kernel release comes from the dump's linuxhw/LsPCI path (tests/fixtures/lspci/SOURCES.md),
/// as the dump itself does not state it. The per-dump results are printed and recorded in docs/grouping.md.
/// </summary>
public class RealHardwareCensusTests(ITestOutputHelper output)
{
    /// <summary>The same selection as the census in the shared before-stop hook.</summary>
    internal static bool InCensus(string text) =>
        text.Contains("IOMMU group:", StringComparison.Ordinal) && !text.Contains("access denied", StringComparison.Ordinal) &&
        Regex.IsMatch(text, @"Capabilities: \[[0-9a-f]{3} v");

    public static TheoryData<string> CensusDumps()
    {
        var data = new TheoryData<string>();
        foreach (var f in Fixtures.LspciDumps())
            if (InCensus(File.ReadAllText(f))) data.Add(Path.GetFileName(f));
        return data;
    }

    /// <summary>
    /// The kernel release of a dump: the <c>&lt;kernel&gt;</c> segment of its linuxhw/LsPCI path
    /// (<c>Type/Vendor/Family/Model/hwid/OS/kernel/arch/probe</c>) as SOURCES.md records it.
    /// </summary>
    internal static string? KernelOf(string file)
    {
        foreach (var line in File.ReadLines(Path.Combine(Fixtures.Lspci, "SOURCES.md")))
        {
            if (!line.Contains($"`{file}`", StringComparison.Ordinal)) continue;
            foreach (Match m in Regex.Matches(line, "`([^`]+)`"))
            {
                var parts = m.Groups[1].Value.Split('/');
                if (parts.Length >= 9) return parts[^3];
            }
        }
        return null;
    }

    private static (GroupingResult Result, Dictionary<PciAddress, int> Kernel) Predict(string file, bool withKernel)
    {
        var m = LspciReader.Read(File.ReadAllText(Path.Combine(Fixtures.Lspci, file)), file);
        var kernel = new Dictionary<PciAddress, int>();
        foreach (var g in m.KernelGroups!)
            foreach (var a in g.Devices) kernel[a] = g.Id;
        var bare = MachineRewrite.WithoutKernelGroups(m);
        if (withKernel) bare = bare with { KernelRelease = KernelOf(file) };
        return (ModelGrouping.Compute(bare), kernel);
    }

    [Theory]
    [MemberData(nameof(CensusDumps))]
    public void RealDumpIsPredictedWithMembersExactAndNumbersExactOrFlagged(string file)
    {
        Assert.NotNull(KernelOf(file));
        var (r, kernel) = Predict(file, withKernel: true);
        Assert.True(r.IommuActive);
        string Members(Func<PciDevice, int?> group) => string.Join("\n", r.Machine.Topology.Devices
            .GroupBy(d => group(d) is int g ? g.ToString(System.Globalization.CultureInfo.InvariantCulture) : "none " + d.Address)
            .Select(g => (g.Key.StartsWith("none", StringComparison.Ordinal) ? "(no group) " : "") + string.Join(" ", g.Select(d => d.Address.ToShortString()).Order(StringComparer.Ordinal)))
            .Order(StringComparer.Ordinal));
        int? Kernel(PciDevice d) => kernel.TryGetValue(d.Address, out int g) ? g : null;
        int? Model(PciDevice d) => r.GroupOf(d.Address)?.Id;
        bool members = Members(Kernel) == Members(Model);
        bool numbers = r.Machine.Topology.Devices.All(d => Kernel(d) == Model(d));
        output.WriteLine($"{file}: kernel {KernelOf(file)}; members {(members ? "exact" : "DIFFER")}; numbers " +
                         (numbers ? "exact" : r.NumbersPredictable ? "DIFFER" : $"not predictable ({r.NumbersReason})"));
        Assert.Equal(Members(Kernel), Members(Model));
        if (r.NumbersPredictable)
            Assert.Equal(string.Join(" ", r.Machine.Topology.Devices.Select(d => $"{d.Address.ToShortString()}={Kernel(d)}")),
                         string.Join(" ", r.Machine.Topology.Devices.Select(d => $"{d.Address.ToShortString()}={Model(d)}")));
        else
            Assert.False(string.IsNullOrEmpty(r.NumbersReason));
    }

    [Theory]
    [MemberData(nameof(CensusDumps))]
    public void WithoutTheKernelReleaseNumbersAreExactOrTheReasonSaysWhatIsMissing(string file)
    {
        // What the CLI sees: an lspci dump states no kernel release.
        var (r, kernel) = Predict(file, withKernel: false);
        bool numbers = r.Machine.Topology.Devices.All(d => (kernel.TryGetValue(d.Address, out int g) ? g : (int?)null) == r.GroupOf(d.Address)?.Id);
        output.WriteLine($"{file}: no kernel release; numbers {(numbers ? "exact" : r.NumbersPredictable ? "DIFFER" : $"not predictable ({r.NumbersReason})")}");
        Assert.True(numbers || !r.NumbersPredictable, $"{file}: numbers differ from the kernel's but are claimed predictable");
    }

    [Fact]
    public void CensusCoversIntelAmdAndArmDumps()
    {
        var files = Fixtures.LspciDumps().Where(f => InCensus(File.ReadAllText(f))).Select(f => Path.GetFileName(f)).ToList();
        Assert.True(files.Count >= 16, $"{files.Count} census dumps");
        Assert.Contains(files, f => f.StartsWith("arm64", StringComparison.Ordinal));
        Assert.Contains(files, f => f.Contains("amd", StringComparison.Ordinal));
        Assert.Contains(files, f => f.StartsWith("intel", StringComparison.Ordinal));
    }
}
