using System.Runtime.CompilerServices;
using IommuKit.Dma;

namespace IommuKit.Simulation;

/// <summary>
/// Simulated physical memory (RAM): a sparse byte-addressable space of <see cref="PhysicalAddressBits"/> bits, backed by
/// 64 KiB chunks allocated on first write. Reads of memory never written return zeros.
/// </summary>
/// <remarks>
/// <para>Layout: a two-level directory (like a page table) of 64 KiB chunks. The top level has 2^16 slots of 4 GiB each,
/// the second level 2^16 chunk slots. Both levels are filled with <see cref="Interlocked.CompareExchange{T}(ref T, T, T)"/>,
/// so reads and writes take no lock. Concurrent writes to the same bytes race exactly as DMA into RAM does (last writer
/// wins, no tearing guarantee beyond what <see cref="Span{T}.CopyTo"/> gives).</para>
/// <para>The backing store is capped (<see cref="CapBytes"/>): a simulated device cannot grow the host's memory without
/// bound. Exceeding the cap throws <see cref="InvalidOperationException"/>.</para>
/// <para>Also hands out page-aligned physical ranges for coherent DMA buffers (<see cref="AllocatePages"/>): a bump
/// pointer with per-size free lists, under a lock (cold path).</para>
/// </remarks>
public sealed class PhysicalMemory : IGuestMemory, IDmaPageAllocator
{
    /// <summary>log2 of the backing chunk size (64 KiB).</summary>
    public const int ChunkShift = 16;
    /// <summary>Backing chunk size in bytes.</summary>
    public const int ChunkSize = 1 << ChunkShift;
    private const int ChunkMask = ChunkSize - 1;
    private const int LevelBits = 16;
    private const int LevelMask = (1 << LevelBits) - 1;

    /// <summary>Width of the simulated physical address space (48 bits = 256 TiB, 2-level directory of 64 KiB chunks).</summary>
    public const int PhysicalAddressBits = ChunkShift + 2 * LevelBits;

    /// <summary>Default cap on the backing store: 4 GiB.</summary>
    public const ulong DefaultCapBytes = 4UL << 30;

    /// <summary>Granule of <see cref="AllocatePages"/> (4 KiB).</summary>
    public const ulong PageSize = 4096;

    private readonly byte[]?[]?[] _directory = new byte[]?[]?[1 << LevelBits];
    private long _allocatedBytes;

    // _pageLock guards _nextFreePage, _pageFreeLists and _pageEnd (AllocatePages/FreePages only).
    private readonly Lock _pageLock = new();
    private ulong _nextFreePage;
    private readonly ulong _pageEnd;
    private readonly Dictionary<ulong, Stack<ulong>> _pageFreeLists = new();

    /// <summary>Creates an empty memory.</summary>
    /// <param name="capBytes">Maximum backing store in bytes (rounded up to whole chunks).</param>
    /// <param name="allocatableBase">First physical address <see cref="AllocatePages"/> hands out (default 1 MiB).</param>
    /// <param name="allocatableEnd">End (exclusive) of the range <see cref="AllocatePages"/> hands out (default 2 GiB).</param>
    public PhysicalMemory(ulong capBytes = DefaultCapBytes, ulong allocatableBase = 1UL << 20, ulong allocatableEnd = 2UL << 30)
    {
        if (capBytes == 0)
            ThrowHelper.ThrowArgument(nameof(capBytes), "the memory cap must be positive");
        if (allocatableBase % PageSize != 0 || allocatableEnd % PageSize != 0 || allocatableEnd <= allocatableBase ||
            allocatableEnd > 1UL << PhysicalAddressBits)
            ThrowHelper.ThrowArgument(nameof(allocatableBase), "the allocatable range must be page-aligned, non-empty and inside the address space");
        CapBytes = capBytes;
        _nextFreePage = allocatableBase;
        _pageEnd = allocatableEnd;
    }

    /// <summary>Maximum backing store in bytes.</summary>
    public ulong CapBytes { get; }

    /// <summary>Bytes of backing store allocated so far (whole 64 KiB chunks).</summary>
    public long AllocatedBytes => Volatile.Read(ref _allocatedBytes);

    /// <summary>Copies <paramref name="destination"/>.Length bytes starting at physical address <paramref name="address"/>
    /// into <paramref name="destination"/>. Unwritten memory reads as zeros.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range leaves the physical address space.</exception>
    public void Read(ulong address, Span<byte> destination)
    {
        CheckRange(address, (ulong)destination.Length);
        while (!destination.IsEmpty)
        {
            int offset = (int)(address & ChunkMask);
            int n = Math.Min(destination.Length, ChunkSize - offset);
            byte[]? chunk = TryGetChunk(address);
            if (chunk is null)
                destination[..n].Clear();
            else
                new ReadOnlySpan<byte>(chunk, offset, n).CopyTo(destination);
            destination = destination[n..];
            address += (ulong)n;
        }
    }

    /// <summary>Copies <paramref name="source"/> to physical address <paramref name="address"/>, allocating backing chunks
    /// on first write.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range leaves the physical address space.</exception>
    /// <exception cref="InvalidOperationException">The backing store would exceed <see cref="CapBytes"/>.</exception>
    public void Write(ulong address, ReadOnlySpan<byte> source)
    {
        CheckRange(address, (ulong)source.Length);
        while (!source.IsEmpty)
        {
            int offset = (int)(address & ChunkMask);
            int n = Math.Min(source.Length, ChunkSize - offset);
            source[..n].CopyTo(new Span<byte>(GetOrAddChunk(address), offset, n));
            source = source[n..];
            address += (ulong)n;
        }
    }

