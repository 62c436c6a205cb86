namespace IommuKit.Core;

public sealed partial class IommuCore
{
    // ---------------------------------------------------------------- API-user domains and attach (spec 4.2, 4.3)

    /// <summary>
    /// <c>iommu_paging_domain_alloc(dev)</c> (spec 4.2): an UNMANAGED paging domain an API user maps itself. ENODEV when
    /// the device has no IOMMU; the driver's error, or ENOMEM for a null result. The caller frees it with <see cref="FreeDomain"/> once detached.
    /// </summary>
    public IommuResult AllocPagingDomain(IommuDevice device, out IommuDomain? domain)
    {
        domain = null;
        var ops = device.IommuDriver;
        if (ops is null) return IommuResult.Fail(Errno.ENODEV, $"{device.Name}: not behind an IOMMU");
        var r = ops.AllocPagingDomain(device, IommuDomainType.Unmanaged, out domain);
        if (!r.IsOk || domain is null)
            return IommuResult.Fail(r.IsOk ? Errno.ENOMEM : r.Errno, r.Reason ?? $"{device.Name}: {ops.Name} could not allocate a paging domain");
        domain.Type = IommuDomainType.Unmanaged;
        Raise(new DomainAllocatedEvent(domain, device.Group));
        return IommuResult.Ok;
    }

    /// <summary><c>iommu_domain_free</c> for an API user's domain (must not be attached anywhere).</summary>
    public void FreeDomain(IommuDomain domain) => FreeDomainInternal(domain);

    /// <summary>
    /// <c>iommu_attach_device</c> (spec 4.3, 12): ENODEV without a group; EINVAL unless the group has exactly one device (a device
    /// of a shared group can never get its own domain); then as <see cref="AttachGroup"/>.
    /// </summary>
    public IommuResult AttachDevice(IommuDomain domain, IommuDevice device)
    {
        var group = device.Group;
        if (group is null) return IommuResult.Fail(Errno.ENODEV, $"{device.Name}: not in an IOMMU group");
        using (new GroupLockScope(group))
        {
            if (device.Group != group) return IommuResult.Fail(Errno.ENODEV, $"{device.Name}: left its group");
            if (group.DevicesLocked.Count != 1)
                return IommuResult.Fail(Errno.EINVAL, $"{device.Name}: {group} has {group.DevicesLocked.Count} devices; a single device of a shared group cannot be attached alone (attach the group)");
            return AttachGroupLocked(domain, group);
        }
    }

    /// <summary>
    /// <c>iommu_attach_group</c> (spec 4.3, 12): EBUSY when an API user's domain is attached already (not the default
    /// or blocking one); EINVAL for a domain of another driver or a group without an IOMMU device; then every device
    /// switches, or none (rollback).
    /// </summary>
    public IommuResult AttachGroup(IommuDomain domain, IommuGroup group)
    {
        ArgumentNullException.ThrowIfNull(domain);
        if (ForeignGroup(group) is { } foreign) return foreign;
        using (new GroupLockScope(group)) return AttachGroupLocked(domain, group);
    }

    private IommuResult AttachGroupLocked(IommuDomain domain, IommuGroup group)
    {
        group.AssertLocked();
        var cur = group.DomainLocked;
        if (cur is not null && cur != group.DefaultDomainLocked && cur != group.BlockingDomainLocked)
            return IommuResult.Fail(Errno.EBUSY, $"{group} is already attached to {cur}; detach or replace it first");
        var first = group.DevicesLocked.Count > 0 ? group.DevicesLocked[0] : null;
        var ops = first?.IommuDriver;
        if (first is null || ops is null) return IommuResult.Fail(Errno.EINVAL, $"{group} has no device behind an IOMMU");
        if (!IsCompatible(domain, ops))
            return IommuResult.Fail(Errno.EINVAL, $"{first.Name}: {domain} belongs to another IOMMU driver than {ops.Name}");
        return SetGroupDomainLocked(group, domain, mustSucceed: false);
    }

    // domain_iommu_ops_compatible (spec 4.3): the domain's owner is these ops, or it is one of their static domains.
    private static bool IsCompatible(IommuDomain domain, IIommuDriver ops) =>
        domain.Owner == ops || domain == ops.StaticBlockedDomain || domain == ops.StaticIdentityDomain || domain == ops.StaticDefaultDomain;

