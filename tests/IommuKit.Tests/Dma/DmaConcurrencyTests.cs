using System.Collections.Concurrent;
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
                    ulong dma = api.MapSingle(phys, size, DmaDirection.Bidirectional);
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
