namespace IommuKit.Core;

public sealed partial class IommuCore
{
    // ---------------------------------------------------------------- reserved regions (spec 8.2, 8.4)

    /// <summary>
    /// <c>iommu_get_group_resv_regions</c>: every device's regions (stopping at the first device without an IOMMU),
    /// inserted and merged with the kernel's rule, ordered by (start, type).
    /// </summary>
    public IReadOnlyList<ReservedRegion> GroupReservedRegions(IommuGroup group)
    {
        using (new GroupLockScope(group)) return GroupReservedRegionsLocked(group);
    }

    private List<ReservedRegion> GroupReservedRegionsLocked(IommuGroup group)
    {
        group.AssertLocked();
        var list = new List<ReservedRegion>();
        var scratch = new List<ReservedRegion>();
        foreach (var dev in group.DevicesLocked)
        {
            if (dev.IommuDriver is not { } ops) break;
            scratch.Clear();
            ops.GetReservedRegions(dev, scratch);
            foreach (var r in scratch) ReservedRegionList.Insert(list, r, Kernel.ReservedRegionsCoalesceAdjacent);
        }
        return list;
    }

    /// <summary>The text of <c>/sys/kernel/iommu_groups/N/reserved_regions</c>: one <c>0x%016llx 0x%016llx %s</c> line per region.</summary>
    public IReadOnlyList<string> ReadReservedRegions(IommuGroup group)
    {
        var regions = GroupReservedRegions(group);
        var lines = new string[regions.Count];
        for (int i = 0; i < lines.Length; i++) lines[i] = regions[i].ToString();
        return lines;
    }

    /// <summary>
    /// The ranges a DMA-API domain of <paramref name="device"/> keeps out of its IOVA space (spec 8.4): every reserved
    /// region of the device except SW_MSI.
    /// </summary>
    public IReadOnlyList<ReservedRegion> IovaReservedRegions(IommuDevice device)
    {
        var ops = device.IommuDriver;
        var list = new List<ReservedRegion>();
        if (ops is null) return list;
        var all = new List<ReservedRegion>();
        ops.GetReservedRegions(device, all);
        foreach (var r in all) if (r.Type != ReservedRegionType.SwMsi) list.Add(r);
        return list;
    }

    // ---------------------------------------------------------------- sysfs type (spec 6)

    /// <summary>The text of <c>/sys/kernel/iommu_groups/N/type</c> without the newline (<c>unknown</c> without a default domain).</summary>
    public string ReadType(IommuGroup group)
    {
        using (new GroupLockScope(group))
        {
            // Spec 6 read: the default domain's type name, "unknown" without one (or for PLATFORM). Before 5.15 there is
            // no DMA_FQ type, so a lazy default is a DMA domain here (IommuDefaults never picks DmaFq there).
            var d = group.DefaultDomainLocked;
            return d is null ? "unknown" : d.Type.SysfsName();
        }
    }