    /// <summary>
    /// <c>iommu_replace_group_handle</c>-style switch from one API-user domain straight to another, without passing
    /// through the blocking domain (spec 4.3). EINVAL for a domain the group's IOMMU cannot use.
    /// </summary>
    public IommuResult ReplaceGroupDomain(IommuDomain domain, IommuGroup group)
    {
        ArgumentNullException.ThrowIfNull(domain);
        if (ForeignGroup(group) is { } foreign) return foreign;
        using (new GroupLockScope(group))
        {
            var first = group.DevicesLocked.Count > 0 ? group.DevicesLocked[0] : null;
            if (first?.IommuDriver is not { } ops || !IsCompatible(domain, ops))
                return IommuResult.Fail(Errno.EINVAL, $"{group}: {domain} is not compatible with the group's IOMMU");
            return SetGroupDomainLocked(group, domain, mustSucceed: false);
        }
    }

    /// <summary><c>iommu_detach_device</c>: back to the blocking domain when owned, else the default; ignored (with a warning) unless the device is alone in its group and on <paramref name="domain"/>.</summary>
    public void DetachDevice(IommuDomain domain, IommuDevice device)
    {
        var group = device.Group;
        if (group is null) return;
        using (new GroupLockScope(group))
        {
            if (group.DomainLocked != domain || group.DevicesLocked.Count != 1)
            {
                AddLog($"WARNING: {device.Name}: detach of {domain} that is not the device's own domain");
                return;
            }
            SetCoreDomainLocked(group, domain);
        }
    }

    /// <summary>
    /// <c>iommu_detach_group</c>: the group leaves <paramref name="domain"/> for the blocking domain when owned, else
    /// the default (must succeed). A group that is not on <paramref name="domain"/> is left alone with a warning (the
    /// kernel WARNs when the domain is not the group's): detach only what you attached.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="group"/> belongs to another core.</exception>
    public void DetachGroup(IommuDomain domain, IommuGroup group)
    {
        ArgumentNullException.ThrowIfNull(domain);
        if (ForeignGroup(group) is { } foreign) throw new ArgumentException(foreign.Reason, nameof(group));
        using (new GroupLockScope(group))
        {
            if (group.DomainLocked != domain)
            {
                AddLog($"WARNING: {group}: detach of {domain}, but the group is on {group.DomainLocked?.ToString() ?? "no domain"}");
                return;
            }
            SetCoreDomainLocked(group, domain);
        }
    }

    private void SetCoreDomainLocked(IommuGroup group, IommuDomain leaving)
    {
        group.AssertLocked();
        var target = group.OwnerLocked is not null ? group.BlockingDomainLocked : group.DefaultDomainLocked;
        var r = SetGroupDomainLocked(group, target, mustSucceed: true);
        if (!r.IsOk) AddLog($"WARNING: {group}: returning to the core domain failed: {r}");
        Raise(new GroupDetachedEvent(group, leaving, group.DomainLocked));
    }

    /// <summary><c>iommu_get_domain_for_dev</c>: the group's current domain, or null.</summary>
    public IommuDomain? GetDomainForDevice(IommuDevice device)
    {
        var g = device.Group;
        if (g is null) return null;
        using (new GroupLockScope(g)) return g.DomainLocked;
    }

    // ---------------------------------------------------------------- blocking domain (spec 4.2)

    /// <summary>
    /// <c>iommu_group_alloc_blocking_domain</c> (spec 4.2): the driver's static blocked domain, else an empty paging
    /// domain. Its allocation error propagates (ENOMEM for a null result); before 6.4 any failure was EINVAL.
    /// </summary>
    private IommuResult EnsureBlockingDomainLocked(IommuGroup group)
    {
        group.AssertLocked();
        if (group.BlockingDomainLocked is not null) return IommuResult.Ok;
        var first = group.DevicesLocked.Count > 0 ? group.DevicesLocked[0] : null;
        var ops = first?.IommuDriver;
        if (first is null || ops is null) return IommuResult.Fail(Errno.ENODEV, $"{group} is empty");
        if (ops.StaticBlockedDomain is { } s)
        {
            group.BlockingDomainLocked = s;
            return IommuResult.Ok;
        }
        // No static blocked domain: an empty paging domain that is never mapped blocks all DMA.
        var r = ops.AllocPagingDomain(first, IommuDomainType.Unmanaged, out var dom);
        if (!r.IsOk || dom is null)
            return IommuResult.Fail(Kernel.BlockingAllocErrorPropagates ? (r.IsOk ? Errno.ENOMEM : r.Errno) : Errno.EINVAL,
                r.Reason ?? $"{group}: no blocking domain could be allocated");
        dom.Type = IommuDomainType.Unmanaged;
        group.BlockingDomainLocked = dom;
        Raise(new DomainAllocatedEvent(dom, group));
        return IommuResult.Ok;
    }
}
