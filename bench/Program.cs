using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using BenchmarkDotNet.Running;
using IommuKit.Dma;
using IommuKit.Paging;
using IommuKit.Simulation;

namespace IommuKit.Bench;

public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "--quick")
            return QuickRun.Run(Console.Out, Console.Error);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}

/// <summary>
/// <c>--quick</c>: about a minute of Stopwatch measurements, one JSON object per line on stdout
/// (<c>{"name":..., "value":..., "unit":...}</c>); details on stderr. Each figure is the median of several runs; each
/// ratio is measured against its baseline in the same process, interleaved.
/// </summary>
internal static class QuickRun
{
    public const ulong CopyWorkingSet = 256 * 1024; // L2-resident source/destination working set
    private const int Runs = 7;
    private const ushort HitRid = DmaBenchRig.Rid + 1;

    public static int Run(TextWriter stdout, TextWriter stderr)
    {
        var total = Stopwatch.StartNew();
        stderr.WriteLine($"quick DMA benchmarks: {Environment.ProcessorCount} CPUs, .NET {Environment.Version}, {RuntimeInformationText()}");

        using (var lazy = new DmaBenchRig(DmaMode.Lazy))
            Emit(stdout, "map_unmap_4k_lazy", MedianNsPerOp(n => lazy.MapUnmap4k(n), 400_000), "ns");
        using (var strict = new DmaBenchRig(DmaMode.Strict))
            Emit(stdout, "map_unmap_4k_strict", MedianNsPerOp(n => strict.MapUnmap4k(n), 400_000), "ns");

        var (map256, unmap256) = Measure256x4k();
        Emit(stdout, "map_256x4k", map256, "ns");
        Emit(stdout, "unmap_256x4k", unmap256, "ns");

        using (var rig = new DmaBenchRig(DmaMode.Strict))
        {
            ulong hot = rig.Api.MapSingle(0x3000_0000, 64 * 4096, DmaDirection.Bidirectional);
            Emit(stdout, "translate_hit", MedianNsPerOp(n => TranslateHitLoop(rig.Iommu, hot, n), 10_000_000), "ns");

            const int MissPages = 1 << 20;
            const ulong MissIova = 0x1_0000_0000;
            rig.Table.Map(MissIova, 0x2_0000_1000, (ulong)MissPages * 4096, IommuProt.Read | IommuProt.Write);
            long missesBefore = rig.Iommu.Iotlb.Misses, hitsBefore = rig.Iommu.Iotlb.Hits;
            Emit(stdout, "translate_miss", MedianNsPerOp(n => TranslateMissLoop(rig.Iommu, MissIova, MissPages, n, 7), 2_000_000), "ns");
            long misses = rig.Iommu.Iotlb.Misses - missesBefore, hits = rig.Iommu.Iotlb.Hits - hitsBefore;
            stderr.WriteLine($"  translate_miss: IOTLB miss rate {100.0 * misses / Math.Max(1, misses + hits):F1} % over 1 M random 4 KiB pages (8 MiB of tables)");
        }

        Emit(stdout, "dma_copy_vs_memcpy", MeasureCopyRatio(stderr), "ratio");
        Emit(stdout, "alloc_fill90_vs_fill10", MeasureAllocatorFill(stderr), "ratio");
        Emit(stdout, "two_thread_scaling", MeasureTwoThreads(stderr), "ratio");
        Emit(stdout, "alloc_bytes_per_op", MeasureAllocatedBytes(stderr), "bytes");

        stderr.WriteLine($"quick run took {total.Elapsed.TotalSeconds:F1} s");
        return 0;
    }

    private static string RuntimeInformationText() =>
        $"{System.Runtime.InteropServices.RuntimeInformation.OSDescription.Trim()}, server GC {System.Runtime.GCSettings.IsServerGC}";

