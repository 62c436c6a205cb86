using FsCheck;
using FsCheck.Fluent;
using IommuKit.Paging;
using Xunit;

namespace IommuKit.Tests.Paging;

/// <summary>
/// The IOTLB's one-page range invalidation (a strict unmap of a 4 KiB buffer takes it instead of the per-array loops):
/// on random fills of 4 KiB pages, 2 MiB pages and 64 KiB blocks in two domains, invalidating any range inside one
/// page drops exactly the entries of that domain covering that page (its 4 KiB entry, its 2 MiB slice, its 64 KiB
/// block) and keeps every other hit.
/// </summary>
public class IotlbPageInvalidationTests
{
    private const ulong K4 = 4096, K64 = 65536, M2 = 2UL << 20;
    private const ulong Base = 0x4000_0000; // region 0: 4 KiB pages; 1-3: 2 MiB pages; 4: 64 KiB blocks

    [Fact]
    public void InvalidatingInsideOnePageDropsExactlyTheEntriesCoveringThatPage()
    {
        Prop.ForAll<int[], int>((fills, target) =>
        {
            var tlb = new Iotlb();
            for (int i = 0; i < fills.Length; i++)
            {
                uint x = Mix(fills[i], i);
                int d = 1 + (int)(x & 1);
                uint kind = (x >> 1) % 3, arg = x >> 3;
                if (kind == 0)
                    tlb.Fill(d, Base + arg % 512 * K4, K4, 0x8000_0000 + arg % 512 * K4, IommuProt.Read);
                else if (kind == 1)
                    tlb.Fill(d, Base + (1 + arg % 3) * M2, M2, 0x1_0000_0000 + (arg % 3) * M2, IommuProt.Write);
                else
                    tlb.FillBlock(d, Base + 4 * M2 + arg % 32 * K64, 0x2_0000_0000 + arg % 32 * K64, IommuProt.Read, -1);
            }
            uint t = Mix(target, -1);
            int dom = 1 + (int)(t & 1);
            ulong page = Base + (t >> 1) % (5 * 512) * K4; // any page of the five regions
            ulong offset = (t >> 13) % K4, size = 1 + (t >> 5) % (K4 - offset);

            var before = Snapshot(tlb);
            tlb.InvalidateRange(dom, page + offset, size);
            var after = Snapshot(tlb);
            foreach (var ((d, iova, block), hit) in before)
            {
                bool inLargePage = iova >= Base + M2 && iova < Base + 4 * M2;
                bool covers = d == dom && (block ? iova >> 16 == page >> 16
                    : inLargePage ? iova >> 21 == page >> 21 : iova >> 12 == page >> 12);
                if (after[(d, iova, block)] != (hit && !covers)) return false;
            }
            return true;
        }).QuickCheckThrowOnFailure();
    }

    private static uint Mix(int v, int i)
    {
        uint x = (uint)v * 0x9E3779B1u + (uint)i * 0x85EBCA77u;
        x = (x ^ (x >> 15)) * 0x2C1B3C6Du;
        return x ^ (x >> 12);
    }

    /// <summary>Hit or miss for every page of both domains (page lookups) and every block of region 4 (block lookups).</summary>
    private static Dictionary<(int Domain, ulong Iova, bool Block), bool> Snapshot(Iotlb tlb)
    {
        var s = new Dictionary<(int, ulong, bool), bool>();
        for (int d = 1; d <= 2; d++)
        {
            for (ulong p = 0; p < 4 * 512; p++)
                s[(d, Base + p * K4, false)] = tlb.TryLookup(d, Base + p * K4, out _, out _);
            for (ulong b = 0; b < 32; b++)
                s[(d, Base + 4 * M2 + b * K64, true)] = tlb.ProbeBlock(d, Base + 4 * M2 + b * K64) != 0;
        }
        return s;
    }
}
