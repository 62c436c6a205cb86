using System.Diagnostics;
using System.Globalization;
using IommuKit.Dma;
using IommuKit.Paging;
using IommuKit.Simulation;

namespace IommuKit.Bench;

/// <summary>
/// <c>--map-unmap-parts</c>: where one 4 KiB map+unmap through the DMA API goes, component by component, each timed
/// alone in the same process as best of many short batches (docs/PERFORMANCE.md, "Issue 13"): the IOVA allocator's
/// per-CPU cache (alloc+free of one page, below 4 GiB as the DMA API first tries), the page table's 4 KiB map+unmap,
/// the strict unmap's IOTLB range invalidation, the lazy unmap's flush-queue entry, and the whole DMA API pair in
/// both modes. Plain text on stdout.
/// </summary>
internal static class MapUnmapParts
{
    private const ulong K4 = 4096;
    private const ulong Limit32 = 0xffff_ffffUL >> 12;

    private sealed class SpinGateBox
    {
        public SpinGate Gate;
    }

    private static double MinNs(int batches, int opsPerBatch, Func<int, ulong> batch)
    {
        var warm = Stopwatch.StartNew();
        while (warm.ElapsedMilliseconds < 1000) batch(opsPerBatch);
        double best = double.MaxValue;
        for (int b = 0; b < batches; b++)
        {
            long t0 = Stopwatch.GetTimestamp();
            batch(opsPerBatch);
            best = Math.Min(best, Stopwatch.GetElapsedTime(t0).TotalNanoseconds / opsPerBatch);
        }
        return best;
    }

    public static int Run(TextWriter o)
    {
        void Line(string what, double ns) => o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{what,-44} {ns,7:F1} ns"));

        var gate = new SpinGateBox();
        Line("spin lock enter+exit (one CAS)", MinNs(2000, 256, n =>
        {
            for (int i = 0; i < n; i++) { gate.Gate.Enter(); gate.Gate.Exit(); }
            return 0;
        }));
        Line("Thread.GetCurrentProcessorId", MinNs(2000, 256, n =>
        {
            ulong s = 0;
            for (int i = 0; i < n; i++) s += (ulong)Thread.GetCurrentProcessorId();
            return s;
        }));
        Line("PerCpu.Current (the slot the caches use)", MinNs(2000, 256, n =>
        {
            ulong s = 0;
            for (int i = 0; i < n; i++) s += (ulong)PerCpu.Current(1);
            return s;
        }));

        var iovad = new IovaAllocator(4096, 1);
        iovad.Free(iovad.Alloc(1, Limit32), 1);
        Line("IOVA alloc+free, 1 page (rcache)", MinNs(2000, 256, n =>
        {
            ulong s = 0;
            for (int i = 0; i < n; i++)
            {
                ulong p = iovad.Alloc(1, Limit32, flushRcache: false);
                iovad.Free(p, 1);
                s += p;
            }
            return s;
        }));

        IIoPageTable table = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        table.Map(0xfff0_0000, 0x7000_0000, K4, IommuProt.Read); // keeps the tables present
        Line("page table map+unmap 4 KiB", MinNs(2000, 256, n =>
        {
            ulong s = 0;
            for (int i = 0; i < n; i++)
            {
                ulong iova = 0xfff0_1000 + ((ulong)(i & 127) << 12);
                s += (ulong)table.Map(iova, 0x1000_0000UL + ((ulong)(i & 255) << 12), K4, IommuProt.Read);
                s += (ulong)table.Unmap(iova, K4);
            }
            return s;
        }));

        var iommu = new IommuHardware();
        IIotlbInvalidator inv = iommu.InvalidatorFor(1);
        Line("IOTLB range invalidation 4 KiB (strict)", MinNs(2000, 256, n =>
        {
            for (int i = 0; i < n; i++) inv.InvalidateRange(0xfff0_1000 + ((ulong)(i & 127) << 12), K4);
            return 0;
        }));

        Line("  of which Iotlb.InvalidateRange alone", MinNs(2000, 256, n =>
        {
            for (int i = 0; i < n; i++) iommu.Iotlb.InvalidateRange(1, 0xfff0_1000 + ((ulong)(i & 127) << 12), K4);
            return 0;
        }));
        long counter = 0;
        Line("  of which one Interlocked.Increment", MinNs(2000, 256, n =>
        {
            for (int i = 0; i < n; i++) Interlocked.Increment(ref counter);
            return 0;
        }));

        var fqIovad = new IovaAllocator(4096, 1);
        using (var fq = new FlushQueue(iommu.InvalidatorFor(2), fqIovad))
        {
            Line("IOVA alloc + flush-queue entry (lazy)", MinNs(2000, 256, n =>
            {
                ulong s = 0;
                for (int i = 0; i < n; i++)
                {
                    ulong p = fqIovad.Alloc(1, Limit32, flushRcache: false);
                    fq.Queue(p, 1);
                    s += p;
                }
                return s;
            }));
        }

        using (var strict = new DmaBenchRig(DmaMode.Strict))
            Line("DMA API map+unmap 4 KiB strict", MinNs(2000, 256, strict.MapUnmap4k));
        using (var lazy = new DmaBenchRig(DmaMode.Lazy))
        {
            Line("DMA API map+unmap 4 KiB lazy", MinNs(2000, 256, lazy.MapUnmap4k));
            // Lazy unmaps hold ~255 IOVAs per CPU until the flush, so the loop cycles over several hundred IOVAs: count
            // the leaf tables created and freed on the way (each costs a dozen atomics).
            int changes = 0, last = lazy.Table.TablePageCount;
            for (int i = 0; i < 100_000; i++)
            {
                lazy.MapUnmap4k(1);
                int now = lazy.Table.TablePageCount;
                if (now != last) changes++;
                last = now;
            }
            o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"lazy: table page count changed {changes} times in 100,000 pairs; {lazy.Table.TablePageCount} table pages"));
        }
        return 0;
    }
}
