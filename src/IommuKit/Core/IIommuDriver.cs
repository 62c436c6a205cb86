using IommuKit.Pci;

namespace IommuKit.Core;

/// <summary>Per-device capabilities a driver reports (<c>enum iommu_cap</c>, <c>iommu_ops.capable</c>).</summary>
public enum IommuCapability
{
    /// <summary>IOMMU_CAP_CACHE_COHERENCY.</summary>
    CacheCoherency,
    /// <summary>IOMMU_CAP_DEFERRED_FLUSH: a DMA-FQ domain may keep its flush queue; without it DMA-FQ drops to DMA at DMA-ops setup.</summary>
    DeferredFlush,
    /// <summary>IOMMU_CAP_ENFORCE_CACHE_COHERENCY.</summary>
    EnforceCacheCoherency,
    /// <summary>The device's MSIs are isolated by the IOMMU (interrupt remapping / ITS): iommufd binds without <c>allow_unsafe_interrupts</c>.</summary>
    MsiIsolated,
}

/// <summary>
/// What a driver's <c>device_group</c> callback may ask of the core while building groups. Only valid during the
/// call (the core holds its probe lock, so group membership cannot change underneath).
/// </summary>
public interface IGroupContext
{
    /// <summary>The group of an already-probed device, or null.</summary>
    IommuGroup? GroupOf(IommuDevice device);

    /// <summary>The group of the probed device for a PCI function, or null (not probed yet, or no group).</summary>
    IommuGroup? GroupOf(PciDevice pci);

    /// <summary><c>iommu_group_alloc</c>: a new, empty group with the lowest free id; <paramref name="name"/> becomes the sysfs <c>name</c> file.</summary>
    IommuGroup Allocate(string? name = null);

    /// <summary>
    /// <c>ida_alloc_range</c> for group ids: a new, empty group with the lowest free id in [<paramref name="min"/>,
    /// <paramref name="max"/>] (clamped below <see cref="IommuCore.MaxGroupId"/>), or null when every id there is in
    /// use. A replay of a recorded machine uses it to give each group the number the kernel gave it.
    /// </summary>
    IommuGroup? AllocateInRange(int min, int max, string? name = null);
}

/// <summary>
/// The driver contract: the kernel's <c>struct iommu_ops</c> (plus the domain ops the core calls). One instance per
/// IOMMU driver; it may front several hardware units. The core never looks at which driver it runs: everything
/// driver-specific is behind these members.
/// </summary>
/// <remarks>
/// Calls arrive with core locks held as documented per member (docs/LOCKING.md); a driver must not call back into
/// the core from them except through <see cref="IGroupContext"/>, and may take only its own leaf locks.
/// </remarks>
public interface IIommuDriver
{
    /// <summary>Driver name (<c>intel-iommu</c>, <c>virtio-iommu</c>, <c>arm-smmu</c>, <c>powernv</c>).</summary>
    string Name { get; }

    /// <summary>
    /// Called once at <c>iommu_device_register</c> time, before any device is probed: driver-wide boot decisions such
    /// as forcing strict invalidation (<see cref="IommuCore.SetDmaStrict"/>, e.g. VT-d caching mode).
    /// </summary>
    void Init(IommuCore core);

    /// <summary><c>probe_device</c>: ENODEV when the device is not behind this driver's hardware. Probe lock held.</summary>
    IommuResult ProbeDevice(IommuDevice device);

    /// <summary><c>release_device</c>. Probe lock and group lock held.</summary>
    void ReleaseDevice(IommuDevice device);

    /// <summary><c>device_group</c>: the group the device belongs in (an existing one or a new one from <paramref name="context"/>); null is a driver bug (EINVAL). Probe lock held.</summary>
    IommuGroup? DeviceGroup(IommuDevice device, IGroupContext context);

    /// <summary><c>def_domain_type</c>: the type this device requires (Identity or Dma) or None for no preference. Group lock held.</summary>
    IommuDomainType DefDomainType(IommuDevice device);

    /// <summary><c>capable</c>.</summary>
    bool Capable(IommuDevice device, IommuCapability capability);

    /// <summary>
    /// <c>ops-&gt;default_domain</c>: a static legacy default domain the driver always uses (POWER's platform domain);
    /// null for drivers that let the core allocate one.
    /// </summary>
    IommuDomain? StaticDefaultDomain { get; }

    /// <summary>The driver's static identity domain, or null (then <see cref="AllocIdentityDomain"/> is tried).</summary>
    IommuDomain? StaticIdentityDomain { get; }

    /// <summary>The driver's static blocked domain, or null (the core then uses an empty paging domain).</summary>
    IommuDomain? StaticBlockedDomain { get; }

    /// <summary>
    /// <c>domain_alloc_paging</c>: a paging domain for <paramref name="device"/> of type Dma, DmaFq or Unmanaged
    /// (drivers allocate DMA-FQ exactly like DMA). Returns ENOMEM/EOPNOTSUPP/... on failure. Group lock may be held.
    /// </summary>
    IommuResult AllocPagingDomain(IommuDevice device, IommuDomainType type, out IommuDomain? domain);

    /// <summary><c>domain_alloc_identity</c> for drivers without a static identity domain; EOPNOTSUPP when identity is impossible.</summary>
    IommuResult AllocIdentityDomain(IommuDevice device, out IommuDomain? domain);

    /// <summary><c>domain_free</c>: releases what the driver holds for a (non-static) domain.</summary>
    void FreeDomain(IommuDomain domain);

    /// <summary>
    /// <c>attach_dev</c>: make <paramref name="device"/> translate through <paramref name="domain"/>. EINVAL means
    /// "incompatible, try another domain"; ENOMEM, ENOSPC, EBUSY, ENODEV otherwise. Group lock held.
    /// </summary>
    IommuResult AttachDevice(IommuDomain domain, IommuDevice device, IommuDomain? old);

    /// <summary><c>get_resv_regions</c>: appends the device's reserved regions. Group lock may be held.</summary>
    void GetReservedRegions(IommuDevice device, List<ReservedRegion> regions);
}
