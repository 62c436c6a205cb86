using System.Diagnostics.CodeAnalysis;

namespace IommuKit.Simulation;

/// <summary>Throw helpers kept out of line so the hot paths of the simulation stay small (the DMA layer has its own).</summary>
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
    public static void ThrowDomainIdOutOfRange(int domainId) =>
        throw new ArgumentOutOfRangeException(nameof(domainId), domainId, $"domain id {domainId} is outside 0..{IommuHardware.MaxDomainId}");
}
