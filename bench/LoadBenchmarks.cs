using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using BenchmarkDotNet.Attributes;
using IommuKit.Host;
using IommuKit.Sources;

namespace IommuKit.Bench;

/// <summary>
/// Loading a 4,096-function machine (issue 2: "well under a second"): a snapshot tarball in memory, the same machine
/// as a JSON file with and without raw config, and as an extracted directory root (what a live host costs, minus
/// sysfs itself). Run: <c>dotnet run -c Release --project bench -- --filter '*LoadBenchmarks*'</c>.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
public class LoadBenchmarks
{
    private byte[] _tarGz = [];
    private byte[] _json = [];
    private byte[] _jsonNoConfig = [];
    private string _dir = "";

    [Params(4096)]
    public int Devices { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _tarGz = LargeMachineGenerator.TarGz(Devices);
        var machine = MachineSource.LoadBytes(_tarGz, "generated.tar.gz");
        if (machine.Topology.Count != Devices) throw new InvalidOperationException($"generator made {machine.Topology.Count} devices");
        _json = Encoding.UTF8.GetBytes(MachineJson.ToJson(machine, includeConfig: true));
        _jsonNoConfig = Encoding.UTF8.GetBytes(MachineJson.ToJson(machine, includeConfig: false));
        _dir = Path.Combine(Path.GetTempPath(), $"iommukit-bench-{Guid.NewGuid():n}");
        Directory.CreateDirectory(_dir);
        using var gz = new GZipStream(new MemoryStream(_tarGz), CompressionMode.Decompress);
        TarFile.ExtractToDirectory(gz, _dir, overwriteFiles: false);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_dir.Length > 0 && Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Benchmark(Baseline = true)]
    public int TarballInMemory() => MachineSource.LoadBytes(_tarGz, "generated.tar.gz").Topology.Count;

    [Benchmark]
    public int JsonWithConfig() => MachineSource.LoadBytes(_json, "generated.json").Topology.Count;

    [Benchmark]
    public int JsonWithoutConfig() => MachineSource.LoadBytes(_jsonNoConfig, "generated.json").Topology.Count;

    [Benchmark]
    public int DirectoryRoot() => MachineSource.Load(_dir).Topology.Count;
}

/// <summary>
/// Generates a large sysfs snapshot shaped like a big server: per domain, root ports each leading to a switch
/// (upstream port, 15 downstream ports with ACS) with a two-function endpoint below every downstream port, plus the
/// groups, an intel-iommu unit and the proc files. Devices carry 4 KiB config spaces with real PCIe and ACS
/// capabilities, so the decoding cost is the real one.
/// </summary>
public static class LargeMachineGenerator
{
    private const int DownstreamPorts = 15;

