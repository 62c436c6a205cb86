using IommuKit.Core;
using IommuKit.Dma;
using Xunit;

namespace IommuKit.Tests.Dma;

/// <summary>Short forms for tests that need the DMA address (or segment count) of a map, not its result: each checks
/// that a failure left the out value where the API says it leaves it.</summary>
internal static class DmaTestHelpers
{
    /// <summary>The DMA address of <see cref="DmaApi.MapSingle"/>, <see cref="DmaApi.MappingError"/> when refused.</summary>
    public static ulong MapAddress(this DmaApi api, ulong phys, ulong size, DmaDirection dir)
    {
        IommuResult r = api.MapSingle(phys, size, dir, out ulong dma);
        Assert.Equal(r.IsOk, dma != DmaApi.MappingError);
        Assert.Equal(r.IsOk, r.Reason is null);
        return dma;
    }

    /// <summary>The DMA address of <see cref="DeviceDma.MapSingle"/>, <see cref="DmaApi.MappingError"/> when refused.</summary>
    public static ulong MapAddress(this DeviceDma api, ulong phys, ulong size, DmaDirection dir)
    {
        IommuResult r = api.MapSingle(phys, size, dir, out ulong dma);
        Assert.Equal(r.IsOk, dma != DmaApi.MappingError);
        return dma;
    }

    /// <summary>The segment count of <see cref="DmaApi.MapSg"/>, or the negative errno when refused.</summary>
    public static int MapSgCount(this DmaApi api, Span<ScatterEntry> sg, DmaDirection dir)
    {
        IommuResult r = api.MapSg(sg, dir, out int segments);
        Assert.Equal(r.IsOk, segments > 0);
        return r.IsOk ? segments : -(int)r.Errno;
    }
}
