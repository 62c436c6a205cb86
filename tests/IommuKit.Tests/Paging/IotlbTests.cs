using IommuKit.Paging;
using Xunit;

namespace IommuKit.Tests.Paging;

public class IotlbTests
{
    private const ulong K4 = 4096, M2 = 2UL << 20, G1 = 1UL << 30;
    private const IommuProt RW = IommuProt.Read | IommuProt.Write;

    [Fact]
    public void LookupMissesUntilFilledThenHitsWithThePageOffset()
    {
        var tlb = new Iotlb();
        Assert.False(tlb.TryLookup(1, 0x5123, out _, out _));
        tlb.Fill(1, 0x5000, K4, 0x9000, IommuProt.Read);
        Assert.True(tlb.TryLookup(1, 0x5123, out ulong pa, out var prot));
        Assert.Equal(0x9123UL, pa);
        Assert.Equal(IommuProt.Read, prot);
        Assert.False(tlb.TryLookup(1, 0x6000, out _, out _)); // the next page was never filled
        Assert.Equal(1, tlb.Hits);
        Assert.Equal(2, tlb.Misses);
    }

    [Fact]
    public void FillWithTheTranslationOfAnyAddressInsideThePageCachesThePage()
    {
        var tlb = new Iotlb();
        tlb.Fill(3, 0x7_0abc, K4, 0x1_2345_6abc, RW);
        Assert.True(tlb.TryLookup(3, 0x7_0000, out ulong pa, out _));
        Assert.Equal(0x1_2345_6000UL, pa);
        Assert.True(tlb.TryLookup(3, 0x7_0fff, out pa, out _));
        Assert.Equal(0x1_2345_6fffUL, pa);
    }

    [Fact]
    public void LargePagesAreCachedPerTwoMegabyteSlice()
    {
        var tlb = new Iotlb();
        tlb.Fill(1, G1 + M2 + 0x3000, G1, 0x80_0000_0000UL + M2 + 0x3000, RW);
        Assert.True(tlb.TryLookup(1, G1 + M2, out ulong pa, out _));
        Assert.Equal(0x80_0000_0000UL + M2, pa);
        Assert.True(tlb.TryLookup(1, G1 + 2 * M2 - 1, out pa, out _));
        Assert.Equal(0x80_0000_0000UL + 2 * M2 - 1, pa);
        Assert.False(tlb.TryLookup(1, G1, out _, out _)); // another slice of the same 1 GiB page: not filled yet
    }

    [Fact]
    public void TranslationsOfOneDomainAreInvisibleToAnother()
    {
        var tlb = new Iotlb();
        tlb.Fill(1, 0x1000, K4, 0xa000, RW);
        Assert.False(tlb.TryLookup(2, 0x1000, out _, out _));
        tlb.Fill(2, 0x1000, K4, 0xb000, IommuProt.Read);
        Assert.True(tlb.TryLookup(2, 0x1000, out ulong pa2, out _));
        Assert.Equal(0xb000UL, pa2);
    }

    [Fact]
    public void RangeInvalidationDropsOnlyThatDomainsPagesInTheRange()
    {
        var tlb = new Iotlb();
        for (ulong p = 0; p < 8; p++) tlb.Fill(1, p * K4, K4, 0x10_0000 + p * K4, RW);
        tlb.Fill(2, 2 * K4, K4, 0x20_0000, RW);
        tlb.Fill(1, 4 * M2, M2, 0x40_0000_0000, RW);
        tlb.InvalidateRange(1, 2 * K4 + 5, 3 * K4); // touches pages 2, 3, 4 and 5 (byte range, not page-aligned)
        for (ulong p = 0; p < 8; p++)
            Assert.Equal(p is < 2 or > 5, tlb.TryLookup(1, p * K4, out _, out _));
        Assert.True(tlb.TryLookup(2, 2 * K4, out _, out _));
        Assert.True(tlb.TryLookup(1, 4 * M2, out _, out _));
        tlb.InvalidateRange(1, 4 * M2 + 0x1000, K4); // any overlap with a large page drops it
        Assert.False(tlb.TryLookup(1, 4 * M2, out _, out _));
        Assert.Equal(2, tlb.Invalidations);
    }

    [Fact]
    public void RangeInvalidationLargerThanTheCacheScansEveryEntry()
    {
        var tlb = new Iotlb(sets: 16);
        tlb.Fill(1, 100 * G1, K4, 0x1000, RW);
        tlb.Fill(1, 100 * G1 + 6 * M2, M2, 0x4000_0000, RW);
        tlb.Fill(1, 300 * G1, K4, 0x2000, RW);
        tlb.InvalidateRange(1, 99 * G1, 2 * G1);
        Assert.False(tlb.TryLookup(1, 100 * G1, out _, out _));
        Assert.False(tlb.TryLookup(1, 100 * G1 + 6 * M2, out _, out _));
        Assert.True(tlb.TryLookup(1, 300 * G1, out _, out _));
        tlb.InvalidateRange(1, 0, ulong.MaxValue); // clipped at the top of the space, not wrapped
        Assert.False(tlb.TryLookup(1, 300 * G1, out _, out _));
    }

