using System.Diagnostics.CodeAnalysis;

namespace IommuKit.Dma;

/// <summary>Throw helpers kept out of line so the hot paths of <see cref="DmaApi"/> and <see cref="FlushQueue"/> stay small.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowArgument(string paramName, string message) => throw new ArgumentException(message, paramName);

    [DoesNotReturn]
    public static void ThrowBadDirection(DmaDirection dir) =>
        throw new ArgumentOutOfRangeException(nameof(dir), $"DMA direction {dir} is not valid for a mapping");

    [DoesNotReturn]
    public static void ThrowNoMemory(string device) =>
        throw new InvalidOperationException($"{device}: coherent allocations need a page allocator (IDmaPageAllocator)");
}