    private static void Emit(TextWriter w, string name, double value, string unit)
    {
        w.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{{\"name\":\"{name}\",\"value\":{Math.Round(value, 3)},\"unit\":\"{unit}\"}}"));
        w.Flush();
    }

    /// <summary>Median over <see cref="Runs"/> runs of <paramref name="opsPerRun"/> operations, after one warm-up run.</summary>
    private static double MedianNsPerOp(Func<int, ulong> body, int opsPerRun)
    {
        body(opsPerRun / 4); // warm-up: tiering, PGO, caches, backing chunks
        var samples = new double[Runs];
        for (int r = 0; r < Runs; r++)
        {
            long t0 = Stopwatch.GetTimestamp();
            body(opsPerRun);
            samples[r] = Stopwatch.GetElapsedTime(t0).TotalNanoseconds / opsPerRun;
        }
        return Median(samples);
    }

    private static double Median(double[] samples)
    {
        Array.Sort(samples);
        return samples[samples.Length / 2];
    }

    // ---- loops shared with the BenchmarkDotNet classes ----

    /// <summary>Translations of 64 hot pages (all IOTLB hits after the first round).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static ulong TranslateHitLoop(IommuHardware iommu, ulong baseIova, int count)
    {
        ulong sum = 0;
        for (int i = 0; i < count; i++)
            sum += iommu.Translate(HitRid, baseIova + ((ulong)(i & 63) << 12) + (ulong)(i & 0xff8), write: false).Phys;
        return sum;
    }

    /// <summary>Independent translations of pseudo-random pages among <paramref name="pages"/> (mostly IOTLB misses:
    /// a walk of cached tables plus a fill).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static ulong TranslateMissLoop(IommuHardware iommu, ulong baseIova, int pages, int count, ulong seed)
    {
        ulong sum = 0, x = seed;
        ulong mask = (ulong)pages - 1;
        for (int i = 0; i < count; i++)
        {
            x = x * 6364136223846793005UL + 1442695040888963407UL;
            sum += iommu.Translate(HitRid, baseIova + (((x >> 33) & mask) << 12), write: false).Phys;
        }
        return sum;
    }

    /// <summary><paramref name="count"/> writes of <paramref name="src"/> straight into physical memory, cycling over the
    /// working set (the "plain memory copy" baseline).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static ulong PlainCopyLoop(PhysicalMemory memory, ulong phys, byte[] src, int count)
    {
        ulong slots = CopyWorkingSet / (ulong)src.Length;
        for (int i = 0; i < count; i++)
            memory.Write(phys + (ulong)i % slots * (ulong)src.Length, src);
        return 0;
    }

    /// <summary>The same pattern as <see cref="PlainCopyLoop"/>, as device DMA writes through the IOMMU.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static DmaFaultReason DmaCopyLoop(SimulatedDevice device, ulong dma, byte[] src, int count)
    {
        ulong slots = CopyWorkingSet / (ulong)src.Length;
        DmaFaultReason r = DmaFaultReason.None;
        for (int i = 0; i < count; i++)
            r |= device.Write(dma + (ulong)i % slots * (ulong)src.Length, src);
        return r;
    }

    // ---- individual measurements ----

