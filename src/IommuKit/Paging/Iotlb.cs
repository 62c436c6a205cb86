using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace IommuKit.Paging;

/// <summary>
/// The IOTLB of one IOMMU instance: a direct-mapped cache of translations tagged by domain id and page.
/// </summary>
/// <remarks>
/// <para>Layout: 4 KiB translations live in a direct-mapped array of <see cref="Sets"/> entries indexed by the page
/// number (mixed with the domain id); translations of large pages live in a second, smaller array in 2 MiB slices
/// (a 1 GiB page is cached one 2 MiB slice at a time). A lookup probes the 4 KiB array, then the large array. A third
/// array (sets/16 entries) caches 64 KiB blocks mapped contiguously, for range translations only (one probe per
/// block, like ARM's contiguous hint); range invalidations clear it like the others.</para>
/// <para>Thread safety: lookups never lock or write shared state except the striped hit/miss counters. Each entry is
/// a seqlock (odd sequence = being written); a reader that sees the sequence change retries as a miss, so a torn
/// entry is never returned. Writers (fills, invalidations) take the entry's sequence with one CAS. A fill that loses
/// the race for an entry is dropped (a cache may always forget); invalidations wait.</para>
/// <para>Domain ids are 0..<see cref="MaxDomainId"/> (a VT-d DID, an SMMU ASID/VMID). The set an entry lives in
/// depends on the page and the <i>stable</i> domain id only, so a lookup computes its entry's address without waiting
/// for any other load; the entry is matched against the domain's current <i>tag</i> (<see cref="TagOf"/>, initially
/// the domain id), loaded in parallel.</para>
/// <para><see cref="InvalidateAll"/> and <see cref="InvalidateDomain"/> are O(1): the first bumps an epoch every entry
/// is tagged with, the second gives the domain a fresh tag (the way hardware retires an ASID/DID), which makes every
/// entry it had unreachable at once; dead entries are simply overwritten later. (Clearing the matching entries of a
/// software IOTLB costs a pass over every set, 3-4 µs for 4096 sets, which a flush queue would pay every 255 unmaps.)
/// Range invalidations clear matching entries.</para>
/// <para>Fill vs. invalidation race (a walk that read a PTE just before an unmap cleared it must not leave a stale
/// entry behind once the invalidation returns): callers read <see cref="Generation"/> before the table walk and pass
/// it to <see cref="Fill"/>; a fill whose generation is out of date is dropped. This mirrors hardware, where an
/// invalidation completes only after in-flight walks are done.</para>
/// </remarks>
public sealed class Iotlb
{
    [StructLayout(LayoutKind.Sequential, Size = EntryBytes)]
    private struct Entry
    {
        public uint Seq;     // even = stable, odd = being written
        public uint Pad;
        public ulong Owner;  // (epoch << 32) | (uint)tag: one compare checks both; epoch must equal _epochHigh's
        public ulong Vpn;    // iova >> 12 (small) or iova >> 21 (large)
        public ulong Data;   // page-aligned phys | (prot << 1) | valid bit 0
    }

    private const int SmallShift = 12;
    private const int LargeShift = 21;
    private const int BlockShift = 16;
    private const int KindSmall = 0, KindLarge = 1, KindBlock = 2;
    private const ulong Valid = 1;
    private const int ProtShift = 1;
    private const ulong ProtMask = 0x3F;
    // The Vpn of an empty or invalidated entry: iova >> 12 never has its top bits set, so no lookup matches it.
    private const ulong InvalidVpn = ulong.MaxValue;

    private const int EntryBytes = 32;

    // Entries live in pinned byte arrays, starting at a 64-byte boundary, so no 32-byte entry straddles two cache
    // lines (with a plain Entry[] that depends on where the GC put the array: hits measured 3 or 7.6 ns run to run).
    // The arrays are kept referenced here; entries are addressed through the base address of their first entry
    // (_smallBase etc.), which stays valid because pinned-heap arrays never move.
    // The small array's block also holds, below its first entry, what a 4 KiB lookup reads besides the entry: the
    // epoch, the domain tags and the hit counter stripes, at fixed negative offsets from _smallBase (SmallPrefix), so
    // a caller that has the base reaches each with one load and no other base (see ProbeSmallAt).
    private readonly byte[] _smallMem;
    private readonly nint _smallBase;
    private readonly byte[] _largeMem;
    private readonly nint _largeBase;
    // 64 KiB blocks whose 16 pages are mapped physically contiguous with one permission (the "contiguous hint" of
    // ARM and the PTE coalescing of AMD), cached for range translations: one probe per 64 KiB.
    private readonly byte[] _blockMem;
    private readonly nint _blockBase;
    private readonly int _blockSets;
    private readonly int _blockMask;
    private readonly int _smallSets;
    private readonly int _largeSets;
    private readonly int _smallMask;
    private readonly int _largeMask;
    private long _generation;
    // Current tag of each domain id (see remarks) lives at _smallBase + TagsOffset; _nextTag hands out fresh tags above
    // every domain id. The global epoch (kept shifted into the high half, epoch << 32, so an owner is one OR with the
    // tag) lives at _smallBase + EpochOffset.
    private int _nextTag = MaxDomainId;