    public static byte[] TarGz(int devices)
    {
        var members = new SortedDictionary<string, (byte[]? Data, string? Link)>(StringComparer.Ordinal);
        void File(string name, byte[] data) => members[name] = (data, null);
        void Text(string name, string text) => members[name] = (Encoding.ASCII.GetBytes(text), null);
        void Link(string name, string target) => members[name] = (null, target);

        Text("proc/cmdline", "intel_iommu=on iommu=nopt\n");
        Text("proc/sys/kernel/osrelease", "6.12.0-bench\n");
        Link("sys/class/iommu/dmar0", "../../devices/virtual/iommu/dmar0");
        Text("sys/devices/virtual/iommu/dmar0/intel-iommu/cap", "d2008c22260206\n");

        int made = 0, domain = 0, bus = 1, rpDev = 1;
        var paths = new Dictionary<string, (string Path, string Up)>(StringComparer.Ordinal);
        void Device(string pathFromDomain, int dom, int b, int dev, int fn, byte[] config, string driver)
        {
            string bdf = $"{dom:x4}:{b:x2}:{dev:x2}.{fn:x}";
            string path = $"sys/devices/pci{dom:x4}:00/{pathFromDomain}";
            int depth = path.Count(c => c == '/') + 1;
            string up = string.Concat(Enumerable.Repeat("../", depth - 1));
            Link($"sys/bus/pci/devices/{bdf}", "../../../" + path[4..]);
            File($"{path}/config", config);
            Text($"{path}/vendor", $"0x{config[1]:x2}{config[0]:x2}\n");
            Link($"{path}/driver", up + "bus/pci/drivers/" + driver);
            Link($"{path}/iommu", up + "devices/virtual/iommu/dmar0");
            paths[bdf] = (path, up);
            made++;
        }

        while (made < devices)
        {
            // One block: root port -> upstream -> 15 downstream -> 2-function endpoint each = 1 + 1 + 15 + 30 = 47.
            // It uses 2 + 15 buses; start a new domain when the 256 buses run out.
            if (bus + 2 + DownstreamPorts > 255 || rpDev > 31) { domain++; bus = 1; rpDev = 1; }
            int rpBus = bus, dsBus = bus + 1;
            string rp = $"{domain:x4}:00:{rpDev:x2}.0";
            Device(rp, domain, 0, rpDev, 0, Bridge(0x1b36, 0x000c, 4, 0, (byte)rpBus, (byte)(rpBus + 1 + DownstreamPorts), acs: true), "pcieport");
            if (made >= devices) break;
            string usp = $"{rp}/{domain:x4}:{rpBus:x2}:00.0";
            Device(usp, domain, rpBus, 0, 0, Bridge(0x104c, 0x8232, 5, (byte)rpBus, (byte)dsBus, (byte)(dsBus + DownstreamPorts), acs: false), "pcieport");
            for (int p = 0; p < DownstreamPorts && made < devices; p++)
            {
                int epBus = dsBus + 1 + p;
                string dsp = $"{usp}/{domain:x4}:{dsBus:x2}:{p:x2}.0";
                Device(dsp, domain, dsBus, p, 0, Bridge(0x104c, 0x8233, 6, (byte)dsBus, (byte)epBus, (byte)epBus, acs: true), "pcieport");
                for (int fn = 0; fn < 2 && made < devices; fn++)
                    Device($"{dsp}/{domain:x4}:{epBus:x2}:00.{fn}", domain, epBus, 0, fn, Endpoint(fn == 0), "e1000e");
            }
            bus += 2 + DownstreamPorts;
            rpDev++;
        }

        // The kernel's groups, as a real host's snapshot has them: the grouping of this topology (numbered in probe
        // order), so that the model agrees with the "kernel" as it does on real machines and timings measure that path.
        var grouping = ModelGrouping.Compute(MachineSource.LoadBytes(Pack(members), "generated.tar.gz"));
        foreach (var g in grouping.Groups)
        {
            foreach (var d in g.Devices)
            {
                string bdf = d.Address.ToString();
                var (path, up) = paths[bdf];
                Link($"{path}/iommu_group", up + $"kernel/iommu_groups/{g.Id}");
                Link($"sys/kernel/iommu_groups/{g.Id}/devices/{bdf}", "../../../../" + path[4..]);
            }
            Text($"sys/kernel/iommu_groups/{g.Id}/type", "DMA-FQ\n");
            Text($"sys/kernel/iommu_groups/{g.Id}/reserved_regions", "0x00000000fee00000 0x00000000feefffff msi\n");
        }
        return Pack(members);
    }

