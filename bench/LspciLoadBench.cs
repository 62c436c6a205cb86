using System.Text;
using System.Text.RegularExpressions;
using BenchmarkDotNet.Attributes;
using IommuKit.Sources.Lspci;

namespace IommuKit.Bench;

/// <summary>
/// Loading a 4,096-device machine from lspci output (issue 2: "well under a second"). The dumps are built from real
/// records: a root port with ACS and the NIC below it from the corpus (-vvnn), and the same pair from an oracle machine
/// as the real lspci printed it with -vvnn -xxxx (4 KiB of hex per device). 16 domains x 128 root ports x (port + NIC).
/// </summary>
[MemoryDiagnoser]
public class LspciLoadBench
{
    private string _vvnn = "";
    private string _vvnnXxxx = "";

    public const int Domains = 16;
    public const int PortsPerDomain = 128;

    [GlobalSetup]
    public void Setup()
    {
        string root = FindRepositoryRoot();
        var corpus = File.ReadAllText(Path.Combine(root, "tests/fixtures/lspci/intel-alderlake-n100-asrock-n100dc-itx-debian-acs-iommugroups.txt"));
        _vvnn = Build(Record(corpus, "00:1c.0"), Record(corpus, "01:00.0"), hex: false);
        var generated = File.ReadAllText(Path.Combine(root, "tests/fixtures/lspci-generated/b_rootports.vvnnxxxx.txt"));
        _vvnnXxxx = Build(Record(generated, "00:06.0"), Record(generated, "01:00.0"), hex: true);
        if (LspciReader.Read(_vvnn, "bench").Topology.Count != Domains * PortsPerDomain * 2) throw new InvalidOperationException("bad -vvnn bench dump");
        if (LspciReader.Read(_vvnnXxxx, "bench").Topology.Count != Domains * PortsPerDomain * 2) throw new InvalidOperationException("bad -xxxx bench dump");
    }

    [Benchmark(Description = "4,096 devices, lspci -vvnn text (root ports with ACS + NICs)")]
    public int LoadVvnn() => LspciReader.Read(_vvnn, "bench").Topology.Count;

    [Benchmark(Description = "4,096 devices, lspci -vvnn -xxxx (text + 4 KiB hex each)")]
    public int LoadVvnnXxxx() => LspciReader.Read(_vvnnXxxx, "bench").Topology.Count;

    /// <summary>Size of each dump in characters, for the report.</summary>
    public (int Vvnn, int VvnnXxxx) Sizes => (_vvnn.Length, _vvnnXxxx.Length);

    private static string Record(string dump, string address)
    {
        var m = Regex.Match(dump, $@"^(?:0000:)?{Regex.Escape(address)} .*?\n\n", RegexOptions.Multiline | RegexOptions.Singleline);
        if (!m.Success) throw new InvalidOperationException($"no record {address}");
        // Drop the address; it is rewritten per copy.
        return m.Value[(m.Value.IndexOf(' ') + 1)..];
    }

    private static string Build(string port, string endpoint, bool hex)
    {
        var sb = new StringBuilder();
        int group = 0;
        for (int d = 0; d < Domains; d++)
        {
            for (int i = 0; i < PortsPerDomain; i++)
            {
                int secondary = i + 1;
                var p = Regex.Replace(port, @"secondary=[0-9a-f]{2}, subordinate=[0-9a-f]{2}", $"secondary={secondary:x2}, subordinate={secondary:x2}");
                if (hex)
                {
                    // Config bytes 0x19/0x1a (secondary, subordinate) are the 10th and 11th bytes of the "10:" row.
                    p = Regex.Replace(p, @"^10:((?: [0-9a-f]{2}){9}) [0-9a-f]{2} [0-9a-f]{2}", $"10:$1 {secondary:x2} {secondary:x2}", RegexOptions.Multiline);
                }
                p = Regex.Replace(p, @"IOMMU group: \d+", $"IOMMU group: {group++}");
                sb.Append($"{d:x4}:00:{i / 4:x2}.{i % 4} ").Append(p);
                var e = Regex.Replace(endpoint, @"IOMMU group: \d+", $"IOMMU group: {group++}");
                sb.Append($"{d:x4}:{secondary:x2}:00.0 ").Append(e);
            }
        }
        return sb.ToString();
    }

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (Directory.Exists(Path.Combine(dir.FullName, "tests/fixtures/lspci"))) return dir.FullName;
        }
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
        {
            if (Directory.Exists(Path.Combine(dir.FullName, "tests/fixtures/lspci"))) return dir.FullName;
        }
        throw new InvalidOperationException("run the benchmark from inside the repository (tests/fixtures/lspci not found)");
    }
}