    // Layout of the prefix below the small array's first entry (byte offsets from _smallBase).
    private const int StripeBytes = 128; // the adjacent-line prefetcher pairs 64-byte lines
    private const int HitStripes = 32;
    private const int HitStripesOffset = -HitStripes * StripeBytes;
    // One tag per domain id plus the never-matching tag of NoDomain, rounded up to whole stripes.
    private const int TagsBytes = ((MaxDomainId + 2) * sizeof(int) + StripeBytes - 1) / StripeBytes * StripeBytes;
    private const int TagsOffset = HitStripesOffset - TagsBytes;
    private const int EpochOffset = TagsOffset - StripeBytes;
    private const int SmallPrefix = -EpochOffset;

    /// <summary>Largest domain id (ids are 16-bit, like a VT-d DID or an SMMU ASID/VMID).</summary>
    public const int MaxDomainId = 0xffff;

    /// <summary>A pseudo domain id for <see cref="HitAt"/> that never hits: its tag (<see cref="NoDomainTag"/>) is
    /// one no fill ever writes. A unit's requester with no translated context looks its hits up under it, so the hit
    /// path needs no test of the context's kind.</summary>
    internal const int NoDomain = MaxDomainId + 1;

    // Real tags are 0..int.MaxValue (InvalidateDomain restarts them before they wrap), so an owner with this tag in
    // its low half is never written by a fill.
    private const int NoDomainTag = -1;
    // Hits are counted in stripes of the small array's prefix (CountHitAt by page number, HitAt by set), misses here; both without
    // atomics, and only by whoever knows the lookup's outcome (ProbeSmall/ProbeLarge count nothing).
    private readonly StripedCounter _misses = StripedCounter.Create();
    // The 4 KiB pages (page numbers) that are never cached: IommuHardware's MSI window, so that a 4 KiB hit is never
    // an interrupt request and its hit path need not test for one. Empty (first > last) unless set.
    private ulong _uncachedFirstVpn = 1, _uncachedLastVpn;

    /// <summary>An IOTLB with <paramref name="sets"/> entries for 4 KiB pages (a power of two, 16..1,048,576) and
    /// sets/8 (at least 16) entries for 2 MiB slices of large pages.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="sets"/> is not a power of two in range.</exception>
    public Iotlb(int sets = 4096)
    {
        if (sets < 16 || sets > (1 << 20) || !BitOperations.IsPow2(sets))
            throw new ArgumentOutOfRangeException(nameof(sets), sets, "IOTLB sets must be a power of two in 16..1048576");
        _smallSets = sets;
        _largeSets = Math.Max(16, sets / 8);
        (_smallMem, _smallBase) = AllocateEntries(_smallSets, SmallPrefix);
        (_largeMem, _largeBase) = AllocateEntries(_largeSets, 0);
        _blockSets = Math.Max(16, sets / 16);
        (_blockMem, _blockBase) = AllocateEntries(_blockSets, 0);
        _blockMask = _blockSets - 1;
        _smallMask = _smallSets - 1;
        _largeMask = _largeSets - 1;
        for (int i = 0; i <= MaxDomainId; i++)
            TagRef(i) = i;
        TagRef(NoDomain) = NoDomainTag;
        EpochHigh = 1UL << 32;
    }

    /// <summary>Never cache a 4 KiB translation of [<paramref name="start"/>, <paramref name="start"/> +
    /// <paramref name="size"/>), nor a 64 KiB block overlapping it (page aligned; fills there are dropped, as a cache
    /// may always decline to keep one).
    /// Set once, before any fill, by the unit that owns the IOTLB.</summary>
    internal void SetUncachedWindow(ulong start, ulong size)
    {
        _uncachedFirstVpn = start >> SmallShift;
        _uncachedLastVpn = (start + size - 1) >> SmallShift;
    }

