namespace IommuKit.Dma;

/// <summary>
/// Where <see cref="DmaApi.AllocCoherent"/> takes its pages (the page allocator behind <c>dma_alloc_coherent</c>).
/// <c>Simulation.PhysicalMemory</c> implements it; a VMM passes its own guest-memory allocator.
/// </summary>
public interface IDmaPageAllocator
{
    /// <summary>Allocates <paramref name="bytes"/> (a multiple of 4 KiB) of zeroed, page-aligned physical memory and
    /// returns its physical address, or 0 when there is no room.</summary>
    ulong AllocatePages(ulong bytes);

    /// <summary>Returns pages from <see cref="AllocatePages"/> (same address and size).</summary>
    void FreePages(ulong address, ulong bytes);
}
