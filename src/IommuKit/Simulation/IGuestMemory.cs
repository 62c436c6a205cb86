namespace IommuKit.Simulation;

/// <summary>
/// Guest physical memory as the bus model reaches it after translation: what a VMM or emulator implements over its
/// own RAM (a mapped region, a <c>Memory&lt;byte&gt;</c>, a file). <see cref="PhysicalMemory"/> is the in-process
/// implementation the tests and benchmarks use.
/// </summary>
/// <remarks>
/// <para>The bus calls these methods with physically contiguous ranges only (one call per run of contiguous pages),
/// from many threads at once, without holding any lock: implementations must be thread-safe for disjoint and
/// overlapping ranges (last writer wins, as DMA into RAM).</para>
/// <para>Addresses are guest physical addresses in bytes. A range the implementation does not back should throw
/// <see cref="ArgumentOutOfRangeException"/> (a bug in the caller's mapping, not a DMA fault: the IOMMU already let the
/// request through).</para>
/// </remarks>
public interface IGuestMemory
{
    /// <summary>Copies <paramref name="destination"/>.Length bytes from guest physical <paramref name="address"/>.</summary>
    void Read(ulong address, Span<byte> destination);

    /// <summary>Copies <paramref name="source"/> to guest physical <paramref name="address"/>.</summary>
    void Write(ulong address, ReadOnlySpan<byte> source);
}