    /// <summary>The small array's base: with <see cref="SmallMask"/>, what <see cref="ProbeSmallAt"/> and
    /// <see cref="CountHitAt"/> need (a caller may keep both, they never change).</summary>
    internal nint SmallBase => _smallBase;

    /// <summary>Index mask of the small array (sets - 1).</summary>
    internal int SmallMask => _smallMask;

    // SAFETY (the two accessors below): the prefix is inside the pinned _smallMem (AllocateEntries), which this
    // object keeps referenced; a domain id is 0..MaxDomainId or NoDomain.
    private unsafe ref ulong EpochHigh => ref *(ulong*)(_smallBase + EpochOffset);

    private unsafe ref int TagRef(int domainId) => ref *(int*)(_smallBase + TagsOffset + (nint)(uint)domainId * sizeof(int));

    /// <summary>The tag the IOTLB currently files <paramref name="domainId"/>'s entries under (the domain id until its
    /// first <see cref="InvalidateDomain"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="domainId"/> is outside 0..<see cref="MaxDomainId"/>.</exception>
    public int TagOf(int domainId)
    {
        CheckDomainId(domainId);
        return Volatile.Read(ref TagRef(domainId));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CheckDomainId(int domainId)
    {
        if ((uint)domainId > MaxDomainId) ThrowDomainId(domainId);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowDomainId(int domainId) =>
        throw new ArgumentOutOfRangeException(nameof(domainId), domainId, $"IOTLB domain ids are 0..{MaxDomainId}");

    /// <summary>The current tag of a domain id already checked to be in range (no bounds check).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int TagUnchecked(int domainId) => Volatile.Read(ref TagRef(domainId));

    /// <summary>Entries for 4 KiB translations.</summary>
    public int Sets => _smallSets;

    private static unsafe (byte[] Mem, nint Base) AllocateEntries(int count, int prefix)
    {
        var mem = GC.AllocateArray<byte>(prefix + count * EntryBytes + 64, pinned: true);
        // SAFETY: the array is on the pinned object heap, so its address never changes, and the Iotlb keeps it
        // referenced for as long as it uses the address. The base is the first 64-byte boundary at least prefix bytes
        // in; every index later added to it is masked to below count (EntryAt's callers), inside the
        // count * 32 + 64 bytes after the prefix. The prefix (the small array's epoch, tags and hit stripes, at offsets
        // that are multiples of 128 below the base) lies between the array's start and the base.
        nint addr = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(mem)) + prefix;
        nint bas = addr + ((64 - (addr & 63)) & 63);
        for (nuint i = 0; i < (nuint)count; i++)
            EntryAt(bas, i).Vpn = InvalidVpn;
        return (mem, bas);
    }

    /// <summary>Entry <paramref name="i"/> (below the array's entry count) of the array at <paramref name="bas"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe ref Entry EntryAt(nint bas, nuint i) =>
        // SAFETY: see AllocateEntries (pinned, kept alive, i below the entry count).
        ref Unsafe.AsRef<Entry>((void*)(bas + (nint)(i * EntryBytes)));

    /// <summary>Lookups that hit. A striped statistic without atomics (an atomic increment would double the cost of a
    /// hit): exact when single-threaded, may be off slightly when threads bump the same stripe at once.</summary>
    public unsafe long Hits
    {
        get
        {
            long s = 0;
            for (int i = 0; i < HitStripes; i++)
                s += Volatile.Read(ref *(long*)(_smallBase + HitStripesOffset + i * StripeBytes)); // SAFETY: the prefix
            return s;
        }
    }

    /// <summary>Lookups that missed (same counting caveat as <see cref="Hits"/>).</summary>
    public long Misses => _misses.Sum();

    /// <summary>Invalidation calls of any kind (range, domain, all).</summary>
    public long Invalidations => Volatile.Read(ref _generation);

    /// <summary>Invalidation generation: read it before a table walk and pass it to <see cref="Fill"/> so a fill that
    /// raced an invalidation is dropped.</summary>
    public long Generation => Volatile.Read(ref _generation);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong OwnerOf(int tag, ulong epochHigh) => epochHigh | (uint)tag;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static nuint SetOf(ulong vpn, int domainId, int mask) =>
        (nuint)((vpn ^ ((ulong)(uint)domainId * 0x9E37UL)) & (ulong)(uint)mask);

    /// <summary>The bit of an entry's data word (<see cref="ProbeSmall"/>) that grants <paramref name="prot"/>
    /// (Read or Write).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong DataBit(IommuProt prot) => (ulong)prot << ProtShift;

    /// <summary>The physical address of <paramref name="iova"/> in an entry's data word of page size 2^<paramref name="shift"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong PhysOf(ulong data, ulong iova, int shift)
    {
        ulong offsetMask = (1UL << shift) - 1;
        return (data & ~offsetMask) | (iova & offsetMask);
    }

    /// <summary>The permissions in an entry's data word.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static IommuProt ProtOf(ulong data) => (IommuProt)((data >> ProtShift) & ProtMask);

    /// <summary>
    /// Looks <paramref name="iova"/> up for <paramref name="domainId"/>. On a hit returns the translated physical
    /// address (page offset included) and the cached permissions. Never blocks. Counted in <see cref="Hits"/> or
    /// <see cref="Misses"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="domainId"/> is outside 0..<see cref="MaxDomainId"/>.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryLookup(int domainId, ulong iova, out ulong phys, out IommuProt prot)
    {
        CheckDomainId(domainId);
        return TryLookupChecked(domainId, iova, out phys, out prot);
    }

    /// <summary><see cref="TryLookup"/> for a domain id the caller has checked (an <c>IommuContext</c> checks its id
    /// when it is made).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryLookupChecked(int domainId, ulong iova, out ulong phys, out IommuProt prot)
    {
        ulong data = ProbeSmall(domainId, iova);
        int shift = SmallShift;
        if (data == 0)
        {
            data = ProbeLarge(domainId, iova);
            shift = LargeShift;
        }
        if (data == 0)
        {
            CountMiss(iova);
            phys = 0;
            prot = IommuProt.None;
            return false;
        }
        CountHitAt(_smallBase, iova);
        phys = PhysOf(data, iova, shift);
        prot = ProtOf(data);
        return true;
    }

    /// <summary>
    /// The data word (page-aligned physical address | permissions &lt;&lt; 1 | 1) of the 4 KiB entry for
    /// <paramref name="iova"/> in <paramref name="domainId"/> (checked by the caller), or 0 when there is none, and the
    /// caller must go on with <see cref="ProbeLarge"/>. Counts nothing: the caller counts the lookup's outcome
    /// (<see cref="CountHitAt"/>, <see cref="CountMiss"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ulong ProbeSmall(int domainId, ulong iova) => ProbeSmallAt(_smallBase, _smallMask, domainId, iova);

    /// <summary><see cref="ProbeSmall"/> for a caller that keeps <see cref="SmallBase"/> and <see cref="SmallMask"/>
    /// (the hit path of <c>IommuHardware.Translate</c>: no load of the Iotlb object, and the tag, the epoch and the
    /// entry are each one load from the base).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe ulong ProbeSmallAt(nint smallBase, int smallMask, int domainId, ulong iova)
    {
        // The set comes from the stable id; the tag and the epoch load in parallel with the entry.
        // SAFETY: smallBase is a SmallBase (prefix below it, see AllocateEntries); domainId is 0..MaxDomainId.
        ulong vpn = iova >> SmallShift;
        nuint set = SetOf(vpn, domainId, smallMask);
        int tag = Volatile.Read(ref *(int*)(smallBase + TagsOffset + (nint)(uint)domainId * sizeof(int)));
        ulong owner = OwnerOf(tag, Volatile.Read(ref *(ulong*)(smallBase + EpochOffset)));
        return Probe(ref EntryAt(smallBase, set), vpn, owner);
    }

    /// <summary>The hit of <c>IommuHardware.Translate</c>: whether the 4 KiB entry for <paramref name="iova"/> in
    /// <paramref name="domainId"/> (0..MaxDomainId, or <see cref="NoDomain"/>, which never hits) is cached with a
    /// permission bit of <paramref name="need"/> (<see cref="DataBit"/>), with its data word; counted as a hit when it
    /// is. One chain of tests that all branch to the caller's slow path, so nothing is merged on the hit path.
    /// <paramref name="smallBase"/>/<paramref name="smallMask"/> as for <see cref="ProbeSmallAt"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe bool HitAt(nint smallBase, int smallMask, nuint domainId, ulong iova, ulong need, out ulong data)
    {
        // SAFETY: as in ProbeSmallAt (NoDomain's tag is in the prefix too). The domain id comes as a nuint so that it
        // is not zero-extended twice.
        ulong vpn = iova >> SmallShift;
        nuint offset = (nuint)((vpn ^ (domainId * 0x9E37UL)) & (ulong)(uint)smallMask) * EntryBytes; // SetOf
        int tag = Volatile.Read(ref *(int*)(smallBase + TagsOffset + (nint)domainId * sizeof(int)));
        ulong owner = OwnerOf(tag, Volatile.Read(ref *(ulong*)(smallBase + EpochOffset)));
        ref Entry e = ref Unsafe.AsRef<Entry>((void*)(smallBase + (nint)offset));
        // The hit stripe from the entry's offset (sets 4k..4k+3 share one), so no other value is computed for it;
        // its address is taken now so that the base and the offset need not stay in registers.
        long* stripe = (long*)(smallBase + HitStripesOffset + (nint)(offset & ((HitStripes - 1) * StripeBytes)));
        // The seqlock read of Probe, with the permission folded in. "Even and unchanged" is one compare: the sequence
        // only grows, so an odd s1 (a write in progress) never equals the later read once its low bit is cleared.
        uint s1 = Volatile.Read(ref e.Seq);
        data = Volatile.Read(ref e.Data);
        if ((data & need) == 0 || Volatile.Read(ref e.Vpn) != vpn
            || Volatile.Read(ref e.Owner) != owner || Volatile.Read(ref e.Seq) != (s1 & ~1u))
            return false;
        (*stripe)++;
        return true;
    }

    /// <summary>Counts one lookup of <paramref name="iova"/> that hit, in the stripe of its page, without atomics (see
    /// <see cref="Hits"/>). <paramref name="smallBase"/> is <see cref="SmallBase"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void CountHitAt(nint smallBase, ulong iova) =>
        // SAFETY: the stripes are in the prefix below smallBase; the offset is below HitStripes * StripeBytes.
        (*(long*)(smallBase + HitStripesOffset + (nint)((iova >> (SmallShift - 7)) & ((HitStripes - 1) * StripeBytes))))++;

    /// <summary>Counts one lookup of <paramref name="iova"/> that missed both arrays.</summary>
    internal void CountMiss(ulong iova) => _misses.Increment((nuint)(iova >> SmallShift));

    /// <summary>The second half of a lookup after <see cref="ProbeSmall"/> found nothing: the 2 MiB slice entry's data
    /// word, or 0 (counts nothing, like ProbeSmall).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal ulong ProbeLarge(int domainId, ulong iova)
    {
        ulong vpn = iova >> LargeShift;
        nuint set = SetOf(vpn, domainId, _largeMask);
        return Probe(ref EntryAt(_largeBase, set), vpn, OwnerOf(TagUnchecked(domainId), Volatile.Read(ref EpochHigh)));
    }

    /// <summary>Size of a block entry (<see cref="ProbeBlock"/>): 64 KiB.</summary>
    internal const ulong BlockSize = 1UL << BlockShift;

    /// <summary>Shift of a block entry's size (<see cref="PhysOf"/>).</summary>
    internal const int BlockSizeShift = BlockShift;

    /// <summary>The data word of the cached 64 KiB block containing <paramref name="iova"/> (filled by
    /// <see cref="FillBlock"/> only when all 16 pages are contiguous with one permission), or 0: one probe for the whole
    /// block. Not counted in <see cref="Hits"/>/<see cref="Misses"/> (the page lookups that follow a miss are).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ulong ProbeBlock(int domainId, ulong iova)
    {
        ulong vpn = iova >> BlockShift;
        nuint set = SetOf(vpn, domainId, _blockMask);
        return Probe(ref EntryAt(_blockBase, set), vpn, OwnerOf(TagUnchecked(domainId), Volatile.Read(ref EpochHigh)));
    }

    /// <summary><see cref="ProbeBlock"/> for a caller that keeps the bases and the mask (<see cref="SmallBase"/>,
    /// <see cref="BlockBase"/>, <see cref="BlockMask"/>): no load of the Iotlb object.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe ulong ProbeBlockAt(nint smallBase, nint blockBase, int blockMask, int domainId, ulong iova)
    {
        // SAFETY: as in ProbeSmallAt (the tag and the epoch are in the small array's prefix); domainId may be NoDomain.
        ulong vpn = iova >> BlockShift;
        nuint set = SetOf(vpn, domainId, blockMask);
        int tag = Volatile.Read(ref *(int*)(smallBase + TagsOffset + (nint)(uint)domainId * sizeof(int)));
        ulong owner = OwnerOf(tag, Volatile.Read(ref *(ulong*)(smallBase + EpochOffset)));
        return Probe(ref EntryAt(blockBase, set), vpn, owner);
    }

    /// <summary>The block array's base (fixed for the IOTLB's life).</summary>
    internal nint BlockBase => _blockBase;

    /// <summary>Index mask of the block array.</summary>
    internal int BlockMask => _blockMask;

    /// <summary>Caches a whole 64 KiB block that a walk found contiguous (<paramref name="phys"/> translates
    /// <paramref name="iova"/>); dropped like <see cref="Fill"/> when an invalidation ran since
    /// <paramref name="generation"/> was read.</summary>
    internal void FillBlock(int domainId, ulong iova, ulong phys, IommuProt prot, long generation)
    {
        PendingFill f = BeginFillOf(KindBlock, domainId, iova, phys, prot, generation);
        if (f.Claimed) EndFill(f);
    }

    /// <summary>The seqlock read of one entry: its data word when it is stable (even sequence, unchanged across the
    /// reads) and tagged (<paramref name="vpn"/>, <paramref name="owner"/>), else 0. An invalidated entry's Vpn is
    /// <see cref="InvalidVpn"/>, which no lookup asks for, so the data word needs no check of its own.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Probe(ref Entry e, ulong vpn, ulong owner)
    {
        uint s1 = Volatile.Read(ref e.Seq);
        ulong data = Volatile.Read(ref e.Data);
        // Even and unchanged in one compare: the sequence only grows, so an odd s1 (a write in progress) cleared of its
        // low bit never equals the later read.
        if (Volatile.Read(ref e.Vpn) == vpn && Volatile.Read(ref e.Owner) == owner && Volatile.Read(ref e.Seq) == (s1 & ~1u))
            return data;
        return 0;
    }

    /// <summary>
    /// Caches a translation found by a table walk.
    /// </summary>
    /// <param name="iova">An address inside the page (bytes).</param>
    /// <param name="pageSize">Size in bytes of the page that maps it: 4 KiB, or a larger power of two (2 MiB, 1 GiB).</param>
    /// <param name="phys">The physical address <paramref name="iova"/> translates to.</param>
    /// <param name="generation"><see cref="Generation"/> read before the walk, or -1 to skip the race check.</param>
    /// <exception cref="ArgumentException"><paramref name="pageSize"/> is not a power of two of at least 4 KiB.</exception>
    public void Fill(int domainId, ulong iova, ulong pageSize, ulong phys, IommuProt prot, long generation = -1)
    {
        PendingFill f = BeginFill(domainId, iova, pageSize, phys, prot, generation);
        if (f.Claimed) EndFill(f);
    }

    /// <summary>The state of a fill between claiming its entry and publishing it (<see cref="BeginFill"/>).</summary>
    internal readonly record struct PendingFill(bool Claimed, int Kind, nuint Set, uint Seq, ulong Vpn, ulong Owner, ulong Data);

    /// <summary>First half of <see cref="Fill"/>: claims the entry (odd sequence) and checks the generation. Unless
    /// the result is <see cref="PendingFill.Claimed"/>, the fill was dropped; otherwise <see cref="EndFill"/> must
    /// follow. Split only so tests can hold a fill in flight while an invalidation runs.</summary>
    internal PendingFill BeginFill(int domainId, ulong iova, ulong pageSize, ulong phys, IommuProt prot, long generation)
    {
        if (pageSize < (1UL << SmallShift) || !BitOperations.IsPow2(pageSize))
            throw new ArgumentException($"IOTLB fill with page size 0x{pageSize:x}: not a power of two >= 4 KiB", nameof(pageSize));
        return BeginFillOf(pageSize >= (1UL << LargeShift) ? KindLarge : KindSmall, domainId, iova, phys, prot, generation);
    }

    private PendingFill BeginFillOf(int kind, int domainId, ulong iova, ulong phys, IommuProt prot, long generation)
    {
        CheckDomainId(domainId);
        int shift = kind switch { KindLarge => LargeShift, KindBlock => BlockShift, _ => SmallShift };
        ulong vpn = iova >> shift;
        if (kind == KindSmall && vpn >= _uncachedFirstVpn && vpn <= _uncachedLastVpn)
            return default; // never cached (SetUncachedWindow)
        if (kind == KindBlock && (vpn << (BlockShift - SmallShift)) <= _uncachedLastVpn
            && (vpn << (BlockShift - SmallShift)) + (1UL << (BlockShift - SmallShift)) - 1 >= _uncachedFirstVpn)
            return default; // nor a block overlapping it, so a block hit is never an interrupt request either
        ulong pageMask = (1UL << shift) - 1;
        // The slice of the page that contains iova: translate the slice base.
        ulong data = ((phys - (iova & pageMask)) & ~pageMask) | (((ulong)prot & ProtMask) << ProtShift) | Valid;
        nuint set = SetOf(vpn, domainId, kind switch { KindLarge => _largeMask, KindBlock => _blockMask, _ => _smallMask });
        ref Entry e = ref EntryOf(kind, set);

        uint s = Volatile.Read(ref e.Seq);
        if ((s & 1) != 0 || Interlocked.CompareExchange(ref e.Seq, s + 1, s) != s) return default; // busy: drop the fill
        // Epoch and tag before generation: InvalidateAll and InvalidateDomain bump the generation, then the epoch or
        // the tag, so if the generation is still ours the epoch and tag we read predate any invalidation that follows
        // (the entry then dies with them), and a new tag or epoch read here implies the generation moved.
        ulong epoch = Volatile.Read(ref EpochHigh);
        int tag = TagUnchecked(domainId);
        if (generation >= 0 && Volatile.Read(ref _generation) != generation)
        {
            Volatile.Write(ref e.Seq, s + 2);
            return default;
        }
        return new PendingFill(true, kind, set, s, vpn, OwnerOf(tag, epoch), data);
    }

    /// <summary>Second half of <see cref="Fill"/>: writes the claimed entry and releases it.</summary>
    internal void EndFill(in PendingFill f)
    {
        ref Entry e = ref EntryOf(f.Kind, f.Set);
        e.Vpn = f.Vpn;
        e.Owner = f.Owner;
        e.Data = f.Data;
        Volatile.Write(ref e.Seq, f.Seq + 2);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref Entry EntryOf(int kind, nuint set)
    {
        if (kind == KindLarge) return ref EntryAt(_largeBase, set);
        if (kind == KindBlock) return ref EntryAt(_blockBase, set);
        return ref EntryAt(_smallBase, set);
    }

    /// <summary>Drops every cached translation of <paramref name="domainId"/> that overlaps [iova, iova+size) (bytes;
    /// a size that runs past the end of the address space is clipped). Like a VT-d page-selective-within-domain
    /// invalidation.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="domainId"/> is outside 0..<see cref="MaxDomainId"/>.</exception>
    public void InvalidateRange(int domainId, ulong iova, ulong size)
    {
        CheckDomainId(domainId);
        Interlocked.Increment(ref _generation);
        if (size == 0) return;
        ulong last = iova + size - 1;
        if (last < iova) last = ulong.MaxValue; // overflow: clip to the end of the space
        // Entries of the current tag only: older tags are already unreachable. A domain flush racing this one leaves
        // nothing behind either way (its new tag has no entries older than it).
        int tag = TagUnchecked(domainId);
        if ((iova >> SmallShift) == (last >> SmallShift))
        {
            // One page (a strict unmap of a 4 KiB buffer): the one entry it can have in each array, without the loops.
            ulong v = iova >> SmallShift, lv = iova >> LargeShift, bv = iova >> BlockShift;
            ClearIf(ref EntryAt(_smallBase, SetOf(v, domainId, _smallMask)), tag, v, v);
            ClearIf(ref EntryAt(_largeBase, SetOf(lv, domainId, _largeMask)), tag, lv, lv);
            ClearIf(ref EntryAt(_blockBase, SetOf(bv, domainId, _blockMask)), tag, bv, bv);
            return;
        }
        InvalidateRangeIn(_smallBase, _smallSets, SmallShift, domainId, tag, iova, last);
        InvalidateRangeIn(_largeBase, _largeSets, LargeShift, domainId, tag, iova, last);
        InvalidateRangeIn(_blockBase, _blockSets, BlockShift, domainId, tag, iova, last);
    }

    private static void InvalidateRangeIn(nint bas, int count, int shift, int domainId, int tag, ulong iova, ulong last)
    {
        ulong first = iova >> shift, lastVpn = last >> shift;
        if (lastVpn - first < (ulong)count)
        {
            for (ulong v = first; ; v++)
            {
                ClearIf(ref EntryAt(bas, SetOf(v, domainId, count - 1)), tag, v, v);
                if (v == lastVpn) break;
            }
        }
        else
        {
            for (nuint i = 0; i < (nuint)count; i++) ClearIf(ref EntryAt(bas, i), tag, first, lastVpn);
        }
    }

    /// <summary>Drops every cached translation of <paramref name="domainId"/> (domain-selective invalidation), in O(1)
    /// by giving the domain a fresh tag (see remarks).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="domainId"/> is outside 0..<see cref="MaxDomainId"/>.</exception>
    public void InvalidateDomain(int domainId)
    {
        CheckDomainId(domainId);
        // Generation first, then the tag (see BeginFill).
        Interlocked.Increment(ref _generation);
        int tag = Interlocked.Increment(ref _nextTag);
        if (tag <= MaxDomainId)
        {
            // 2^31 domain flushes wrapped the tag counter: old tags could come back, so clear the IOTLB for real
            // and restart above the domain ids.
            InvalidateAll();
            Interlocked.CompareExchange(ref _nextTag, MaxDomainId + 1, tag);
            tag = Interlocked.Increment(ref _nextTag);
        }
        Volatile.Write(ref TagRef(domainId), tag); // the same pinned int TagUnchecked reads
    }

    /// <summary>Drops every cached translation (global invalidation). O(1): bumps the epoch.</summary>
    public void InvalidateAll()
    {
        Interlocked.Increment(ref _generation);
        ulong next = Interlocked.Add(ref EpochHigh, 1UL << 32);
        if (next == 0)
        {
            // Epoch wrapped after 2^32 global flushes: an old entry could match again, so clear for real.
            for (nuint i = 0; i < (nuint)_smallSets; i++)
                ClearIf(ref EntryAt(_smallBase, i), int.MinValue, 0, ulong.MaxValue, any: true);
            for (nuint i = 0; i < (nuint)_largeSets; i++)
                ClearIf(ref EntryAt(_largeBase, i), int.MinValue, 0, ulong.MaxValue, any: true);
            for (nuint i = 0; i < (nuint)_blockSets; i++)
                ClearIf(ref EntryAt(_blockBase, i), int.MinValue, 0, ulong.MaxValue, any: true);
            Interlocked.Add(ref EpochHigh, 1UL << 32);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ClearIf(ref Entry e, int tag, ulong firstVpn, ulong lastVpn, bool any = false)
    {
        // Cheap unlocked pre-check: stable entries that cannot match are left alone. An entry being written (odd
        // sequence) is never skipped: its fill may have passed its generation check just before this invalidation
        // bumped the generation, and would publish a stale translation after we returned. A fill that claims the
        // entry after this read sees the new generation (both sides use full fences) and drops itself.
        if ((Volatile.Read(ref e.Seq) & 1) == 0)
        {
            if ((Volatile.Read(ref e.Data) & Valid) == 0) return;
            if (!any && (int)(uint)Volatile.Read(ref e.Owner) != tag) return;
        }
        ClearIfSlow(ref e, tag, firstVpn, lastVpn, any);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ClearIfSlow(ref Entry e, int tag, ulong firstVpn, ulong lastVpn, bool any)
    {
        // The entry may match, or is being written: take its sequence, then check again.
        var spin = new SpinWait();
        while (true)
        {
            uint s = Volatile.Read(ref e.Seq);
            if ((s & 1) == 0 && Interlocked.CompareExchange(ref e.Seq, s + 1, s) == s)
            {
                if ((any || (int)(uint)e.Owner == tag) && e.Vpn >= firstVpn && e.Vpn <= lastVpn)
                {
                    e.Vpn = InvalidVpn;
                    e.Data = 0;
                }
                Volatile.Write(ref e.Seq, s + 2);
                return;
            }
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }
}

/// <summary>
/// A statistics counter split into cache-line-padded stripes, incremented without atomics. The caller picks the stripe
/// (the IOTLB uses the set index, which is free and spreads threads that touch different pages over different lines).
/// Exact with one thread; two threads that bump one stripe at the same instant may lose an increment (it is a
/// statistic, not state).
/// </summary>
internal readonly struct StripedCounter
{
    public const int Stripes = 32;
    private const int Stride = 16; // longs: 128 bytes between stripes (the adjacent-line prefetcher pairs lines)
    // Pinned and addressed from _base, so the owner reaches a stripe with one load and no null check.
    private readonly long[] _c;
    private readonly nint _base;

    private unsafe StripedCounter(long[] pinned)
    {
        _c = pinned;
        _base = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));
    }

    public static StripedCounter Create() => new(GC.AllocateArray<long>(Stripes * Stride, pinned: true));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe void Increment(nuint hint)
    {
        // SAFETY: the array is pinned and referenced by this struct; the offset is below Stripes * Stride * 8 bytes.
        (*(long*)(_base + (nint)((hint * (Stride * sizeof(long))) & ((Stripes - 1) * Stride * sizeof(long)))))++;
    }

    public long Sum()
    {
        long s = 0;
        for (int i = 0; i < Stripes; i++) s += Volatile.Read(ref _c[i * Stride]);
        return s;
    }
}
