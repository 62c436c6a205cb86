using BenchmarkDotNet.Attributes;
using IommuKit.Dma;
using IommuKit.Paging;
using IommuKit.Simulation;

namespace IommuKit.Bench;

/// <summary>
/// One translated domain behind one IOMMU, a device on the bus, and a DMA API in the given mode: the setup shared by the
/// BenchmarkDotNet classes below and by <c>--quick</c>.
/// </summary>
internal sealed class DmaBenchRig : IDisposable
{
    public const ushort Rid = 0x0300;

    public DmaBenchRig(DmaMode mode, int domainId = 1, IommuHardware? iommu = null, PhysicalMemory? memory = null)
    {
        Memory = memory ?? new PhysicalMemory(capBytes: 2UL << 30);
        Iommu = iommu ?? new IommuHardware();
        Bus = new SimulatedBus(Memory, Iommu);
        Table = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        Iovad = new IovaAllocator(4096, 1);
        DomainId = domainId;
        Iommu.SetContext((ushort)(Rid + domainId), IommuContext.Translated(domainId, Table));
        Device = Bus.AddDevice("bench", (ushort)(Rid + domainId));
        Api = new DmaApi(Iommu.InvalidatorFor(domainId), Table, Iovad, mode, ulong.MaxValue, memory: Memory);
        // A live mapping next to the benchmarked ones keeps their page tables allocated, as in a domain with rings
        // mapped ("tables present", anchors T1); otherwise every map allocates and every unmap frees 3 table pages.
        Api.MapSingle(0x0ff0_0000, 4096, DmaDirection.ToDevice, out _);
    }

    public PhysicalMemory Memory { get; }
    public IommuHardware Iommu { get; }
    public SimulatedBus Bus { get; }
    public IIoPageTable Table { get; }
    public IovaAllocator Iovad { get; }
    public int DomainId { get; }
    public SimulatedDevice Device { get; }
    public DmaApi Api { get; }

    /// <summary>Map + unmap 4 KiB <paramref name="count"/> times over 256 rotating buffers (dma_map_single pattern).</summary>
    public ulong MapUnmap4k(int count)
    {
        DmaApi api = Api;
        ulong sum = 0;
        for (int i = 0; i < count; i++)
        {
            ulong phys = 0x1000_0000UL + ((ulong)(i & 255) << 12);
            api.MapSingle(phys, 4096, DmaDirection.ToDevice, out ulong dma);
            api.UnmapSingle(dma, 4096, DmaDirection.ToDevice);
            sum += dma;
        }
        return sum;
    }

    public void Dispose() => Api.Dispose();
}

[MemoryDiagnoser]
public class DmaMapBenchmarks
{
    private DmaBenchRig _lazy = null!;
    private DmaBenchRig _strict = null!;

    [GlobalSetup]
    public void Setup()
    {
        _lazy = new DmaBenchRig(DmaMode.Lazy);
        _strict = new DmaBenchRig(DmaMode.Strict);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _lazy.Dispose();
        _strict.Dispose();
    }

    [Benchmark(OperationsPerInvoke = 1024, Description = "map_unmap_4k_lazy")]
    public ulong MapUnmap4kLazy() => _lazy.MapUnmap4k(1024);

    [Benchmark(OperationsPerInvoke = 1024, Description = "map_unmap_4k_strict")]
    public ulong MapUnmap4kStrict() => _strict.MapUnmap4k(1024);

    [Benchmark(OperationsPerInvoke = 64, Description = "map_sg_16x4k_lazy")]
    public int MapSg16x4kLazy()
    {
        Span<ScatterEntry> sg = stackalloc ScatterEntry[16];
        int n = 0;
        for (int r = 0; r < 64; r++)
        {
            for (int i = 0; i < sg.Length; i++)
                sg[i] = new ScatterEntry(0x2000_0000UL + ((ulong)i << 13), 4096);
            _lazy.Api.MapSg(sg, DmaDirection.ToDevice, out int segments);
            n += segments;
            _lazy.Api.UnmapSg(sg, DmaDirection.ToDevice);
        }
        return n;
    }
}