    /// <summary>Zeroes <paramref name="length"/> bytes at <paramref name="address"/> (chunks never written stay unallocated).</summary>
    public void Clear(ulong address, ulong length)
    {
        CheckRange(address, length);
        while (length != 0)
        {
            int offset = (int)(address & ChunkMask);
            int n = (int)Math.Min(length, (ulong)(ChunkSize - offset));
            byte[]? chunk = TryGetChunk(address);
            if (chunk is not null)
                Array.Clear(chunk, offset, n);
            length -= (ulong)n;
            address += (ulong)n;
        }
    }

    /// <summary>Reads a little-endian 32-bit value.</summary>
    public uint ReadUInt32(ulong address)
    {
        Span<byte> b = stackalloc byte[4];
        Read(address, b);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    /// <summary>Writes a little-endian 32-bit value.</summary>
    public void WriteUInt32(ulong address, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        Write(address, b);
    }

    /// <summary>
    /// Hands out <paramref name="bytes"/> (rounded up to 4 KiB pages) of physical memory, page-aligned, or 0 when the
    /// allocatable range is exhausted. The pages read as zeros. Pair with <see cref="FreePages"/> (same size).
    /// </summary>
    public ulong AllocatePages(ulong bytes)
    {
        if (bytes == 0 || bytes > _pageEnd)
            return 0;
        ulong size = (bytes + PageSize - 1) & ~(PageSize - 1);
        ulong phys;
        lock (_pageLock)
        {
            if (_pageFreeLists.TryGetValue(size, out var list) && list.Count > 0)
            {
                phys = list.Pop();
            }
            else
            {
                if (_pageEnd - _nextFreePage < size)
                    return 0;
                phys = _nextFreePage;
                _nextFreePage += size;
                return phys; // never written: already zero
            }
        }
        Clear(phys, size);
        return phys;
    }

    /// <summary>Returns a range from <see cref="AllocatePages"/> (same <paramref name="bytes"/>).</summary>
    public void FreePages(ulong address, ulong bytes)
    {
        ulong size = (bytes + PageSize - 1) & ~(PageSize - 1);
        lock (_pageLock)
        {
            if (!_pageFreeLists.TryGetValue(size, out var list))
                _pageFreeLists[size] = list = new Stack<ulong>();
            list.Push(address);
        }
    }

    /// <summary>
    /// The writable backing bytes for [address, address + n) where n is at most the rest of the 64 KiB chunk; allocates the
    /// chunk on first use. Used by bulk copies that have already checked the range.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal Span<byte> GetWritableSpan(ulong address, int maxLength)
    {
        int offset = (int)(address & ChunkMask);
        return new Span<byte>(GetOrAddChunk(address), offset, Math.Min(maxLength, ChunkSize - offset));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CheckRange(ulong address, ulong length)
    {
        // Overflow case: address + length wrapping past 2^64 is caught by the first comparison.
        if (length > (1UL << PhysicalAddressBits) || address > (1UL << PhysicalAddressBits) - length)
            ThrowHelper.ThrowAddressOutOfRange(address, length, PhysicalAddressBits);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte[]? TryGetChunk(ulong address)
    {
        byte[]?[]? level2 = Volatile.Read(ref _directory[(int)(address >> (ChunkShift + LevelBits))]);
        return level2 is null ? null : Volatile.Read(ref level2[(int)(address >> ChunkShift) & LevelMask]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte[] GetOrAddChunk(ulong address)
    {
        byte[]?[]? level2 = Volatile.Read(ref _directory[(int)(address >> (ChunkShift + LevelBits))]);
        if (level2 is not null)
        {
            byte[]? chunk = Volatile.Read(ref level2[(int)(address >> ChunkShift) & LevelMask]);
            if (chunk is not null)
                return chunk;
        }
        return AddChunk(address);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private byte[] AddChunk(ulong address)
    {
        ref byte[]?[]? slot1 = ref _directory[(int)(address >> (ChunkShift + LevelBits))];
        byte[]?[]? level2 = Volatile.Read(ref slot1);
        if (level2 is null)
        {
            var fresh = new byte[]?[1 << LevelBits];
            level2 = Interlocked.CompareExchange(ref slot1, fresh, null) ?? fresh;
        }
        ref byte[]? slot2 = ref level2[(int)(address >> ChunkShift) & LevelMask];
        byte[]? chunk = Volatile.Read(ref slot2);
        if (chunk is not null)
            return chunk;
        // Reserve the budget first so racing writers cannot overshoot the cap.
        if ((ulong)Interlocked.Add(ref _allocatedBytes, ChunkSize) > CapBytes)
        {
            Interlocked.Add(ref _allocatedBytes, -ChunkSize);
            ThrowHelper.ThrowMemoryCapReached(address, CapBytes);
        }
        var fresh2 = new byte[ChunkSize];
        chunk = Interlocked.CompareExchange(ref slot2, fresh2, null);
        if (chunk is null)
            return fresh2;
        Interlocked.Add(ref _allocatedBytes, -ChunkSize); // lost the race: the winner's chunk is used
        return chunk;
    }
}
