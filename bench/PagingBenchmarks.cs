using BenchmarkDotNet.Attributes;
using IommuKit.Paging;

namespace IommuKit.Bench;

// Page tables, IOTLB and IOVA allocator micro-benchmarks (issue 5, anchors T3-T5 and T9). Run with
//   dotnet run -c Release --project bench -- --filter '*Paging*' --job short
// Figures and the machine they ran on: docs/PERFORMANCE.md, "Page tables, IOTLB and IOVA allocator".

/// <summary>Single 4 KiB map + unmap pair, and table walks, with the page tables already present.</summary>
[MemoryDiagnoser]
public class PagingTableBenchmarks
{
    private const ulong K4 = 4096, M2 = 2UL << 20;
    private const int WalkPages = 1 << 16; // 256 MiB of IOVA in 4 KiB pages: 128 leaf tables (1 MiB of PTEs)
    private const int WalkOps = 4096;

    private IIoPageTable _table = null!;
    private ulong[] _walkIovas = null!;
    private ulong _walkStart;

    [Params(IoPageTableFormat.X86_64Level4, IoPageTableFormat.ArmLpae4K)]
    public IoPageTableFormat Format { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _table = IoPageTables.Create(Format);
        // A neighbour keeps the leaf table of the map/unmap benchmark alive (a domain with its rings mapped).
        _table.Map(M2 - K4, 0x7000_0000, K4, IommuProt.Read);
        // Dense region for walks: IOVA page i maps to physical page perm[i], a single cycle, so a dependent walk can
        // chase "next IOVA = this walk's physical page number" through the whole region.
        ulong walkBase = 1UL << 32;
        var rng = new Random(42);
        var order = new int[WalkPages];
        for (int i = 0; i < WalkPages; i++) order[i] = i;
        for (int i = WalkPages - 1; i > 0; i--) { int j = rng.Next(i + 1); (order[i], order[j]) = (order[j], order[i]); }
        var next = new int[WalkPages];
        for (int i = 0; i < WalkPages; i++) next[order[i]] = order[(i + 1) % WalkPages];
        for (int i = 0; i < WalkPages; i++)
            _table.Map(walkBase + (ulong)i * K4, (ulong)next[i] * K4, K4, IommuProt.Read | IommuProt.Write);
        _walkIovas = new ulong[WalkOps];
        for (int i = 0; i < WalkOps; i++) _walkIovas[i] = walkBase + (ulong)rng.Next(WalkPages) * K4;
        _walkStart = walkBase;
    }

    [Benchmark(Description = "map+unmap 4K (tables present)")]
    public Errno MapUnmap4K()
    {
        _table.Map(0x1000, 0x4000_1000, K4, IommuProt.Read | IommuProt.Write);
        return _table.Unmap(0x1000, K4);
    }

    [Benchmark(Description = "map+unmap 256x4K, same range (hot tables)")]
    public Errno MapUnmap256x4KHot()
    {
        // The kernel's kunit figure (anchors T3) maps and unmaps one range repeatedly, so its PTEs stay in L1/L2;
        // PagingBulkBenchmarks measures the cold case (a different 2 MiB region per call).
        _table.Map(0, 0x4000_1000, 1UL << 20, IommuProt.Read | IommuProt.Write);
        return _table.Unmap(0, 1UL << 20);
    }

    [Benchmark(Description = "walk, independent (IOTLB miss, cached tables)", OperationsPerInvoke = WalkOps)]
    public ulong WalkIndependent()
    {
        ulong sum = 0;
        var iovas = _walkIovas;
        for (int i = 0; i < iovas.Length; i++)
        {
            _table.TryIovaToPhys(iovas[i], out ulong pa, out _);
            sum += pa;
        }
        return sum;
    }