[MemoryDiagnoser]
public class PageTable256Benchmarks
{
    private IIoPageTable _table = null!;
    private const ulong Iova = 0x4000_1000; // 4 KiB- but not 2 MiB-aligned: 256 leaf PTEs, no large page
    private const ulong Phys = 0x8000_1000;

    [GlobalSetup]
    public void Setup()
    {
        _table = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        // Keep the intermediate tables alive so the measurement is the PTE work (tables stay cached, as in the
        // kernel's benchmark where other mappings share them).
        _table.Map(0x4000_0000, 0x9000_0000, 0x1000, IommuProt.Read);
        _table.Map(0x4020_0000, 0x9000_0000, 0x1000, IommuProt.Read);
    }

    [Benchmark(Description = "map_unmap_256x4k")]
    public Errno MapUnmap256()
    {
        _table.Map(Iova, Phys, 256 * 4096, IommuProt.Read | IommuProt.Write);
        return _table.Unmap(Iova, 256 * 4096);
    }
}

[MemoryDiagnoser]
public class TranslateBenchmarks
{
    private DmaBenchRig _rig = null!;
    private IommuHardware _missIommu = null!;
    private ulong _base;
    private const int MissPages = 1 << 14;
    private const ulong MissIova = 0x1_0000_0000;

    [GlobalSetup]
    public void Setup()
    {
        _rig = new DmaBenchRig(DmaMode.Strict);
        _rig.Api.MapSingle(0x3000_0000, 64 * 4096, DmaDirection.Bidirectional, out _base);
        // Misses with cached tables (as --quick): 16 K pages, ~290 KiB of tables, behind a 16-entry IOTLB.
        _missIommu = new IommuHardware(iotlbSets: 16);
        IIoPageTable table = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        table.Map(MissIova, 0x2_0000_1000, (ulong)MissPages * 4096, IommuProt.Read | IommuProt.Write);
        _missIommu.SetContext(DmaBenchRig.Rid + 1, IommuContext.Translated(1, table));
    }

    [GlobalCleanup]
    public void Cleanup() => _rig.Dispose();

    [Benchmark(OperationsPerInvoke = 4096, Description = "translate_hit")]
    public ulong Hit() => QuickRun.TranslateHitLoop(_rig.Iommu, _base, 4096);

    [Benchmark(OperationsPerInvoke = 4096, Description = "translate_miss")]
    public ulong Miss() => QuickRun.TranslateMissLoop(_missIommu, MissIova, MissPages, 4096, 12345);
}

/// <summary>DMA copy through IOVA against the same device loop through an identity context (the baseline of
/// <c>dma_copy_vs_memcpy</c>), and against a raw <see cref="PhysicalMemory.Write"/> of the same pattern.</summary>
[MemoryDiagnoser]
public class DmaCopyBenchmarks
{
    private DmaBenchRig _rig = null!;
    private SimulatedDevice _identity = null!;
    private ulong _dma;
    private byte[] _src = null!;
    private const ulong Phys = 0x3000_0000;

    [Params(4096, 65536)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _rig = new DmaBenchRig(DmaMode.Strict);
        _rig.Api.MapSingle(Phys, QuickRun.CopyWorkingSet, DmaDirection.FromDevice, out _dma);
        _rig.Iommu.SetContext(0x0700, IommuContext.Identity);
        _identity = _rig.Bus.AddDevice("identity", 0x0700);
        _src = new byte[Size];
        new Random(1).NextBytes(_src);
        _rig.Memory.Write(Phys, new byte[QuickRun.CopyWorkingSet]); // allocate the backing chunks up front
    }

    [GlobalCleanup]
    public void Cleanup() => _rig.Dispose();

    [Benchmark(Baseline = true, Description = "identity DMA")]
    public DmaFaultReason Identity() => QuickRun.DmaCopyLoop(_identity, Phys, _src, 16);

    [Benchmark(Description = "DMA copy through IOVA")]
    public DmaFaultReason Translated() => QuickRun.DmaCopyLoop(_rig.Device, _dma, _src, 16);

    [Benchmark(Description = "raw PhysicalMemory.Write")]
    public ulong Plain() => QuickRun.PlainCopyLoop(_rig.Memory, Phys, _src, 16);
}
