using FsCheck;
using FsCheck.Fluent;
using IommuKit.Paging;
using Xunit;

namespace IommuKit.Tests.Paging;

/// <summary>
/// The radix table's single 4 KiB page map/unmap fast path (the DMA API's common case) against the general path it
/// short-cuts: on random sequences of 4 KiB, multi-page and 2 MiB maps and unmaps over a few 2 MiB regions (so tables
/// are created, emptied and freed, large pages sit next to small ones, and maps collide), every call returns the same
/// errno and both tables end identical, page by page.
/// </summary>
public class SinglePageFastPathTests
{
    private const ulong K4 = 4096, M2 = 2UL << 20;
    private const int Regions = 4;
    private const ulong Pages = Regions * 512;
    private static readonly IommuProt[] Prots = [IommuProt.Read, IommuProt.Write, IommuProt.Read | IommuProt.Write];

    [Fact]
    public void X86Level4FastPathGivesTheGeneralPathsResults() =>
        Check(() => new RadixIoPageTable<X86Level4Format>(IoPageTables.DefaultMaxTablePages),
            () => new RadixIoPageTable<X86Level4Format>(IoPageTables.DefaultMaxTablePages),
            (t, a, b, c, d) => t.MapWithoutFastPath(a, b, c, d), (t, a, b) => t.UnmapWithoutFastPath(a, b));

    [Fact]
    public void X86Level5FastPathGivesTheGeneralPathsResults() =>
        Check(() => new RadixIoPageTable<X86Level5Format>(IoPageTables.DefaultMaxTablePages),
            () => new RadixIoPageTable<X86Level5Format>(IoPageTables.DefaultMaxTablePages),
            (t, a, b, c, d) => t.MapWithoutFastPath(a, b, c, d), (t, a, b) => t.UnmapWithoutFastPath(a, b));

    [Fact]
    public void ArmLpaeFastPathGivesTheGeneralPathsResults() =>
        Check(() => new RadixIoPageTable<ArmLpae4KFormat>(IoPageTables.DefaultMaxTablePages),
            () => new RadixIoPageTable<ArmLpae4KFormat>(IoPageTables.DefaultMaxTablePages),
            (t, a, b, c, d) => t.MapWithoutFastPath(a, b, c, d), (t, a, b) => t.UnmapWithoutFastPath(a, b));

    [Fact]
    public void AnUnmapThatEmptiesALeafTableFreesItAndItsParentsOnTheFastPath()
    {
        var t = new RadixIoPageTable<X86Level4Format>(IoPageTables.DefaultMaxTablePages);
        Assert.Equal(Errno.Ok, t.Map(0x4000_0000, 0x1000, K4, IommuProt.Read));   // creates levels 2, 1 and 0
        Assert.Equal(Errno.Ok, t.Map(0x4000_1000, 0x2000, K4, IommuProt.Read));   // fast path: tables exist
        Assert.Equal(4, t.TablePageCount);
        Assert.Equal(Errno.Ok, t.Unmap(0x4000_0000, K4));                          // fast path, table not empty
        Assert.Equal(4, t.TablePageCount);
        Assert.Equal(Errno.Ok, t.Unmap(0x4000_1000, K4));                          // fast path empties the leaf table
        Assert.Equal(1, t.TablePageCount);
        Assert.Null(t.Validate());
        Assert.Equal(Errno.ENOENT, t.Unmap(0x4000_1000, K4));
        Assert.Equal(Errno.Ok, t.Map(0x4000_1000, 0x3000, K4, IommuProt.Write));  // tables come back from the pool
        Assert.True(t.TryIovaToPhys(0x4000_1234, out ulong pa, out IommuProt prot));
        Assert.Equal(0x3234UL, pa);
        Assert.Equal(IommuProt.Write, prot);
        Assert.Null(t.Validate());
    }

    [Fact]
    public void TheFastPathRefusesALiveLeafTableOfAnotherPositionWhateverLedToIt()
    {
        // The descent checks only the leaf (its key under the version the lock confirms); a parent freed and reused
        // meanwhile can lead it to the live leaf of another 2 MiB region. Set that up: leaf A's slot in its parent
        // points at leaf B. Both fast paths must refuse it and change nothing in B.
        var t = new RadixIoPageTable<X86Level4Format>(IoPageTables.DefaultMaxTablePages);
        Assert.Equal(Errno.Ok, t.Map(0x4000_0000, 0x1000, K4, IommuProt.Read)); // leaf A: [1 GiB, +2 MiB)
        Assert.Equal(Errno.Ok, t.Map(0x4020_0000, 0x2000, K4, IommuProt.Read)); // leaf B: the next 2 MiB
        IoTable level1 = t.Root.Child[0]!.Child[1]!;
        IoTable a = level1.Child[0]!, b = level1.Child[1]!;
        level1.Child[0] = b;
        Assert.False(t.TryMapPage(0x4000_1000, 0x3000, IommuProt.Read)); // would land on B's 0x4020_1000
        Assert.False(t.TryUnmapPage(0x4000_0000));                       // would clear B's 0x4020_0000
        level1.Child[0] = a;
        Assert.False(t.TryIovaToPhys(0x4020_1000, out _, out _));
        Assert.True(t.TryIovaToPhys(0x4020_0000, out ulong pb, out _));
        Assert.Equal(0x2000UL, pb);
        Assert.True(t.TryIovaToPhys(0x4000_0000, out ulong pa, out _));
        Assert.Equal(0x1000UL, pa);
        Assert.Null(t.Validate());
        // And on the true leaf both work.
        Assert.True(t.TryMapPage(0x4000_1000, 0x3000, IommuProt.Read));
        Assert.True(t.TryUnmapPage(0x4000_1000));
    }