    private static (double Map, double Unmap) Measure256x4k()
    {
        IIoPageTable table = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        const int Batch = 64;
        const ulong Size = 256 * 4096;
        // Batch ranges 4 KiB- (not 2 MiB-) aligned, 2 MiB apart: each call writes 256 leaf PTEs in one or two leaf tables.
        // A neighbour mapping keeps the upper tables alive, as in a live domain.
        table.Map(0x3f00_0000, 0x9000_0000, 0x1000, IommuProt.Read);
        var map = new double[Runs * 3];
        var unmap = new double[Runs * 3];
        for (int r = -3; r < map.Length; r++)
        {
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < Batch; i++)
                table.Map(0x4000_1000 + ((ulong)i << 21), 0x8000_1000 + ((ulong)i << 21), Size, IommuProt.Read | IommuProt.Write);
            long t1 = Stopwatch.GetTimestamp();
            for (int i = 0; i < Batch; i++)
                table.Unmap(0x4000_1000 + ((ulong)i << 21), Size);
            long t2 = Stopwatch.GetTimestamp();
            if (r < 0)
                continue;
            map[r] = Stopwatch.GetElapsedTime(t0, t1).TotalNanoseconds / Batch;
            unmap[r] = Stopwatch.GetElapsedTime(t1, t2).TotalNanoseconds / Batch;
        }
        return (Median(map), Median(unmap));
    }

    private static double MeasureCopyRatio(TextWriter stderr)
    {
        using var rig = new DmaBenchRig(DmaMode.Strict);
        const ulong Phys = 0x3000_0000;
        ulong dma = rig.Api.MapSingle(Phys, CopyWorkingSet, DmaDirection.FromDevice);
        rig.Memory.Write(Phys, new byte[CopyWorkingSet]);
        double worst = double.MaxValue;
        foreach (int size in (int[])[4096, 65536])
        {
            var src = new byte[size];
            new Random(size).NextBytes(src);
            int count = (int)(400L * 1024 * 1024 / size); // 400 MiB per run
            PlainCopyLoop(rig.Memory, Phys, src, count / 4);
            DmaCopyLoop(rig.Device, dma, src, count / 4);
            var ratios = new double[Runs];
            double plainNs = 0, dmaNs = 0;
            for (int r = 0; r < Runs; r++)
            {
                long t0 = Stopwatch.GetTimestamp();
                PlainCopyLoop(rig.Memory, Phys, src, count);
                long t1 = Stopwatch.GetTimestamp();
                DmaCopyLoop(rig.Device, dma, src, count);
                long t2 = Stopwatch.GetTimestamp();
                double p = Stopwatch.GetElapsedTime(t0, t1).TotalNanoseconds, d = Stopwatch.GetElapsedTime(t1, t2).TotalNanoseconds;
                ratios[r] = p / d; // throughput through translation / plain throughput
                plainNs += p;
                dmaNs += d;
            }
            double ratio = Median(ratios);
            stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  dma_copy_vs_memcpy {size / 1024} KiB transfers: plain {count * (double)size * Runs / plainNs:F1} GB/s, through IOVA {count * (double)size * Runs / dmaNs:F1} GB/s, ratio {ratio:F3}"));
            worst = Math.Min(worst, ratio);
        }
        return worst;
    }

    /// <summary>
    /// Allocator cost at 90 % fill over 10 % fill: 2^24 pages (64 GiB of IOVA) filled with live mixed 1-32-page ranges,
    /// then alloc+free pairs of 33-64 pages, which always take the tree path (the per-CPU caches hold 1-32 pages only and
    /// cannot be switched off from outside the allocator).
    /// </summary>
    private static double MeasureAllocatorFill(TextWriter stderr)
    {
        const ulong Limit = (1UL << 24) - 1;
        double Cost(double fill)
        {
            var iovad = new IovaAllocator(4096, 1);
            var rnd = new Random(42);
            ulong target = (ulong)(fill * Limit), used = 0;
            while (used < target)
            {
                ulong pages = (ulong)rnd.Next(1, 33);
                if (iovad.Alloc(pages, Limit) == 0)
                    break;
                used += pages <= 32 ? System.Numerics.BitOperations.RoundUpToPowerOf2(pages) : pages;
            }
            var sizes = new ulong[1024];
            for (int i = 0; i < sizes.Length; i++)
                sizes[i] = (ulong)rnd.Next(33, 65);
            return MedianNsPerOp(n =>
            {
                ulong s = 0;
                for (int i = 0; i < n; i++)
                {
                    ulong pages = sizes[i & 1023];
                    ulong pfn = iovad.Alloc(pages, Limit, flushRcache: false);
                    iovad.Free(pfn, pages);
                    s += pfn;
                }
                return s;
            }, 200_000);
        }
        double c10 = Cost(0.10), c90 = Cost(0.90);
        stderr.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  allocator tree alloc+free: {c10:F1} ns at 10 % fill, {c90:F1} ns at 90 % fill"));
        return c90 / c10;
    }

    /// <summary>Aggregate lazy map+unmap throughput of two threads (two devices, two domains, one IOMMU) over one thread.</summary>
    private static double MeasureTwoThreads(TextWriter stderr)
    {
        var iommu = new IommuHardware();
        var memory = new PhysicalMemory();
        using var a = new DmaBenchRig(DmaMode.Lazy, 1, iommu, memory);
        using var b = new DmaBenchRig(DmaMode.Lazy, 2, iommu, memory);
        const int N = 400_000;
        a.MapUnmap4k(N / 4);
        b.MapUnmap4k(N / 4);
        using var go = new Barrier(3);
        using var done = new Barrier(3);
        bool stop = false;
        void Worker(DmaBenchRig rig)
        {
            while (true)
            {
                go.SignalAndWait();
                if (Volatile.Read(ref stop))
                    return;
                rig.MapUnmap4k(N);
                done.SignalAndWait();
            }
        }
        var ta = new Thread(() => Worker(a)) { IsBackground = true };
        var tb = new Thread(() => Worker(b)) { IsBackground = true };
        ta.Start();
        tb.Start();
        var ratios = new double[Runs];
        double one = 0, two = 0;
        for (int r = 0; r < Runs; r++)
        {
            long t0 = Stopwatch.GetTimestamp();
            a.MapUnmap4k(N);
            double single = Stopwatch.GetElapsedTime(t0).TotalNanoseconds;
            go.SignalAndWait();
            long t1 = Stopwatch.GetTimestamp();
            done.SignalAndWait();
            double both = Stopwatch.GetElapsedTime(t1).TotalNanoseconds;
            ratios[r] = 2 * single / both;
            one += single;
            two += both;
        }
        Volatile.Write(ref stop, true);
        go.SignalAndWait();
        ta.Join();
        tb.Join();
        stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  two_thread_scaling: one thread {one / Runs / N:F1} ns/pair, two threads {two / Runs / N:F1} ns per pair per thread"));
        return Median(ratios);
    }

    /// <summary>Bytes allocated per operation on the hot paths (map/unmap both modes, sg, translate, DMA copy).</summary>
    private static double MeasureAllocatedBytes(TextWriter stderr)
    {
        using var lazy = new DmaBenchRig(DmaMode.Lazy);
        using var strict = new DmaBenchRig(DmaMode.Strict);
        ulong hot = strict.Api.MapSingle(0x3000_0000, CopyWorkingSet, DmaDirection.Bidirectional);
        var src = new byte[4096];
        var sg = new ScatterEntry[16];
        void Round(int n)
        {
            lazy.MapUnmap4k(n);
            strict.MapUnmap4k(n);
            TranslateHitLoop(strict.Iommu, hot, n);
            DmaCopyLoop(strict.Device, hot, src, n);
            for (int i = 0; i < n / 16; i++)
            {
                for (int j = 0; j < sg.Length; j++)
                    sg[j] = new ScatterEntry(0x2000_0000UL + ((ulong)j << 13), 4096);
                lazy.Api.MapSg(sg, DmaDirection.ToDevice);
                lazy.Api.UnmapSg(sg, DmaDirection.ToDevice);
            }
        }
        Round(50_000); // warm-up: first-touch chunks, magazines, timer creation
        const int N = 200_000;
        long before = GC.GetAllocatedBytesForCurrentThread();
        Round(N);
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        long ops = 4L * N + N / 16;
        stderr.WriteLine($"  alloc_bytes_per_op: {bytes} bytes over {ops} operations");
        return (double)bytes / ops;
    }
}