    [Benchmark(Description = "walk, dependent chain (IOTLB miss, cached tables)", OperationsPerInvoke = WalkOps)]
    public ulong WalkDependent()
    {
        ulong iova = _walkStart;
        ulong baseIova = 1UL << 32;
        for (int i = 0; i < WalkOps; i++)
        {
            _table.TryIovaToPhys(iova, out ulong pa, out _);
            iova = baseIova + pa; // the next page to walk is this walk's result
        }
        _walkStart = iova;
        return iova;
    }
}

/// <summary>256 x 4 KiB (1 MiB) mapped in one call and unmapped in one call, tables present.</summary>
/// <remarks>Each invocation uses its own 2 MiB region (whose leaf table is kept alive by a guard page), so map and
/// unmap are measured separately: the iteration setup/cleanup does the opposite operation outside the timing.</remarks>
[MemoryDiagnoser]
[InvocationCount(Regions)]
public class PagingBulkBenchmarks
{
    private const ulong K4 = 4096, M2 = 2UL << 20, M1 = 1UL << 20;
    private const int Regions = 512;
    private IIoPageTable _table = null!;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        _table = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        for (int r = 0; r < Regions; r++) _table.Map((ulong)r * M2 + M2 - K4, 0x7000_0000, K4, IommuProt.Read);
    }

    [IterationSetup(Target = nameof(Map256x4K))]
    public void BeforeMap() => _next = 0;

    [IterationCleanup(Target = nameof(Map256x4K))]
    public void AfterMap()
    {
        for (int r = 0; r < _next; r++) _table.Unmap((ulong)r * M2, M1);
    }

    [Benchmark(Description = "map 256x4K in one call")]
    public Errno Map256x4K()
    {
        ulong iova = (ulong)_next++ * M2;
        // phys 4 KiB-aligned only, so the table must use 4 KiB pages (a 2 MiB-aligned phys would still need 256
        // pages here: 1 MiB is less than a large page).
        return _table.Map(iova, 0x1_0000_1000UL + iova, M1, IommuProt.Read | IommuProt.Write);
    }

    [IterationSetup(Target = nameof(Unmap256x4K))]
    public void BeforeUnmap()
    {
        for (int r = 0; r < Regions; r++)
            _table.Map((ulong)r * M2, 0x1_0000_1000UL + (ulong)r * M2, M1, IommuProt.Read | IommuProt.Write);
        _next = 0;
    }

    [Benchmark(Description = "unmap 256x4K in one call")]
    public Errno Unmap256x4K() => _table.Unmap((ulong)_next++ * M2, M1);
}

/// <summary>IOTLB hit: the few loads a translation costs when the entry is cached.</summary>
[MemoryDiagnoser]
public class PagingIotlbBenchmarks
{
    private const int Ops = 4096;
    private const int HotPages = 64;
    private Iotlb _tlb = null!;
    private ulong[] _iovas = null!;

    [GlobalSetup]
    public void Setup()
    {
        _tlb = new Iotlb();
        for (int p = 0; p < HotPages; p++) _tlb.Fill(1, (ulong)p << 12, 4096, 0x8000_0000UL + ((ulong)p << 12), IommuProt.Read);
        var rng = new Random(1);
        _iovas = new ulong[Ops];
        for (int i = 0; i < Ops; i++) _iovas[i] = ((ulong)rng.Next(HotPages) << 12) + (ulong)rng.Next(4096);
    }

    [Benchmark(Description = "IOTLB hit", OperationsPerInvoke = Ops)]
    public ulong Hit()
    {
        ulong sum = 0;
        var iovas = _iovas;
        for (int i = 0; i < iovas.Length; i++)
        {
            _tlb.TryLookup(1, iovas[i], out ulong pa, out _);
            sum += pa;
        }
        return sum;
    }

    [Benchmark(Description = "IOTLB invalidate 1 page (strict unmap)")]
    public void InvalidatePage() => _tlb.InvalidateRange(2, 0x1000, 4096);
}