    [Fact]
    public void TheLeafHintIsProvedUnderItsLockAndADeadOrMovedLeafIsNeverWrittenThroughIt()
    {
        var t = new RadixIoPageTable<X86Level4Format>(IoPageTables.DefaultMaxTablePages);
        Assert.Equal(Errno.Ok, t.Map(0x4000_0000, 0x1000, K4, IommuProt.Read));  // general path: creates the tables
        Assert.Equal(Errno.Ok, t.Map(0x4000_1000, 0x2000, K4, IommuProt.Read));  // descends, leaves the hint
        IoTable leaf = t.LeafHint!;
        Assert.Equal(0x4000_0000UL, leaf.Key);
        Assert.Equal(Errno.Ok, t.Map(0x4000_2000, 0x3000, K4, IommuProt.Read));  // through the hint
        Assert.Equal(Errno.EEXIST, t.Map(0x4000_2000, 0x4000, K4, IommuProt.Read)); // slot taken: same answer
        foreach (ulong a in (ulong[])[0x4000_0000, 0x4000_1000, 0x4000_2000]) Assert.Equal(Errno.Ok, t.Unmap(a, K4));
        // The hinted leaf emptied: dead, unlinked and pooled, its key unchanged, and the hint cleared. Put it back, as
        // a clear lost to a race with a new hint would leave it: a map there must not land in it.
        Assert.True(leaf.Dead);
        Assert.Null(t.LeafHint);
        t.LeafHint = leaf;
        Assert.Equal(Errno.Ok, t.Map(0x4000_3000, 0x5000, K4, IommuProt.Read));
        Assert.True(t.TryIovaToPhys(0x4000_3000, out ulong pa, out _));
        Assert.Equal(0x5000UL, pa);
        Assert.Null(t.Validate());
        // Reused for another 2 MiB while still hinted: a map of the hinted range does not use it.
        IoTable second = t.LeafHint ?? leaf;
        Assert.Equal(Errno.Ok, t.Unmap(0x4000_3000, K4));
        t.LeafHint = second;
        Assert.Equal(Errno.Ok, t.Map(0x4060_0000, 0x6000, K4, IommuProt.Read));
        Assert.Equal(Errno.Ok, t.Map(0x4000_4000, 0x7000, K4, IommuProt.Read));
        Assert.True(t.TryIovaToPhys(0x4000_4000, out pa, out _));
        Assert.Equal(0x7000UL, pa);
        Assert.False(t.TryIovaToPhys(0x4060_4000, out _, out _));
        Assert.Equal(Errno.ENOENT, t.Unmap(0x4000_5000, K4));
        Assert.Null(t.Validate());
    }

    [Fact]
    public void AHintedLeafBeingPublishedAgainTakesNoMapThatWalkersCannotSee()
    {
        // The hinted leaf is emptied and pooled, then taken from the pool for the same 2 MiB by a map that creates the
        // tables again. While that map publishes it (parent locked), a single-page map into the range may fail over
        // to the general path, but if it succeeds, a walk must find it: a table is alive only once it is linked.
        var t = new RadixIoPageTable<X86Level4Format>(IoPageTables.DefaultMaxTablePages);
        Assert.Equal(Errno.Ok, t.Map(0x4000_0000, 0x1000, K4, IommuProt.Read));
        Assert.Equal(Errno.Ok, t.Map(0x4000_1000, 0x2000, K4, IommuProt.Read));
        IoTable leaf = t.LeafHint!;
        Assert.Equal(Errno.Ok, t.Unmap(0x4000_0000, K4));
        Assert.Equal(Errno.Ok, t.Unmap(0x4000_1000, K4));
        Assert.Equal(1, t.TablePageCount);
        t.LeafHint = leaf; // dead and pooled, still hinted: a clear lost to a race
        bool published = false, mapped = false, seen = false;
        t.BetweenLinkAndAlive = fresh =>
        {
            if (!ReferenceEquals(fresh, leaf)) return;
            published = true;
            mapped = t.TryMapPage(0x4000_2000, 0x3000, IommuProt.Read);
            seen = t.TryIovaToPhys(0x4000_2000, out _, out _);
        };
        Assert.Equal(Errno.Ok, t.MapWithoutFastPath(0x4000_0000, 0x1000, K4, IommuProt.Read)); // keeps the hint
        t.BetweenLinkAndAlive = null;
        Assert.True(published); // the pool gave the hinted page back for the same range
        Assert.Equal(mapped, seen);
        Assert.Equal(mapped ? Errno.EEXIST : Errno.Ok, t.Map(0x4000_2000, 0x3000, K4, IommuProt.Read));
        Assert.True(t.TryIovaToPhys(0x4000_2000, out ulong pa, out _));
        Assert.Equal(0x3000UL, pa);
        Assert.Null(t.Validate());
    }