    [Fact]
    public void DomainInvalidationDropsEveryPageOfThatDomainOnly()
    {
        var tlb = new Iotlb();
        tlb.Fill(1, 0x1000, K4, 0xa000, RW);
        tlb.Fill(1, 8 * M2, M2, 0x4000_0000, RW);
        tlb.Fill(2, 0x2000, K4, 0xb000, RW);
        tlb.InvalidateDomain(1);
        Assert.False(tlb.TryLookup(1, 0x1000, out _, out _));
        Assert.False(tlb.TryLookup(1, 8 * M2, out _, out _));
        Assert.True(tlb.TryLookup(2, 0x2000, out _, out _));
    }

    [Fact]
    public void GlobalInvalidationDropsEverythingAndLaterFillsWorkAgain()
    {
        var tlb = new Iotlb();
        tlb.Fill(1, 0x1000, K4, 0xa000, RW);
        tlb.Fill(2, 8 * M2, M2, 0x4000_0000, RW);
        tlb.InvalidateAll();
        Assert.False(tlb.TryLookup(1, 0x1000, out _, out _));
        Assert.False(tlb.TryLookup(2, 8 * M2, out _, out _));
        tlb.Fill(1, 0x1000, K4, 0xc000, RW);
        Assert.True(tlb.TryLookup(1, 0x1000, out ulong pa, out _));
        Assert.Equal(0xc000UL, pa);
    }

    [Fact]
    public void AFillThatRacedAnInvalidationIsDropped()
    {
        var tlb = new Iotlb();
        long g = tlb.Generation;      // the walker reads the generation, then walks the table...
        tlb.InvalidateRange(1, 0x1000, K4); // ...an unmap invalidates meanwhile...
        tlb.Fill(1, 0x1000, K4, 0xa000, RW, g); // ...so the walk's result must not be cached.
        Assert.False(tlb.TryLookup(1, 0x1000, out _, out _));
        tlb.Fill(1, 0x1000, K4, 0xa000, RW, tlb.Generation);
        Assert.True(tlb.TryLookup(1, 0x1000, out _, out _));
    }

    [Fact]
    public async Task AnInvalidationWaitsForAFillInFlightThatPassedItsGenerationCheck()
    {
        // A walker read the PTE and its fill has claimed the (empty) entry and passed its generation check...
        var tlb = new Iotlb();
        Iotlb.PendingFill fill = tlb.BeginFill(1, 0x1000, K4, 0xa000, RW, tlb.Generation);
        Assert.True(fill.Claimed);
        // ...when the unmap's invalidation runs. It must not skip the entry because it is not valid yet.
        Task invalidation = Task.Run(() => tlb.InvalidateRange(1, 0x1000, K4));
        await Task.WhenAny(invalidation, Task.Delay(200)); // it cannot finish before the fill does
        tlb.EndFill(fill);
        await invalidation.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(tlb.TryLookup(1, 0x1000, out _, out _));
    }

    [Fact]
    public void BadGeometryAndPageSizesAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Iotlb(1000));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Iotlb(8));
        var tlb = new Iotlb();
        Assert.Throws<ArgumentException>(() => tlb.Fill(1, 0, 512, 0, RW));
        Assert.Throws<ArgumentException>(() => tlb.Fill(1, 0, 3 * K4, 0, RW));
    }

    [Fact]
    public void ConcurrentReadersNeverSeeATornEntry()
    {
        // Two pages that share a set are filled alternately by one thread while another looks both up: every hit must
        // return that page's own translation, never a mix of the two entries.
        var tlb = new Iotlb(sets: 16);
        ulong a = 0x1000, b = a + 16 * K4; // same set for the same domain
        ulong Phys(ulong iova) => (iova * 7) & ~(K4 - 1);
        int bad = 0;
        using var stop = new CancellationTokenSource();
        var writer = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                tlb.Fill(5, a, K4, Phys(a), IommuProt.Read);
                tlb.Fill(5, b, K4, Phys(b), IommuProt.Write);
                tlb.InvalidateRange(5, a, K4);
            }
        });
        writer.Start();
        var until = DateTime.UtcNow.AddMilliseconds(200);
        long hits = 0;
        while (DateTime.UtcNow < until)
        {
            for (int i = 0; i < 1000; i++)
            {
                ulong iova = (i & 1) == 0 ? a : b;
                if (tlb.TryLookup(5, iova + 0x10, out ulong pa, out var prot))
                {
                    hits++;
                    if (pa != Phys(iova) + 0x10 || prot != (iova == a ? IommuProt.Read : IommuProt.Write)) bad++;
                }
            }
        }
        stop.Cancel();
        writer.Join();
        Assert.Equal(0, bad);
    }
}
