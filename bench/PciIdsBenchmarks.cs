using BenchmarkDotNet.Attributes;
using IommuKit.Sources;

namespace IommuKit.Bench;

/// <summary>
/// pci.ids as <c>iommu groups</c> uses it (issue 11): open the installed database, then the names of 100 functions
/// (vendor, device and class each). "Tree" is the mix of the generated 100-function tree of docs/PERFORMANCE.md
/// (62 Intel 82574L NICs, 35 TI bridges, 3 QEMU root ports); "Spread" is 100 different devices of 100 vendors from
/// all over the file. Mapped = <see cref="PciIds.LoadInstalled"/> (what the CLI does), Read = the file read into an
/// array (<c>--pci-ids FILE</c>). Run: <c>dotnet run -c Release --project bench -- --filter '*PciIdsBenchmarks*'</c>.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
public class PciIdsBenchmarks
{
    private string _path = "";
    private (ushort Vendor, ushort Device, uint Class)[] _tree = [];
    private (ushort Vendor, ushort Device, uint Class)[] _spread = [];

    [GlobalSetup]
    public void Setup()
    {
        _path = PciIds.LoadInstalled()?.Path ?? throw new InvalidOperationException("no installed pci.ids");
        _tree = [.. Enumerable.Repeat(((ushort)0x8086, (ushort)0x10d3, 0x020000u), 62),
            .. Enumerable.Repeat(((ushort)0x104c, (ushort)0x8233, 0x060400u), 35),
            .. Enumerable.Repeat(((ushort)0x1b36, (ushort)0x000c, 0x060400u), 3)];
        // The first device line of every 20th vendor that has one: ids from the whole file.
        var spread = new List<(ushort, ushort, uint)>();
        ushort vendor = 0;
        int seen = 0;
        foreach (var line in File.ReadLines(_path))
        {
            if (line.Length > 6 && line[0] != '\t' && line[0] != '#' && line[0] != 'C' && line[4] == ' ')
            {
                vendor = Convert.ToUInt16(line[..4], 16);
                seen++;
            }
            else if (seen % 20 == 0 && vendor != 0 && line.Length > 6 && line[0] == '\t' && line[1] != '\t' && spread.Count < 100)
            {
                spread.Add((vendor, Convert.ToUInt16(line[1..5], 16), (uint)(spread.Count % 12) << 16));
                vendor = 0;
            }
        }
        _spread = [.. spread];
    }

    private static int Lookups(PciIds ids, (ushort Vendor, ushort Device, uint Class)[] functions)
    {
        int n = 0;
        foreach (var (v, d, c) in functions) n += (ids.Name(v, d)?.Length ?? 0) + (ids.Class(c)?.Length ?? 0);
        return n;
    }

    [Benchmark(Baseline = true)]
    public int MappedTree() => Lookups(PciIds.LoadInstalled()!, _tree);

    [Benchmark]
    public int MappedSpread() => Lookups(PciIds.LoadInstalled()!, _spread);

    [Benchmark]
    public int ReadTree() => Lookups(PciIds.TryLoad(_path)!, _tree);
}
