namespace IommuKit.Core;

public sealed partial class IommuCore
{
    // ---------------------------------------------------------------- driver binding (spec 7: dma_configure hooks)

    /// <summary>
    /// Binds a device driver. A driver that uses the DMA API (not <c>driver_managed_dma</c>) goes through
    /// <c>iommu_device_use_default_domain</c>: EPROBE_DEFER while the group has no default domain (6.4+), EBUSY when
    /// the group is user-owned or not on its default domain while others use it (5.19+; before, nothing refuses a
    /// bind); otherwise the owner count grows.
    /// </summary>
    /// <param name="driverManagedDma">Null: the kernel's declaration for well-known drivers (vfio-pci, pci-stub, pcieport).</param>
    public IommuResult BindDriver(IommuDevice device, string driver, bool? driverManagedDma = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(driver);
        bool managed = driverManagedDma ?? IommuDevice.IsDriverManagedDma(driver);
        using (new DeviceLockScope(device))
        {
            // __driver_probe_device (drivers/base/dd.c): a device that has a driver is EBUSY.
            if (device.DriverName is { } cur) return IommuResult.Fail(Errno.EBUSY, $"{device.Name}: already bound to {cur}");
            var group = device.Group;
            if (group is null)
            {
                device.DriverName = driver;
                device.DriverManagedDma = managed;
                return IommuResult.Ok;
            }
            using (new GroupLockScope(group))
            {
                if (!managed)
                {
                    var r = UseDefaultDomainLocked(group, device, driver);
                    if (!r.IsOk) return r;
                }
                device.DriverName = driver;
                device.DriverManagedDma = managed;
                return IommuResult.Ok;
            }
        }
    }

    private IommuResult UseDefaultDomainLocked(IommuGroup group, IommuDevice device, string driver)
    {
        group.AssertLocked();
        // iommu_device_use_default_domain (spec 7 table): EPROBE_DEFER before the default domain exists (6.4+).
        if (Kernel.DefersUseBeforeDefaultDomain && group.DefaultDomainLocked is null)
            return IommuResult.Fail(Errno.EPROBE_DEFER, $"{device.Name}: {group} has no default domain yet (IOMMU probe still running); {driver} must probe again later");
        if (!Kernel.HasDmaOwnership)
        {
            // Before 5.19 there was no use_default_domain: the driver core never asked the IOMMU core, so nothing
            // refuses the bind. VFIO's BOUND_DRIVER notifier (vfio_iommu_group_notifier) checks vfio_dev_viable only
            // afterwards, and BUG_ON()s when the group is in use and the device is not allowed.
            if (group.OwnerLocked is not null && !VfioAllowsDriverBefore519(device, driver))
                AddLog($"vfio: {device.Name}: Device bound to driver {driver} while group {group.Id} is in use: kernel BUG (BUG_ON(vfio_group_nb_verify) in vfio_iommu_group_notifier)");
            group.OwnerCntLocked++;
            return IommuResult.Ok;
        }
        // Spec 7 table: EBUSY while others use the group and it is owned or off its default domain (not checked at 0).
        if (group.OwnerCntLocked > 0 && (group.DomainLocked != group.DefaultDomainLocked || group.OwnerLocked is not null))
        {
            string why = group.OwnerLocked is not null
                ? $"{group} is owned by a user (VFIO/iommufd)"
                : $"{group} is attached to {group.DomainLocked}, not its default domain";
            return IommuResult.Fail(Errno.EBUSY, $"{device.Name}: {driver} uses the DMA API but {why}");
        }
        group.OwnerCntLocked++;
        return IommuResult.Ok;
    }

    /// <summary>Unbinds the device's driver (<c>iommu_device_unuse_default_domain</c> for a DMA-API driver). No-op when unbound.</summary>
    public void UnbindDriver(IommuDevice device)
    {
        using (new DeviceLockScope(device)) UnbindDeviceLocked(device);
    }

    private void UnbindDeviceLocked(IommuDevice device)
    {
        System.Diagnostics.Debug.Assert(Monitor.IsEntered(device.DeviceLock));
        if (device.DriverName is null) return;
        var group = device.Group;
        if (group is null)
        {
            device.DriverName = null;
            device.DriverManagedDma = false;
            return;
        }
        using (new GroupLockScope(group))
        {
            // iommu_device_unuse_default_domain (spec 7 table), for DMA-API drivers: warn and do nothing at owner count 0.
            if (!device.DriverManagedDma)
            {
                if (group.OwnerCntLocked == 0) AddLog($"WARNING: {device.Name}: unuse_default_domain with owner_cnt 0");
                else group.OwnerCntLocked--;
            }
            device.DriverName = null;
            device.DriverManagedDma = false;
        }
    }

    // ---------------------------------------------------------------- user ownership (spec 7)

