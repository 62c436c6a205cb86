using System.Collections.Concurrent;
using FsCheck;
using IommuKit.Dma;
using IommuKit.Simulation;
using Xunit;

namespace IommuKit.Tests.Dma;

public class DmaConcurrencyTests
{
    [Theory]
    [InlineData(DmaMode.Strict)]
    [InlineData(DmaMode.Lazy)]
    public void ConcurrentMapUnmapFromManyThreadsNeverSharesAnIovaAndAlwaysTranslatesToTheRightBuffer(DmaMode mode)
    {
        using var rig = new DmaRig();
        // Lazy: one ring per CPU, as in the kernel, so rings are shared and contended.
        var api = rig.Api(mode, queueCount: 0);
        const int Threads = 4, Iterations = 1500, MaxLive = 8;
        var owner = new ConcurrentDictionary<ulong, int>(); // IOVA page -> thread that holds it
        var errors = new ConcurrentQueue<string>();

        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                var dev = rig.AddDeviceThreadSafe((ushort)(0x0500 + t));
                var rnd = new Random(t);
                var live = new Queue<(ulong Dma, ulong Size, ulong Phys)>();
                var tag = new byte[8];
                for (int i = 0; i < Iterations; i++)
                {
                    ulong phys = 0x1000_0000UL * (ulong)(t + 1) + (ulong)rnd.Next(0, 1 << 20);
                    ulong size = (ulong)rnd.Next(8, 5 * 4096);
                    BitConverter.TryWriteBytes(tag, ((long)t << 32) | (long)i);
                    rig.Memory.Write(phys, tag);
                    ulong dma = api.MapAddress(phys, size, DmaDirection.Bidirectional);
                    if (dma == DmaApi.MappingError)
                    {
                        errors.Enqueue($"thread {t}: map failed");
                        return;
                    }
                    for (ulong p = dma >> 12; p <= (dma + size - 1) >> 12; p++)
                    {
                        if (!owner.TryAdd(p, t))
                            errors.Enqueue($"thread {t}: IOVA page 0x{p:x} already held by thread {owner[p]}");
                    }
                    var seen = new byte[8];
                    var fault = dev.Read(dma, seen);
                    if (fault != DmaFaultReason.None || !seen.AsSpan().SequenceEqual(tag))
                        errors.Enqueue($"thread {t}: DMA through 0x{dma:x} gave {fault}/{Convert.ToHexString(seen)}, wanted {Convert.ToHexString(tag)}");
                    live.Enqueue((dma, size, phys));
                    if (live.Count > MaxLive || i == Iterations - 1)
                    {
                        while (live.Count > (i == Iterations - 1 ? 0 : MaxLive / 2))
                        {
                            var (d, s, _) = live.Dequeue();
                            for (ulong p = d >> 12; p <= (d + s - 1) >> 12; p++)
                                owner.TryRemove(p, out _);
                            api.UnmapSingle(d, s, DmaDirection.Bidirectional);
                        }
                    }
                }
            }
            catch (Exception e)
            {
                errors.Enqueue($"thread {t}: {e}");
            }
        })).ToArray();
        foreach (var th in threads)
            th.Start();
        foreach (var th in threads)
            th.Join();

        Assert.Empty(errors);
        api.FlushQueue?.FlushAll();
        Assert.Equal(0, api.FlushQueue?.PendingCount ?? 0);
        Assert.Equal(1, rig.Table.TablePageCount);
        Assert.Equal(0, rig.Iommu.FaultCount);
    }
}

public class DmaApiPropertyTests
{
    [Fact]
    public void AnySequenceOfMapsAndUnmapsKeepsLiveMappingsDisjointAndCorrectAndLeavesNothingBehind()
    {
        FsCheck.Fluent.Prop.ForAll<int>(seed =>
        {
            foreach (var mode in new[] { DmaMode.Strict, DmaMode.Lazy })
            {
                using var rig = new DmaRig();
                var api = rig.Api(mode, mask: (seed & 1) == 0 ? ulong.MaxValue : 0xffff_ffff);
                var rnd = new Random(seed);
                var live = new List<(ulong Dma, ulong Size, ulong Phys)>();
                for (int step = 0; step < 200; step++)
                {
                    if (live.Count == 0 || rnd.Next(3) != 0)
                    {
                        ulong phys = (ulong)rnd.NextInt64(1, 1L << 40);
                        ulong size = (ulong)rnd.Next(1, 70_000);
                        ulong dma = api.MapAddress(phys, size, (DmaDirection)rnd.Next(3));
                        if (dma == DmaApi.MappingError || dma + size - 1 > api.DmaMask)
                            return false;
                        foreach (var (d, s, _) in live)
                        {
                            // Whole granules are mapped: compare granule-aligned ranges.
                            ulong a0 = dma & ~0xfffUL, a1 = (dma + size + 0xfff) & ~0xfffUL;
                            ulong b0 = d & ~0xfffUL, b1 = (d + s + 0xfff) & ~0xfffUL;
                            if (a0 < b1 && b0 < a1)
                                return false;
                        }
                        live.Add((dma, size, phys));
                    }
                    else
                    {
                        int i = rnd.Next(live.Count);
                        api.UnmapSingle(live[i].Dma, live[i].Size, DmaDirection.Bidirectional);
                        live.RemoveAt(i);
                    }
                    foreach (var (d, s, p) in live)
                    {
                        if (!rig.Table.TryIovaToPhys(d + s - 1, out ulong last, out _) || last != p + s - 1)
                            return false;
                    }
                }
                foreach (var (d, s, _) in live)
                    api.UnmapSingle(d, s, DmaDirection.Bidirectional);
                api.FlushQueue?.FlushAll();
                if (rig.Table.TablePageCount != 1 || (api.FlushQueue?.PendingCount ?? 0) != 0)
                    return false;
            }
            return true;
        }).QuickCheckThrowOnFailure();
    }
}
