using System.Text;
using IommuKit.Pci;
using Xunit;

namespace IommuKit.Tests.Pci;

/// <summary>
/// The managed SHA-256 behind the group fingerprint, checked against the FIPS 180-4 / NIST example vectors and
/// against the platform's <see cref="System.Security.Cryptography.SHA256"/> (the hash the fingerprints were first
/// computed with) on every length around the padding boundaries and on random inputs.
/// </summary>
public class Sha256Tests
{
    private static string Hex(ReadOnlySpan<byte> input)
    {
        var digest = new byte[32];
        Assert.Equal(32, Sha256.HashData(input, digest));
        return Convert.ToHexStringLower(digest);
    }

    [Theory]
    // NIST "SHA256.pdf" examples for FIPS 180-4: one block, two blocks.
    [InlineData("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")]
    [InlineData("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")]
    // The empty message (FIPS 180-4 padding alone).
    [InlineData("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")]
    // NIST's 896-bit two-block example.
    [InlineData("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu", "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")]
    public void FipsExampleMessagesHashToThePublishedDigests(string message, string digest)
    {
        Assert.Equal(digest, Hex(Encoding.ASCII.GetBytes(message)));
    }

    [Fact]
    public void OneMillionLetterAHashesToThePublishedDigest()
    {
        // NIST long-message example: 1,000,000 repetitions of 'a'.
        var input = new byte[1_000_000];
        input.AsSpan().Fill((byte)'a');
        Assert.Equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", Hex(input));
    }

    [Fact]
    public void EveryLengthAcrossThreeBlocksMatchesThePlatformHash()
    {
        // Lengths 0..200 cross every padding case: tail < 56 (one padding block), 56..63 (two), exact multiples.
        var rng = new Random(180_4);
        for (int len = 0; len <= 200; len++)
        {
            var input = new byte[len];
            rng.NextBytes(input);
            Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(input)), Hex(input));
        }
    }

    [Fact]
    public void RandomInputsMatchThePlatformHash()
    {
        var rng = new Random(256);
        for (int i = 0; i < 300; i++)
        {
            var input = new byte[rng.Next(0, 5000)];
            rng.NextBytes(input);
            Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(input)), Hex(input));
        }
    }

    [Fact]
    public void WritesOnlyTheFirst32BytesOfALargerDestination()
    {
        var dest = new byte[40];
        dest.AsSpan().Fill(0xee);
        Sha256.HashData("abc"u8, dest);
        Assert.Equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", Convert.ToHexStringLower(dest.AsSpan(0, 32)));
        Assert.All(dest[32..], b => Assert.Equal(0xee, b));
    }

    [Fact]
    public void RejectsADestinationShorterThanADigest()
    {
        Assert.Throws<ArgumentException>(() => Sha256.HashData("abc"u8, new byte[31]));
    }
}