    [Fact]
    public void TheFastPathRefusesATableWhosePteIsNotWrittenYet()
    {
        // A creator links the child before it writes the PTE (under the parent's lock). Until the PTE is there,
        // walkers cannot see anything below, so a map through it must not succeed (it could return before a DMA
        // could use it). Set that up: clear the level-1 PTE of a present leaf and keep its child.
        var t = new RadixIoPageTable<X86Level4Format>(IoPageTables.DefaultMaxTablePages);
        Assert.Equal(Errno.Ok, t.Map(0x4000_0000, 0x1000, K4, IommuProt.Read));
        IoTable level1 = t.Root.Child[0]!.Child[1]!;
        ulong pte = level1.Pte[0];
        level1.Pte[0] = 0;
        Assert.False(t.TryMapPage(0x4000_1000, 0x3000, IommuProt.Read));
        Assert.False(t.TryUnmapPage(0x4000_0000));
        level1.Pte[0] = pte;
        Assert.True(t.TryMapPage(0x4000_1000, 0x3000, IommuProt.Read));
        Assert.Null(t.Validate());
    }

    private static void Check<T>(Func<T> fast, Func<T> general, Func<T, ulong, ulong, ulong, IommuProt, Errno> mapGeneral,
        Func<T, ulong, ulong, Errno> unmapGeneral) where T : IIoPageTable, IValidatable
    {
        Prop.ForAll<int[]>(ops =>
        {
            T a = fast(), b = general();
            for (int i = 0; i < ops.Length; i++)
            {
                // FsCheck's ints are small: spread them (the sequence still shrinks element by element).
                uint x = (uint)ops[i] * 0x9E3779B1u + (uint)i * 0x85EBCA77u;
                x = (x ^ (x >> 15)) * 0x2C1B3C6Du;
                x ^= x >> 12;
                uint kind = x % 16, arg = x / 16;
                // Few pages per region (48), so maps collide and unmaps find them; some starts near a region's end,
                // so ranges cross into the next leaf table.
                ulong region = arg % Regions, page = region * 512 + ((arg & 8) != 0 ? 500 + arg / 16 % 12 : arg / 16 % 48);
                ulong iova = page * K4;
                ulong phys = (ulong)(arg / 1024 % 64 + 1) << 21 | (page % 512 * K4);
                IommuProt prot = Prots[arg / 4 % 3];
                Errno ea, eb;
                if (kind < 6)
                {
                    ea = a.Map(iova, phys, K4, prot);
                    eb = mapGeneral(b, iova, phys, K4, prot);
                }
                else if (kind < 12)
                {
                    ea = a.Unmap(iova, K4);
                    eb = unmapGeneral(b, iova, K4);
                }
                else if (kind == 12 || kind == 13)
                {
                    ulong n = Math.Min(arg / 8 % 40 + 2, Pages - page);
                    ea = kind == 12 ? a.Map(iova, phys, n * K4, prot) : a.Unmap(iova, n * K4);
                    eb = kind == 12 ? mapGeneral(b, iova, phys, n * K4, prot) : unmapGeneral(b, iova, n * K4);
                }
                else
                {
                    ulong at = region * M2;
                    ea = kind == 14 ? a.Map(at, phys & ~(M2 - 1), M2, prot) : a.Unmap(at, M2);
                    eb = kind == 14 ? mapGeneral(b, at, phys & ~(M2 - 1), M2, prot) : unmapGeneral(b, at, M2);
                }
                if (ea != eb) return false;
            }
            if (a.Validate() is not null || b.Validate() is not null || a.TablePageCount != b.TablePageCount) return false;
            for (ulong p = 0; p < Regions * 512; p++)
            {
                bool ha = a.TryIovaToPhys(p * K4, out ulong pa, out IommuProt ra, out ulong sa);
                bool hb = b.TryIovaToPhys(p * K4, out ulong pb, out IommuProt rb, out ulong sb);
                if (ha != hb || pa != pb || ra != rb || sa != sb) return false;
            }
            return true;
        }).QuickCheckThrowOnFailure();
    }
}