    private static byte[] Pack(SortedDictionary<string, (byte[]? Data, string? Link)> members)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gz, TarEntryFormat.Gnu, leaveOpen: true))
        {
            foreach (var (name, (data, link)) in members)
            {
                var e = link is not null
                    ? new GnuTarEntry(TarEntryType.SymbolicLink, name) { LinkName = link }
                    : new GnuTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data!) };
                tar.WriteEntry(e);
            }
        }
        return ms.ToArray();
    }

    private static byte[] Common(ushort vendor, ushort device, uint cls, byte header, int pcieType)
    {
        var c = new byte[4096];
        c[0] = (byte)vendor; c[1] = (byte)(vendor >> 8); c[2] = (byte)device; c[3] = (byte)(device >> 8);
        c[6] = 0x10; // capability list
        c[9] = (byte)cls; c[10] = (byte)(cls >> 8); c[11] = (byte)(cls >> 16);
        c[0x0e] = header;
        c[0x34] = 0x40;
        c[0x40] = 0x01; c[0x41] = 0x50;                      // power management -> 0x50
        c[0x50] = 0x05; c[0x51] = 0x60;                      // MSI -> 0x60
        c[0x60] = 0x10; c[0x61] = 0x00;                      // PCI Express, end of list
        c[0x62] = (byte)(0x02 | (pcieType << 4)); c[0x63] = pcieType is 4 or 6 ? (byte)0x01 : (byte)0x00; // slot implemented on ports
        c[0x100] = 0x01; c[0x102] = 0x01;                    // AER v1, next set by the caller
        return c;
    }

    private static byte[] Bridge(ushort vendor, ushort device, int pcieType, byte primary, byte secondary, byte subordinate, bool acs)
    {
        var c = Common(vendor, device, 0x060400, 0x01, pcieType);
        c[0x18] = primary; c[0x19] = secondary; c[0x1a] = subordinate;
        if (acs)
        {
            c[0x103] = 0x14; c[0x102] = 0x81;                // AER next = 0x148
            c[0x148] = 0x0d; c[0x14a] = 0x01;                // ACS v1, end of list
            c[0x14c] = 0x5f; c[0x14e] = 0x1d;                // cap SV TB RR CR UF DT, ctl SV RR CR UF
        }
        return c;
    }

    private static byte[] Endpoint(bool function0)
    {
        var c = Common(0x8086, 0x10d3, 0x020000, function0 ? (byte)0x80 : (byte)0x00, 0);
        c[0x2c] = 0x86; c[0x2d] = 0x80;
        return c;
    }
}

/// <summary>
/// Issue 12: the flat shape that made the topology build quadratic: one function per bus and no bridge at all (every
/// bus a root bus, 256 buses per domain), as a JSON machine without config. 150,000 functions is a 49.6 MB file,
/// under the JSON cap; it took 318 s before the covering-bridge lookup became a per-domain table.
/// Run: <c>dotnet run -c Release --project bench -- --filter '*FlatLoadBenchmarks*'</c>.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
public class FlatLoadBenchmarks
{
    private byte[] _json = [];

    [Params(20_000, 150_000)]
    public int Devices { get; set; }

    [GlobalSetup]
    public void Setup() => _json = FlatMachineGenerator.Json(Devices);

    [Benchmark]
    public int FlatJsonMachine() => MachineSource.LoadBytes(_json, "flat.json").Topology.Count;
}

/// <summary>A JSON machine of <c>n</c> endpoints, one per bus (domain i / 256, bus i % 256), no bridges.</summary>
public static class FlatMachineGenerator
{
    public static byte[] Json(int n)
    {
        var sb = new StringBuilder(n * 340);
        sb.Append("{\"format\": \"iommukit-machine\", \"version\": 1, \"kernel_groups\": null, \"devices\": [\n");
        for (int i = 0; i < n; i++)
        {
            if (i > 0) sb.Append(",\n");
            sb.Append("  {\"address\": \"").Append($"{i / 256:x4}:{i % 256:x2}:00.0")
              .Append("\", \"vendor\": \"0x8086\", \"device\": \"0x10d3\", \"subsystem_vendor\": \"0x8086\", \"subsystem_device\": \"0xa01f\", ")
              .Append("\"class\": \"0x020000\", \"revision\": \"0x00\", \"header_type\": 0, \"multifunction\": false, \"visibility\": \"full\", ")
              .Append("\"bridge_buses\": null, \"pcie_type\": \"endpoint\", \"acs\": null, \"driver\": \"e1000e\", \"kernel_group\": null}");
        }
        sb.Append("\n]}\n");
        return Encoding.UTF8.GetBytes(sb.ToString());
    }
}