    /// <summary>EINVAL when <paramref name="group"/> was made by another core (a caller mixing two cores); else null.</summary>
    private IommuResult? ForeignGroup(IommuGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        return ReferenceEquals(group.Core, this) ? null
            : IommuResult.Fail(Errno.EINVAL, $"{group} belongs to another IOMMU core; a core only acts on its own groups");
    }

    /// <summary>
    /// <see cref="GroupClaimDmaOwner"/> with a typed owner: on success <paramref name="ownership"/> is the claim, and
    /// disposing it releases the group (once). The errors are GroupClaimDmaOwner's.
    /// </summary>
    public IommuResult ClaimDmaOwnership(IommuGroup group, out DmaOwnership? ownership)
    {
        var claim = new DmaOwnership(this, group);
        var r = GroupClaimDmaOwner(group, claim);
        ownership = r.IsOk ? claim : null;
        return r;
    }

    /// <summary>
    /// <c>iommu_group_claim_dma_owner</c>: EINVAL for a null cookie; EPERM while the owner count is not 0 (a DMA-API
    /// driver is bound, or it is claimed already, even by the same cookie); EBUSY when an API user's domain is
    /// attached; EINVAL when a device requires direct mappings. The group then sits in its blocking domain.
    /// </summary>
    public IommuResult GroupClaimDmaOwner(IommuGroup group, object cookie)
    {
        // Spec 7 table / 12: a null cookie is EINVAL; any owner count (even the same cookie) is EPERM.
        if (cookie is null) return IommuResult.Fail(Errno.EINVAL, $"{group}: claim without an owner cookie");
        if (ForeignGroup(group) is { } foreign) return foreign;
        using (new GroupLockScope(group))
        {
            if (!Kernel.HasDmaOwnership) return ClaimViableGroupLocked(group, cookie);
            if (group.OwnerCntLocked != 0)
                return IommuResult.Fail(Errno.EPERM, $"{group}: {OwnerDescriptionLocked(group)}");
            return TakeOwnershipLocked(group, cookie);
        }
    }

    /// <summary>
    /// <c>iommu_device_claim_dma_owner</c>: ENODEV without a group; with the owner count set, the same cookie adds a
    /// claim and any other owner (a kernel driver counts as owner "null") gives EPERM.
    /// </summary>
    public IommuResult DeviceClaimDmaOwner(IommuDevice device, object cookie)
    {
        // Spec 7 table / 12: null cookie EINVAL, no group ENODEV, another owner (a kernel driver is owner "null") EPERM.
        if (cookie is null) return IommuResult.Fail(Errno.EINVAL, $"{device.Name}: claim without an owner cookie");
        var group = device.Group;
        if (group is null) return IommuResult.Fail(Errno.ENODEV, $"{device.Name}: not in an IOMMU group");
        using (new GroupLockScope(group))
        {
            if (device.Group != group) return IommuResult.Fail(Errno.ENODEV, $"{device.Name}: left its group");
            if (group.OwnerCntLocked != 0)
            {
                if (!ReferenceEquals(group.OwnerLocked, cookie))
                    return IommuResult.Fail(Errno.EPERM, $"{device.Name}: {OwnerDescriptionLocked(group)}");
                group.OwnerCntLocked++;
                return IommuResult.Ok;
            }
            return TakeOwnershipLocked(group, cookie);
        }
    }

    /// <summary>
    /// Before 5.19 there was no ownership API: VFIO used a group only when it was viable (<c>vfio_dev_viable</c>,
    /// drivers/vfio/vfio.c up to 5.18), every device driver-less, bound to a vfio driver, or allowed by
    /// <see cref="VfioAllowsDriverBefore519"/>; otherwise EINVAL (the error of <c>vfio_group_get_device_fd</c> and
    /// <c>vfio_group_add_container_user</c> for a non-viable group). The owner count then counts the claim plus any
    /// kernel drivers, which nothing prevented.
    /// </summary>
    private IommuResult ClaimViableGroupLocked(IommuGroup group, object cookie)
    {
        group.AssertLocked();
        // vfio_group_fops_open: one open of the group file at a time, a second one is EBUSY.
        if (group.OwnerLocked is not null) return IommuResult.Fail(Errno.EBUSY, $"{group} is already in use by VFIO");
        foreach (var d in group.DevicesLocked)
        {
            if (d.DriverName is { } n && !IommuDevice.IsVfioDriver(n) && !VfioAllowsDriverBefore519(d, n))
                return IommuResult.Fail(Errno.EINVAL, $"{group} is not viable: {d.Name} is bound to {n} (Linux before 5.19 needs every device unbound, bound to vfio-pci or pci-stub, or a bridge)");
        }
        uint kernelUsers = group.OwnerCntLocked;
        group.OwnerCntLocked = 0;
        var r = TakeOwnershipLocked(group, cookie);
        group.OwnerCntLocked += kernelUsers;
        return r;
    }

