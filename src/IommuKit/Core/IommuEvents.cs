namespace IommuKit.Core;

/// <summary>
/// Something the core (or a driver on its behalf) did, as a typed record: the structured counterpart of the kernel's
/// log lines and notifiers. Subscribe with <see cref="IommuCore.Subscribe"/>; the text <see cref="IommuCore.Log"/> is
/// itself one subscriber (of <see cref="LogLineEvent"/>).
/// </summary>
public abstract record IommuEvent;

/// <summary>A domain was allocated for <paramref name="Group"/> (a default, blocking or API user's domain).</summary>
public sealed record DomainAllocatedEvent(IommuDomain Domain, IommuGroup? Group) : IommuEvent;

/// <summary>A domain was freed (<c>iommu_domain_free</c>); addresses mapped in it are gone.</summary>
public sealed record DomainFreedEvent(IommuDomain Domain) : IommuEvent;

/// <summary>Every device of <paramref name="Group"/> now translates through <paramref name="Domain"/> (default, blocking
/// or user domain); <paramref name="Previous"/> is what it used before (null on the first attach).</summary>
public sealed record GroupAttachedEvent(IommuGroup Group, IommuDomain Domain, IommuDomain? Previous) : IommuEvent;

/// <summary><c>iommu_detach_group</c>/<c>iommu_detach_device</c>: the group left <paramref name="Domain"/> and is back on
/// <paramref name="Now"/> (its default domain, or the blocking one while owned).</summary>
public sealed record GroupDetachedEvent(IommuGroup Group, IommuDomain Domain, IommuDomain? Now) : IommuEvent;

/// <summary>A sysfs <c>type</c> write changed the group's default domain type (in place for DMA → DMA-FQ, else a new
/// domain <paramref name="Domain"/>).</summary>
public sealed record DefaultTypeChangedEvent(IommuGroup Group, IommuDomainType Old, IommuDomainType New, IommuDomain Domain) : IommuEvent;

/// <summary>DMA ownership of <paramref name="Group"/> was claimed (<paramref name="Claimed"/>) or released by
/// <paramref name="Owner"/> (<c>iommu_group_claim_dma_owner</c> / <c>iommu_group_release_dma_owner</c>).</summary>
public sealed record OwnershipChangedEvent(IommuGroup Group, object Owner, bool Claimed) : IommuEvent;

/// <summary>
/// <c>report_iommu_fault</c>: an IOMMU unit refused a DMA. <paramref name="Device"/> and <paramref name="Domain"/> are
/// null when no probed device uses <paramref name="RequesterId"/> on <paramref name="Unit"/>.
/// </summary>
/// <param name="Reason">The unit's fault reason (e.g. NotPresent, Permission, Blocked, NoContext).</param>
public sealed record DmaFaultEvent(string Unit, ushort RequesterId, IommuDevice? Device, IommuDomain? Domain, ulong Address,
    bool Write, string Reason) : IommuEvent;

/// <summary>A line of the kernel log the core or a driver printed (what <see cref="IommuCore.Log"/> keeps).</summary>
public sealed record LogLineEvent(string Line) : IommuEvent;