/// <summary>
/// IOVA allocator: the tree path (per-CPU caches bypassed) at 10 % and 90 % fill, and the rcache fast path.
/// Steady state: each operation frees a random live range and allocates a new one of a random 1..32-page size, so the
/// fill and the fragmentation stay where the setup put them (anchor T9: mixed sizes, rcache disabled).
/// </summary>
[MemoryDiagnoser]
public class PagingAllocatorBenchmarks
{
    private const ulong SpacePages = 1UL << 24; // 64 GiB of IOVA with 4 KiB pages
    private const int Ops = 4096;
    private IovaAllocator _iovad = null!;
    private ulong[] _livePfn = null!;
    private ulong[] _livePages = null!;
    private int[] _victims = null!;
    private ulong[] _sizes = null!;
    private int _cursor;

    [Params(10, 90)]
    public int FillPercent { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(7);
        _iovad = FragmentedAllocator.Create(SpacePages, FillPercent, rng, out _livePfn, out _livePages);
        _victims = new int[Ops];
        _sizes = new ulong[Ops];
        for (int i = 0; i < Ops; i++) { _victims[i] = rng.Next(_livePfn.Length); _sizes[i] = (ulong)rng.Next(1, 33); }
    }

    [Benchmark(Description = "alloc+free, tree path (rcache bypassed)", OperationsPerInvoke = Ops)]
    public ulong TreeFreeThenAlloc()
    {
        ulong last = 0;
        for (int i = 0; i < Ops; i++)
        {
            int j = _victims[(_cursor + i) & (Ops - 1)];
            _iovad.FreeTree(_livePfn[j], _livePages[j]);
            ulong n = _sizes[i];
            ulong pfn = _iovad.AllocTree(n, SpacePages - 1);
            if (pfn == 0) { pfn = _iovad.AllocTree(_livePages[j], SpacePages - 1); n = _livePages[j]; }
            _livePfn[j] = pfn;
            _livePages[j] = n;
            last = pfn;
        }
        _cursor += 7;
        return last;
    }

    [Benchmark(Description = "alloc+free 1 page, rcache hit", OperationsPerInvoke = Ops)]
    public ulong CachedAllocFree()
    {
        ulong last = 0;
        for (int i = 0; i < Ops; i++)
        {
            ulong pfn = _iovad.Alloc(1, SpacePages - 1);
            _iovad.Free(pfn, 1);
            last = pfn;
        }
        return last;
    }
}

/// <summary>The allocator state of <see cref="PagingAllocatorBenchmarks"/> and <c>--paging-best</c>: a space of
/// <c>spacePages</c> pages filled to <c>fillPercent</c> with mixed 1..32-page ranges through the tree path, overfilled
/// by a sixth and then thinned by random frees, so it is fragmented like a long-running domain, not one dense run.</summary>
internal static class FragmentedAllocator
{
    public static IovaAllocator Create(ulong spacePages, int fillPercent, Random rng, out ulong[] livePfn, out ulong[] livePages)
    {
        var iovad = new IovaAllocator(4096, 1);
        var pfns = new List<ulong>();
        var pages = new List<ulong>();
        ulong used = 0, target = spacePages * (ulong)fillPercent / 100;
        while (used < target + target / 6)
        {
            ulong n = (ulong)rng.Next(1, 33);
            ulong pfn = iovad.AllocTree(n, spacePages - 1);
            if (pfn == 0) break;
            pfns.Add(pfn);
            pages.Add(n);
            used += IovaAllocator.RoundedSize(n);
        }
        while (used > target)
        {
            int j = rng.Next(pfns.Count);
            iovad.FreeTree(pfns[j], pages[j]);
            used -= IovaAllocator.RoundedSize(pages[j]);
            pfns[j] = pfns[^1]; pfns.RemoveAt(pfns.Count - 1);
            pages[j] = pages[^1]; pages.RemoveAt(pages.Count - 1);
        }
        livePfn = pfns.ToArray();
        livePages = pages.ToArray();
        return iovad;
    }
}
