using System.Diagnostics.CodeAnalysis;
using IommuKit.Dma;

namespace IommuKit.Simulation;

/// <summary>Throw helpers kept out of line so the hot paths of the simulation and of the DMA API (<see cref="DmaApi"/>)
/// stay small. The one place for both: the DMA layer sits on the simulation.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowAddressOutOfRange(ulong address, ulong length, int bits) =>
        throw new ArgumentOutOfRangeException(nameof(address),
            $"physical range 0x{address:x}+0x{length:x} is outside the {bits}-bit physical address space");

    [DoesNotReturn]
    public static void ThrowMemoryCapReached(ulong address, ulong capBytes) =>
        throw new InvalidOperationException(
            $"simulated physical memory cap of {capBytes} bytes reached while writing 0x{address:x}");

    [DoesNotReturn]
    public static void ThrowArgument(string paramName, string message) => throw new ArgumentException(message, paramName);

    [DoesNotReturn]
    public static void ThrowBadDirection(DmaDirection dir) =>
        throw new ArgumentOutOfRangeException(nameof(dir), $"DMA direction {dir} is not valid for a mapping");

    [DoesNotReturn]
    public static void ThrowUnmapFailed(string device, ulong dmaAddress, ulong size, Errno err) =>
        throw new InvalidOperationException(
            $"{device}: unmapping DMA address 0x{dmaAddress:x} size 0x{size:x} failed: {err} ({err.Describe()}); " +
            "the range was not mapped by this DMA API (__iommu_dma_unmap WARN)");

    [DoesNotReturn]
    public static void ThrowNoMemory(string device) =>
        throw new InvalidOperationException($"{device}: coherent allocations need a PhysicalMemory");

    [DoesNotReturn]
    public static void ThrowDomainIdOutOfRange(int domainId) =>
        throw new ArgumentOutOfRangeException(nameof(domainId), domainId, $"domain id {domainId} is outside 0..{IommuHardware.MaxDomainId}");
}
