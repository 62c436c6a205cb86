using IommuKit.Simulation;
using Xunit;

namespace IommuKit.Tests.Simulation;

public class PhysicalMemoryTests
{
    [Fact]
    public void UnwrittenMemoryReadsAsZerosWithoutAllocating()
    {
        var mem = new PhysicalMemory();
        var buf = new byte[100];
        Array.Fill(buf, (byte)0xaa);
        mem.Read(0x1234_5678_9000, buf);
        Assert.All(buf, b => Assert.Equal(0, b));
        Assert.Equal(0, mem.AllocatedBytes);
    }

    [Fact]
    public void WriteRoundTripsAcrossChunkBoundaries()
    {
        var mem = new PhysicalMemory();
        var data = new byte[3 * PhysicalMemory.ChunkSize + 77];
        new Random(1).NextBytes(data);
        ulong at = PhysicalMemory.ChunkSize - 13; // straddles four chunks
        mem.Write(at, data);
        var back = new byte[data.Length];
        mem.Read(at, back);
        Assert.Equal(data, back);
    }

    [Fact]
    public void BackingIsAllocatedOnlyForTheChunksWritten()
    {
        var mem = new PhysicalMemory();
        mem.Write(0, [1]);
        mem.Write((1UL << PhysicalMemory.PhysicalAddressBits) - 1, [2]); // the very last byte: sparse, huge space
        Assert.Equal(2 * PhysicalMemory.ChunkSize, mem.AllocatedBytes);
        Span<byte> b = stackalloc byte[1];
        mem.Read((1UL << PhysicalMemory.PhysicalAddressBits) - 1, b);
        Assert.Equal(2, b[0]);
    }

    [Fact]
    public void WritingPastTheCapThrowsAndKeepsTheCap()
    {
        var mem = new PhysicalMemory(capBytes: 2 * PhysicalMemory.ChunkSize);
        mem.Write(0, new byte[2 * PhysicalMemory.ChunkSize]);
        Assert.Throws<InvalidOperationException>(() => mem.Write(10UL << 30, [1]));
        Assert.Equal(2 * PhysicalMemory.ChunkSize, mem.AllocatedBytes);
    }

    [Theory]
    [InlineData(1UL << 48, 1)]
    [InlineData((1UL << 48) - 1, 2)]
    [InlineData(ulong.MaxValue, 1)]
    public void RangesLeavingThePhysicalAddressSpaceAreRejected(ulong address, int length) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new PhysicalMemory().Write(address, new byte[length]));

    [Fact]
    public void ConcurrentWritersToDistinctRangesAllLand()
    {
        var mem = new PhysicalMemory();
        const int Threads = 4, PerThread = 2000;
        Parallel.For(0, Threads, t =>
        {
            for (int i = 0; i < PerThread; i++)
                mem.WriteUInt32((ulong)(i * Threads + t) * 1024, (uint)(t << 16 | i)); // neighbours share chunks
        });
        for (int t = 0; t < Threads; t++)
        {
            for (int i = 0; i < PerThread; i++)
                Assert.Equal((uint)(t << 16 | i), mem.ReadUInt32((ulong)(i * Threads + t) * 1024));
        }
    }

    [Fact]
    public void ReusedPagesComeBackZeroed()
    {
        var mem = new PhysicalMemory();
        ulong p = mem.AllocatePages(8192);
        Assert.NotEqual(0UL, p);
        Assert.Equal(0UL, p % PhysicalMemory.PageSize);
        mem.WriteUInt32(p + 4100, 0xdeadbeef);
        mem.FreePages(p, 8192);
        ulong q = mem.AllocatePages(8192);
        Assert.Equal(p, q);
        Assert.Equal(0u, mem.ReadUInt32(q + 4100));
    }

    [Fact]
    public void ClearZeroesOnlyTheGivenRange()
    {
        var mem = new PhysicalMemory();
        mem.Write(0x1000, Enumerable.Repeat((byte)7, 0x3000).ToArray());
        mem.Clear(0x2000, 0x1000);
        Assert.Equal(0x07070707u, mem.ReadUInt32(0x1ffc));
        Assert.Equal(0u, mem.ReadUInt32(0x2000));
        Assert.Equal(0u, mem.ReadUInt32(0x2ffc));
        Assert.Equal(0x07070707u, mem.ReadUInt32(0x3000));
    }
}
