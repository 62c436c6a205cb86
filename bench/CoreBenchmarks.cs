using BenchmarkDotNet.Attributes;
using IommuKit.Host;
using IommuKit.Core;
using IommuKit.Drivers;
using IommuKit.Paging;
using IommuKit.Sources;

namespace IommuKit.Bench;

/// <summary>
/// The IOMMU core: booting a whole machine (probe, group, default domains, direct mappings, driver binds), a sysfs
/// <c>type</c> write that replaces the default domain, a bind/unbind pair and a VFIO-style claim/release.
/// </summary>
[MemoryDiagnoser]
public class CoreBenchmarks
{
    private Machine _machine = null!;
    private IommuCore _core = null!;
    private IommuGroup _lpc = null!;
    private IommuDevice _nic = null!;
    private readonly object _cookie = new();

    [GlobalSetup]
    public void Setup()
    {
        // The fixtures of the repository: walk up from the (BenchmarkDotNet-generated) build directory.
        string? dir = AppContext.BaseDirectory;
        string path = "";
        while (dir is not null && !File.Exists(path = Path.Combine(dir, "tests", "fixtures", "oracle", "g_k612_intel_mixed.tar.gz")))
            dir = Path.GetDirectoryName(dir.TrimEnd(Path.DirectorySeparatorChar));
        if (dir is null) throw new FileNotFoundException("tests/fixtures/oracle/g_k612_intel_mixed.tar.gz not found above " + AppContext.BaseDirectory);
        _machine = MachineSource.Load(Path.GetFullPath(path));
        _core = new IommuCore(KernelVersion.V6_12);
        var drv = new VtdDriver([new VtdUnit("dmar0", [], IncludeAll: true)], f => IoPageTables.Create(f));
        foreach (var p in _machine.Topology.Devices) _core.AddDevice(IommuDevice.FromPci(p));
        _core.RegisterDriver(drv);
        _lpc = _core.FindDevice(Pci.PciAddress.Parse("0000:00:1f.0"))!.Group!;
        _nic = _core.FindDevice(Pci.PciAddress.Parse("0000:00:02.0"))!;
    }

    /// <summary>HostModel.FromMachine for the 31-device "mixed" machine (19 groups).</summary>
    [Benchmark]
    public int BootMixedMachine() => HostModel.FromMachine(_machine).Core.Groups.Count;

    /// <summary>identity then DMA-FQ on the LPC group (3 devices, 16 MiB direct-relaxable region mapped 1:1 each time).</summary>
    [Benchmark]
    public Errno TypeWriteRoundTripWithDirectRegion()
    {
        _core.StoreType(_lpc, "identity");
        return _core.StoreType(_lpc, "DMA-FQ").Errno;
    }

    [Benchmark]
    public Errno BindUnbindDmaApiDriver()
    {
        var r = _core.BindDriver(_nic, "e1000e");
        _core.UnbindDriver(_nic);
        return r.Errno;
    }

    [Benchmark]
    public Errno ClaimAndReleaseGroup()
    {
        var r = _core.GroupClaimDmaOwner(_nic.Group!, _cookie);
        _core.GroupReleaseDmaOwner(_nic.Group!);
        return r.Errno;
    }
}
