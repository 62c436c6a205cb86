using FsCheck;
using FsCheck.Fluent;
using IommuKit.Pci;
using Xunit;

namespace IommuKit.Tests.Pci;

/// <summary>
/// Issue 11: a complete config space keeps its bytes only up to the last non-zero one (a 4 KiB extended space is
/// mostly zeros, and a 100-function load held 400 KB of them). Every read must answer as if all bytes were kept.
/// </summary>
public class ConfigSpaceStorageTests
{
    /// <summary>Every read of <paramref name="a"/> and <paramref name="b"/> at every offset, and the raw bytes, agree.</summary>
    private static void AssertSameReads(ConfigSpace a, ConfigSpace b)
    {
        Assert.Equal(a.Length, b.Length);
        Assert.True(a.Bytes.SequenceEqual(b.Bytes));
        Assert.Equal(a.HeaderOnly, b.HeaderOnly);
        Assert.Equal(a.HasExtendedSpace, b.HasExtendedSpace);
        Assert.Equal(a.DwordsRead, b.DwordsRead);
        for (int o = -2; o <= a.Length + 1; o++)
        {
            Assert.Equal(Outcome(() => a.ReadByte(o)), Outcome(() => b.ReadByte(o)));
            Assert.Equal(Outcome(() => a.ReadUInt16(o)), Outcome(() => b.ReadUInt16(o)));
            Assert.Equal(Outcome(() => a.ReadUInt32(o)), Outcome(() => b.ReadUInt32(o)));
            Assert.Equal((a.TryReadUInt16(o, out var x16), x16), (b.TryReadUInt16(o, out var y16), y16));
            Assert.Equal((a.TryReadUInt32(o, out var x32), x32), (b.TryReadUInt32(o, out var y32), y32));
            Assert.Equal(a.IsRead(o, 4), b.IsRead(o, 4));
        }
    }

    private static string Outcome(Func<object> read)
    {
        try { return read().ToString()!; }
        catch (ArgumentOutOfRangeException) { return "out of range"; }
        catch (IndexOutOfRangeException) { return "out of range"; }
    }

    [Fact]
    public void ATrimmedSpaceReadsAsTheWholeOneEverywhere()
    {
        // A bridge's header, one extended capability at 0x100 and nothing after it: the usual shape of a real 4 KiB file.
        var bytes = new byte[ConfigSpace.ExtendedSize];
        new byte[] { 0x86, 0x80, 0x34, 0x12, 0, 0, 0x10, 0, 0, 0, 4, 6, 0, 0, 1, 0 }.CopyTo(bytes, 0);
        bytes[0x100] = 0x0d; bytes[0x101] = 0x00; bytes[0x102] = 0x01; bytes[0x103] = 0x00; // ACS, version 1, next 0
        bytes[0x104] = 0x1f;
        var trimmed = new ConfigSpace(bytes);
        AssertSameReads(ConfigSpace.FromOwned((byte[])bytes.Clone()), trimmed);
        // Reads that straddle the last stored byte and the zeros after it.
        Assert.Equal(0x1fu, trimmed.ReadUInt32(0x104));
        Assert.Equal(0x1f00u, trimmed.ReadUInt16(0x103));
        Assert.Equal(0u, trimmed.ReadUInt32(0xffc));
        Assert.Equal(ConfigSpace.ExtendedSize, trimmed.Bytes.Length);
    }

    [Fact]
    public void AnAllZeroSpaceKeepsItsHeaderAndLength()
    {
        var zeros = new ConfigSpace(new byte[ConfigSpace.ConventionalSize]);
        Assert.Equal(ConfigSpace.ConventionalSize, zeros.Length);
        Assert.False(zeros.HeaderOnly);
        AssertSameReads(ConfigSpace.FromOwned(new byte[ConfigSpace.ConventionalSize]), zeros);
    }

    [Fact]
    public void AnyBytesWithAnyRunOfTrailingZerosReadTheSameTrimmedOrNot() =>
        Prop.ForAll(Gen.Choose(0, 4).SelectMany(size => Gen.Choose(0, 1 << 20).Select(seed => (size, seed))).ToArbitrary(), t =>
        {
            int length = new[] { 64, 128, 256, 1024, 4096 }[t.size];
            var rng = new Random(t.seed);
            var bytes = new byte[length];
            int nonZero = rng.Next(0, length + 1); // bytes past this stay zero
            for (int i = 0; i < nonZero; i++) bytes[i] = rng.Next(3) == 0 ? (byte)0 : (byte)rng.Next(256);
            AssertSameReads(ConfigSpace.FromOwned((byte[])bytes.Clone()), new ConfigSpace(bytes));
        }).QuickCheckThrowOnFailure();
}