    /// <summary>
    /// <c>vfio_dev_driver_allowed</c> (drivers/vfio/vfio.c, 3.6-5.18): a PCI device whose header is not type 0 (a bridge,
    /// <c>hdr_type != PCI_HEADER_TYPE_NORMAL</c>) passes whatever its driver; any other device only with a driver on
    /// <c>vfio_driver_allowed[]</c>, which holds just <c>pci-stub</c> (not <c>pcieport</c>: ports pass by header type).
    /// </summary>
    private static bool VfioAllowsDriverBefore519(IommuDevice device, string driver) =>
        IommuDevice.VfioDriverAllowedBefore519(device.Pci, driver);

    private string OwnerDescriptionLocked(IommuGroup group)
    {
        group.AssertLocked();
        if (group.OwnerLocked is not null) return $"already claimed by another owner ({group.OwnerCntLocked} claim(s))";
        var bound = new List<string>();
        foreach (var d in group.DevicesLocked)
        {
            if (d.DriverName is { } n && !d.DriverManagedDma) bound.Add($"{d.Name} ({n})");
        }
        return bound.Count == 0
            ? $"in use by kernel DMA (owner count {group.OwnerCntLocked})"
            : $"in use by kernel drivers that use the DMA API: {string.Join(", ", bound)}; unbind them (or bind vfio-pci) first";
    }

    /// <summary>
    /// <c>__iommu_take_dma_ownership</c> (spec 7): EBUSY off the default domain; the blocking domain's allocation and
    /// attach errors propagate (EINVAL for a device with direct regions) and leave the group unowned on its old domain.
    /// </summary>
    private IommuResult TakeOwnershipLocked(IommuGroup group, object cookie)
    {
        group.AssertLocked();
        if (group.DomainLocked is not null && group.DomainLocked != group.DefaultDomainLocked)
            return IommuResult.Fail(Errno.EBUSY, $"{group} is attached to {group.DomainLocked}, not its default domain");
        var r = EnsureBlockingDomainLocked(group);
        if (!r.IsOk) return r;
        r = SetGroupDomainLocked(group, group.BlockingDomainLocked, mustSucceed: false);
        if (!r.IsOk) return r;
        group.OwnerLocked = cookie;
        group.OwnerCntLocked++;
        Raise(new OwnershipChangedEvent(group, cookie, Claimed: true));
        return IommuResult.Ok;
    }

    /// <summary><c>iommu_group_release_dma_owner</c>: the group returns to its default domain.</summary>
    /// <exception cref="ArgumentException"><paramref name="group"/> belongs to another core.</exception>
    public void GroupReleaseDmaOwner(IommuGroup group)
    {
        if (ForeignGroup(group) is { } foreign) throw new ArgumentException(foreign.Reason, nameof(group));
        using (new GroupLockScope(group)) ReleaseOwnershipLocked(group);
    }

    /// <summary><c>iommu_device_release_dma_owner</c>: drops one claim; the last one releases the group.</summary>
    public void DeviceReleaseDmaOwner(IommuDevice device)
    {
        var group = device.Group;
        if (group is null) return;
        using (new GroupLockScope(group))
        {
            if (group.OwnerCntLocked > 1) { group.OwnerCntLocked--; return; }
            ReleaseOwnershipLocked(group);
        }
    }

    /// <summary><c>__iommu_release_dma_ownership</c> (spec 7): warn when not owned; else back to the default domain (must succeed).</summary>
    private void ReleaseOwnershipLocked(IommuGroup group)
    {
        group.AssertLocked();
        if (group.OwnerCntLocked == 0 || group.OwnerLocked is null)
        {
            AddLog($"WARNING: {group}: release of DMA ownership that is not held");
            return;
        }
        group.OwnerCntLocked = 0;
        if (!Kernel.HasDmaOwnership)
        {
            // Before 5.19 kernel drivers may have bound meanwhile; they keep using the default domain.
            foreach (var d in group.DevicesLocked) if (d.DriverName is not null && !d.DriverManagedDma) group.OwnerCntLocked++;
        }
        var owner = group.OwnerLocked;
        group.OwnerLocked = null;
        var r = SetGroupDomainLocked(group, group.DefaultDomainLocked, mustSucceed: true);
        if (!r.IsOk) AddLog($"WARNING: {group}: restoring the default domain failed: {r}");
        Raise(new OwnershipChangedEvent(group, owner, Claimed: false));
    }

    /// <summary><c>iommu_group_dma_owner_claimed</c>: owner count not 0 (true with only kernel drivers bound, too).</summary>
    public bool DmaOwnerClaimed(IommuGroup group)
    {
        using (new GroupLockScope(group)) return group.OwnerCntLocked != 0;
    }
}
