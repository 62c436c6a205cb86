using BenchmarkDotNet.Attributes;
using IommuKit.Host;
using IommuKit.Grouping;

namespace IommuKit.Bench;

/// <summary>
/// Grouping a synthetic machine of N functions (issue 3: 100,000 functions well under a second, linear in N).
/// Run: <c>dotnet run -c Release --project bench -- --filter '*Grouping*'</c>.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
public class GroupingBenchmarks
{
    private Machine _machine = null!;

    [Params(10_000, 100_000)]
    public int Devices { get; set; }

    [GlobalSetup]
    public void Setup() => _machine = SyntheticMachines.Build(Devices);

    /// <summary>Groups only (what the core's probe and <c>iommu groups --json</c> need).</summary>
    [Benchmark(Baseline = true)]
    public int GroupsOnly() => ModelGrouping.Compute(_machine).Groups.Count;

    /// <summary>Groups plus the chain of decisions for every device (what <c>iommu explain</c> does for one).</summary>
    [Benchmark]
    public int GroupsWithEveryExplanation() => ModelGrouping.Compute(_machine, new GroupingOptions { RecordExplanations = true }).Groups.Count;
}
