using System.Buffers.Binary;
using System.Numerics;

namespace IommuKit.Pci;

/// <summary>
/// SHA-256 (FIPS 180-4 section 6.2) in managed code, for the group fingerprint.
/// </summary>
/// <remarks>
/// <see cref="System.Security.Cryptography.SHA256"/> on Linux is OpenSSL's: a native AOT <c>iommu</c> on a host
/// without libssl (a hypervisor's busybox, a rescue initramfs) aborts with "No usable version of libssl was found"
/// the first time a fingerprint is computed. The fingerprint is an identifier, not a security boundary, and its
/// inputs are a few hundred bytes, so a plain implementation is fast enough and needs no native library. The output
/// is byte-for-byte that of the standard (checked against the FIPS 180-4 example vectors and against
/// <c>SHA256.HashData</c> in the tests), so fingerprints did not change when this replaced the platform's hash.
/// </remarks>
internal static class Sha256
{
    /// <summary>Size of the digest in bytes.</summary>
    public const int HashSizeInBytes = 32;

    private const int BlockSize = 64;

    // FIPS 180-4 section 4.2.2: the first 32 bits of the fractional parts of the cube roots of the first 64 primes.
    private static ReadOnlySpan<uint> K =>
    [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ];

    /// <summary>
    /// Writes the SHA-256 digest of <paramref name="source"/> to the first 32 bytes of <paramref name="destination"/>
    /// and returns 32. Same contract as <c>SHA256.HashData(ReadOnlySpan&lt;byte&gt;, Span&lt;byte&gt;)</c>.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than 32 bytes.</exception>
    public static int HashData(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        if (destination.Length < HashSizeInBytes)
            throw new ArgumentException($"destination holds {destination.Length} bytes; a SHA-256 digest needs {HashSizeInBytes}", nameof(destination));

        // FIPS 180-4 section 5.3.3: the initial hash value H(0).
        Span<uint> h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
        Span<uint> w = stackalloc uint[64];

        int full = source.Length / BlockSize * BlockSize;
        for (int off = 0; off < full; off += BlockSize) Compress(h, w, source.Slice(off, BlockSize));

        // FIPS 180-4 section 5.1.1 padding: the tail, a 1 bit, zeros to 56 mod 64, then the bit length as 64-bit
        // big-endian. The tail is under 64 bytes, so the padding takes one block or two.
        Span<byte> last = stackalloc byte[2 * BlockSize];
        last.Clear();
        ReadOnlySpan<byte> tail = source[full..];
        tail.CopyTo(last);
        last[tail.Length] = 0x80;
        int padded = tail.Length + 1 + 8 <= BlockSize ? BlockSize : 2 * BlockSize;
        // Bit length modulo 2^64; a span's length is below 2^31 bytes, so the multiplication cannot overflow.
        BinaryPrimitives.WriteUInt64BigEndian(last.Slice(padded - 8, 8), (ulong)source.Length * 8);
        for (int off = 0; off < padded; off += BlockSize) Compress(h, w, last.Slice(off, BlockSize));

        for (int i = 0; i < 8; i++) BinaryPrimitives.WriteUInt32BigEndian(destination.Slice(i * 4, 4), h[i]);
        return HashSizeInBytes;
    }

    /// <summary>FIPS 180-4 section 6.2.2: one 512-bit block into the hash state.</summary>
    private static void Compress(Span<uint> h, Span<uint> w, ReadOnlySpan<byte> block)
    {
        for (int t = 0; t < 16; t++) w[t] = BinaryPrimitives.ReadUInt32BigEndian(block.Slice(t * 4, 4));
        for (int t = 16; t < 64; t++)
        {
            uint s0 = BitOperations.RotateRight(w[t - 15], 7) ^ BitOperations.RotateRight(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint s1 = BitOperations.RotateRight(w[t - 2], 17) ^ BitOperations.RotateRight(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = unchecked(w[t - 16] + s0 + w[t - 7] + s1);
        }

        uint a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        ReadOnlySpan<uint> k = K;
        for (int t = 0; t < 64; t++)
        {
            uint bigSigma1 = BitOperations.RotateRight(e, 6) ^ BitOperations.RotateRight(e, 11) ^ BitOperations.RotateRight(e, 25);
            uint ch = (e & f) ^ (~e & g);
            uint t1 = unchecked(hh + bigSigma1 + ch + k[t] + w[t]);
            uint bigSigma0 = BitOperations.RotateRight(a, 2) ^ BitOperations.RotateRight(a, 13) ^ BitOperations.RotateRight(a, 22);
            uint maj = (a & b) ^ (a & c) ^ (b & c);
            uint t2 = unchecked(bigSigma0 + maj);
            hh = g; g = f; f = e; e = unchecked(d + t1); d = c; c = b; b = a; a = unchecked(t1 + t2);
        }
        unchecked
        {
            h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
        }
    }
}