    /// <summary>
    /// A write to <c>/sys/kernel/iommu_groups/N/type</c> (<c>iommu_group_store_type</c>, spec 6 and 12) with the rules of
    /// <see cref="Kernel"/>: EACCES without CAP_SYS_ADMIN+CAP_SYS_RAWIO (or before 5.11), EINVAL for a bad string or no
    /// default domain; then 6.4+: DMA→DMA-FQ in place, else EPERM while the owner count is not 0 or the group is
    /// empty, else <c>iommu_setup_default_domain</c>; 5.11–6.3: EINVAL for more than one device, EBUSY while a driver
    /// is bound (except DMA→DMA-FQ), then <c>iommu_change_dev_def_domain</c>. A failure leaves the old domain in place.
    /// </summary>
    /// <param name="value">The bytes written (one trailing newline tolerated).</param>
    /// <param name="capable">The writer has CAP_SYS_ADMIN and CAP_SYS_RAWIO.</param>
    public IommuResult StoreType(IommuGroup group, string value, bool capable = true)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (ForeignGroup(group) is { } foreign) return foreign;
        var before = group.Snapshot();
        var r = StoreTypeCore(group, value, capable);
        if (r.IsOk && group.Snapshot() is { DefaultDomain: { } after } now &&
            (after != before.DefaultDomain || now.DefaultType != before.DefaultType))
            Raise(new DefaultTypeChangedEvent(group, before.DefaultType, now.DefaultType, after));
        return r;
    }

    private IommuResult StoreTypeCore(IommuGroup group, string value, bool capable)
    {
        if (Kernel.TypeWrites == TypeWriteRules.ReadOnly)
            return IommuResult.Fail(Errno.EACCES, $"{group}: the type file is read-only before Linux 5.11");
        if (!capable) return IommuResult.Fail(Errno.EACCES, $"{group}: writing type needs CAP_SYS_ADMIN and CAP_SYS_RAWIO");
        if (group.DefaultDomain is null) return IommuResult.Fail(Errno.EINVAL, $"{group} has no default domain");
        // Spec 6 step 3: sysfs_streq against the known strings, else EINVAL; "DMA-FQ" is one of them from 5.15 (DMA_FQ).
        if (!IommuDomainTypes.TryParseSysfsWrite(value, out var req) || (req == IommuDomainType.DmaFq && !Kernel.HasDmaFqType))
            return IommuResult.Fail(Errno.EINVAL, $"{group}: \"{value.TrimEnd('\n')}\" is not one of identity, DMA, {(Kernel.HasDmaFqType ? "DMA-FQ, " : "")}auto");
        return Kernel.TypeWrites == TypeWriteRules.OwnerCount ? StoreTypeCurrent(group, req) : StoreTypeLegacy(group, req);
    }

    private IommuResult StoreTypeCurrent(IommuGroup group, IommuDomainType req)
    {
        using (new GroupLockScope(group))
        {
            var def = group.DefaultDomainLocked;
            if (def is null) return IommuResult.Fail(Errno.EINVAL, $"{group} has no default domain");
            // Flush-queue upgrade shortcut: before any per-device check, drivers bound or not, any group size.
            if (req == IommuDomainType.DmaFq && def.Type == IommuDomainType.Dma)
            {
                var fq = InitFlushQueueLocked(group, def);
                if (!fq.IsOk) return fq;
                def.Type = IommuDomainType.DmaFq;
                return IommuResult.Ok;
            }
            // Spec 6 step 6: an empty group, or a non-zero owner count (DMA-API drivers or a user owner), is EPERM.
            if (group.DevicesLocked.Count == 0) return IommuResult.Fail(Errno.EPERM, $"{group} has no devices");
            if (group.OwnerCntLocked != 0) return IommuResult.Fail(Errno.EPERM, $"{group} is {OwnerDescriptionLocked(group)}");
            var r = SetupDefaultDomainLocked(group, req, boot: false);
            if (!r.IsOk) return r;
            SetupDmaOpsLocked(group);
            return IommuResult.Ok;
        }
    }

    private IommuResult StoreTypeLegacy(IommuGroup group, IommuDomainType req)
    {
        IommuDevice dev;
        using (new GroupLockScope(group))
        {
            if (group.DevicesLocked.Count != 1)
            {
                AddLog("iommu: Cannot change default domain: Group has more than one device");
                return IommuResult.Fail(Errno.EINVAL, $"{group} has {group.DevicesLocked.Count} devices; Linux before 6.4 changes the type of single-device groups only");
            }
            dev = group.DevicesLocked[0];
        }
        // The group lock is dropped before the device lock is taken (device lock → group lock order; the kernel does
        // the same to avoid a deadlock with driver release). Everything is re-checked under the group lock below.
        using (new DeviceLockScope(dev))
        {
            using (new GroupLockScope(group))
            {
                var def = group.DefaultDomainLocked;
                if (dev.DriverName is { } drv && !(req == IommuDomainType.DmaFq && def?.Type == IommuDomainType.Dma))
                {
                    AddLog("iommu: Device is still bound to driver");
                    return IommuResult.Fail(Errno.EBUSY, $"{dev.Name} is still bound to {drv}; Linux before 6.4 changes the type only with no driver bound");
                }
                return ChangeDevDefDomainLegacyLocked(group, dev, req);
            }
        }
    }

    /// <summary>
    /// <c>iommu_change_dev_def_domain</c> (5.11–6.3, spec 6 "Write, v5.11 to about v6.3"): the re-checks under the group
    /// lock (EBUSY off the default domain or for a changed device, EINVAL for a changed count or a conflicting
    /// requirement), DMA→DMA-FQ in place, else a new default with rollback.
    /// </summary>
    private IommuResult ChangeDevDefDomainLegacyLocked(IommuGroup group, IommuDevice dev, IommuDomainType req)
    {
        group.AssertLocked();
        if (group.DefaultDomainLocked != group.DomainLocked)
        {
            AddLog($"{dev.Name}: Group not assigned to default domain");
            return IommuResult.Fail(Errno.EBUSY, $"{group} is not on its default domain (a user domain or ownership is active)");
        }
        if (group.DevicesLocked.Count != 1)
            return IommuResult.Fail(Errno.EINVAL, $"{group}: Cannot change default domain: Group has more than one device");
        if (group.DevicesLocked[0] != dev)
        {
            AddLog($"{dev.Name}: Cannot change default domain: Device has been changed");
            return IommuResult.Fail(Errno.EBUSY, $"{group}: the device changed while the type was being written");
        }
        var prev = group.DefaultDomainLocked;
        if (prev is null) return IommuResult.Fail(Errno.EINVAL, $"{group} has no default domain");
        var devDef = LegacyDeviceType(dev);
        var type = req;
        if (req == IommuDomainType.None) type = devDef != IommuDomainType.None ? devDef : DefaultDomainType;
        else if (devDef != IommuDomainType.None && req != devDef)
        {
            AddLog($"{dev.Name}: Device cannot be in {req.LogName()} domain");
            return IommuResult.Fail(Errno.EINVAL, $"{dev.Name} cannot be in a {req.SysfsName()} domain: it requires {devDef.SysfsName()}{(dev.Untrusted ? " (untrusted device)" : "")}");
        }
        if (prev.Type == type) return IommuResult.Ok;
        if (type == IommuDomainType.DmaFq && prev.Type == IommuDomainType.Dma)
        {
            var fq = InitFlushQueueLocked(group, prev);
            if (fq.IsOk) prev.Type = IommuDomainType.DmaFq;
            return fq;
        }
        // iommu_group_alloc_default_domain: the type, else DMA with the "Falling back" warning, else ENOMEM.
        var r = AllocTypeLocked(group, type, out var dom);
        if (!r.IsOk && type != IommuDomainType.Dma)
        {
            r = AllocTypeLocked(group, IommuDomainType.Dma, out dom);
            if (r.IsOk) AddLog($"iommu: Failed to allocate default IOMMU domain of type {(int)type} for group {group.Name ?? "(null)"} - Falling back to IOMMU_DOMAIN_DMA");
        }
        if (!r.IsOk || dom is null) return IommuResult.Fail(Errno.ENOMEM, r.Reason ?? $"{group}: no domain");
        // Same as the current kernel from here: map, attach (rolls back), retry mappings, free the old one.
        r = InstallDefaultDomainLocked(group, dom);
        if (!r.IsOk) return r;
        SetupDmaOpsLocked(group);
        return IommuResult.Ok;
    }

    // ---------------------------------------------------------------- invariants

    /// <summary>
    /// Checks the core's invariants under each group's lock and returns one line per violation (empty when all hold):
    /// every device of a group is attached to the group's domain; a user-owned group has no DMA-API driver bound (5.19+)
    /// and at least one claim; a kernel-owned group's owner count equals its bound DMA-API drivers; the direct regions of
    /// every device are mapped 1:1 in a DMA-API default domain.
    /// </summary>
    public IReadOnlyList<string> CheckInvariants()
    {
        var problems = new List<string>();
        foreach (var group in Groups)
        {
            using (new GroupLockScope(group))
            {
                if (group.DevicesLocked.Count == 0) continue;
                int dmaBound = 0;
                foreach (var d in group.DevicesLocked)
                {
                    if (d.AttachedDomain != group.DomainLocked)
                        problems.Add($"{d.Name} is attached to {d.AttachedDomain?.ToString() ?? "nothing"} but {group} is on {group.DomainLocked?.ToString() ?? "nothing"}");
                    if (d.Group != group) problems.Add($"{d.Name} is listed in {group} but points at {d.Group}");
                    if (d.DriverName is not null && !d.DriverManagedDma) dmaBound++;
                }
                if (group.OwnerLocked is not null)
                {
                    // Before 5.19 nothing kept kernel drivers out of a group VFIO used (UseDefaultDomainLocked).
                    if (dmaBound != 0 && Kernel.HasDmaOwnership) problems.Add($"{group} is user-owned but {dmaBound} DMA-API driver(s) are bound");
                    if (group.OwnerCntLocked == 0) problems.Add($"{group} has an owner but owner_cnt 0");
                    if (group.DomainLocked == group.DefaultDomainLocked && group.DefaultDomainLocked != group.BlockingDomainLocked)
                        problems.Add($"{group} is user-owned but on its default domain");
                }
                else if (group.OwnerCntLocked != (uint)dmaBound)
                    problems.Add($"{group}: owner_cnt {group.OwnerCntLocked} but {dmaBound} DMA-API driver(s) bound");
                if (group.DefaultDomainLocked is { } def && def.Type.IsDmaApi())
                {
                    var regions = new List<ReservedRegion>();
                    foreach (var d in group.DevicesLocked)
                    {
                        regions.Clear();
                        d.IommuDriver?.GetReservedRegions(d, regions);
                        foreach (var r in regions)
                        {
                            if (r.Type is not (ReservedRegionType.Direct or ReservedRegionType.DirectRelaxable)) continue;
                            if (!IsDirectMapped(def, r)) problems.Add($"{d.Name}: direct region {r} is not mapped 1:1 in {def}");
                        }
                    }
                }
            }
        }
        return problems;
    }

    private static bool IsDirectMapped(IommuDomain dom, ReservedRegion r)
    {
        ulong pg = dom.MinPageSize;
        if (pg == 0) return false;
        ulong mask = pg - 1;
        if (r.Start > ulong.MaxValue - mask) return true;
        ulong start = (r.Start + mask) & ~mask;
        for (ulong a = start; a <= r.Last && a >= start; a += pg)
        {
            ulong q = a == 0 ? 1 : a;
            if (!dom.TryIovaToPhys(q, out var phys) || phys != q) return false;
            if (a > ulong.MaxValue - pg) break;
        }
        return true;
    }
}
