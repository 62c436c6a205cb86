namespace IommuKit.Core;

/// <summary>
/// A claim of DMA ownership of one group (what VFIO holds while a user owns the group), from
/// <see cref="IommuCore.ClaimDmaOwnership"/>. The group sits in its blocking domain or a user domain until the claim
/// is disposed, which releases it (<c>iommu_group_release_dma_owner</c>); disposing twice does nothing.
/// </summary>
public sealed class DmaOwnership : IDisposable
{
    private readonly IommuCore _core;
    private int _released;

    internal DmaOwnership(IommuCore core, IommuGroup group)
    {
        _core = core;
        Group = group;
    }

    /// <summary>The owned group.</summary>
    public IommuGroup Group { get; }

    /// <summary>True until <see cref="Dispose"/>.</summary>
    public bool IsHeld => Volatile.Read(ref _released) == 0;

    /// <summary>Releases the group back to its default domain.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) != 0) return;
        _core.GroupReleaseDmaOwner(Group);
    }
}
