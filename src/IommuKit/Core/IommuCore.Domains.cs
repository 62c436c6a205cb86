using IommuKit.Paging;

namespace IommuKit.Core;

public sealed partial class IommuCore
{
    private const string DirectRefusal =
        "Firmware has requested this device have a 1:1 IOMMU mapping, rejecting configuring the device without a 1:1 mapping. Contact your platform vendor.";

    // ---------------------------------------------------------------- set_group_domain (spec 4.3)

    /// <summary>
    /// <c>__iommu_group_set_domain_internal</c>: attach every device, in list order, to <paramref name="domain"/>.
    /// Without <paramref name="mustSucceed"/> a failure reverts every device processed so far (the failing one
    /// included) to the old domain and leaves the group's domain unchanged.
    /// </summary>
    private IommuResult SetGroupDomainLocked(IommuGroup group, IommuDomain? domain, bool mustSucceed)
    {
        group.AssertLocked();
        var old = group.DomainLocked;
        if (domain == old && !SplitActiveLocked(group)) return IommuResult.Ok; // spec 4.3 step 1 (a split group still gathers its units)
        if (domain is null) // spec 4.3 step 2: WARN + EINVAL
        {
            AddLog($"WARNING: {group}: set_group_domain with no domain");
            return IommuResult.Fail(Errno.EINVAL, $"{group}: no domain to attach");
        }
        var devices = group.DevicesLocked;
        IommuResult remembered = IommuResult.Ok;
        for (int i = 0; i < devices.Count; i++)
        {
            var r = SetDeviceDomainLocked(group, devices[i], domain, ExpectedDomainLocked(group, devices[i]) ?? old, mustSucceed);
            if (r.IsOk) continue;
            if (mustSucceed)
            {
                if (remembered.IsOk) remembered = r;
                continue;
            }
            // err_revert: put every device up to and including the failing one back on the old domain.
            if (old is not null)
            {
                for (int j = 0; j <= i; j++)
                {
                    var back = SetDeviceDomainLocked(group, devices[j], ExpectedDomainLocked(group, devices[j]) ?? old, null, mustSucceed: true);
                    if (!back.IsOk) AddLog($"WARNING: {devices[j].Name}: could not restore {old} after a failed switch: {back}");
                }
            }
            return r;
        }
        EndSplitLocked(group); // every requester-ID unit is on the group's new domain
        group.DomainLocked = domain;
        Raise(new GroupAttachedEvent(group, domain, old));
        return remembered;
    }

    /// <summary>
    /// <c>__iommu_device_set_domain</c> (spec 4.3): a device that requires direct mappings refuses a blocking domain
    /// with EINVAL (6.4+), then the driver's attach; with <paramref name="mustSucceed"/> a failed device is parked in
    /// the blocking domain.
    /// </summary>
    private IommuResult SetDeviceDomainLocked(IommuGroup group, IommuDevice dev, IommuDomain domain, IommuDomain? old, bool mustSucceed)
    {
        group.AssertLocked();
        if (dev.AttachedDomain == domain) return IommuResult.Ok;
        if (Kernel.CoreRefusesBlockingForDirect && dev.RequireDirect &&
            (domain.Type == IommuDomainType.Blocked || domain == group.BlockingDomainLocked))
        {
            AddLog($"{dev.Name}: {DirectRefusal}");
            return IommuResult.Fail(Errno.EINVAL, $"{dev.Name}: firmware requires a 1:1 mapping (direct reserved region), so the device cannot be put in a blocking or user domain");
        }
        if (domain.Freed) throw new InvalidOperationException($"{domain} was freed and cannot be attached");
        var ops = dev.IommuDriver ?? throw new InvalidOperationException($"{dev.Name} has no IOMMU driver");
        var r = ops.AttachDevice(domain, dev, old ?? dev.AttachedDomain);
        if (r.IsOk)
        {
            dev.AttachedDomain = domain;
            return r;
        }
        if (r.Reason is null) r = IommuResult.Fail(r.Errno, $"{dev.Name}: {ops.Name} failed to attach {domain}: {r.Errno.Describe()}");
        if (mustSucceed && group.BlockingDomainLocked is { } blk && blk != domain)
        {
            // Avoid a use-after-free of the old domain: park the device in the blocking domain.
            if (ops.AttachDevice(blk, dev, dev.AttachedDomain).IsOk) dev.AttachedDomain = blk;
        }
        return r;
    }

    // ---------------------------------------------------------------- allocation (spec 4.2)

    /// <summary>
    /// <c>__iommu_group_domain_alloc</c> (spec 4.2): paging types from the driver (ENOMEM for a null result), identity
    /// from the static domain or the driver (EOPNOTSUPP without one), any other type EINVAL.
    /// </summary>
    private IommuResult AllocTypeLocked(IommuGroup group, IommuDomainType type, out IommuDomain? domain)
    {
        group.AssertLocked();
        domain = null;
        var dev = group.DevicesLocked.Count > 0 ? group.DevicesLocked[0] : null;
        var ops = dev?.IommuDriver;
        if (dev is null || ops is null) return IommuResult.Fail(Errno.ENODEV, $"{group}: no device to allocate a domain for");
        switch (type)
        {
            case IommuDomainType.Dma:
            case IommuDomainType.DmaFq:
            case IommuDomainType.Unmanaged:
            {
                var r = ops.AllocPagingDomain(dev, type, out domain);
                if (!r.IsOk) return r.Reason is null ? IommuResult.Fail(r.Errno, $"{dev.Name}: {ops.Name} could not allocate a {type.SysfsName()} domain") : r;
                if (domain is null) return IommuResult.Fail(Errno.ENOMEM, $"{dev.Name}: {ops.Name} returned no domain");
                domain.Type = type; // the core sets the type; drivers allocate DMA-FQ like DMA (spec 4.1)
                Raise(new DomainAllocatedEvent(domain, group));
                return IommuResult.Ok;
            }
            case IommuDomainType.Identity:
            {
                if (ops.StaticIdentityDomain is { } s) { domain = s; return IommuResult.Ok; }
                var r = ops.AllocIdentityDomain(dev, out domain);
                if (!r.IsOk || domain is null)
                    return IommuResult.Fail(r.IsOk ? Errno.EOPNOTSUPP : r.Errno, r.Reason ?? $"{dev.Name}: {ops.Name} cannot provide an identity domain");
                return IommuResult.Ok;
            }
            default:
                return IommuResult.Fail(Errno.EINVAL, $"{group}: a default domain cannot be of type {type.SysfsName()}");
        }
    }

    /// <summary>
    /// <c>iommu_group_alloc_default_domain</c> (current, spec 4.2 default domain steps 1-3): exact type for a request,
    /// else the global type with the fallback to DMA; a failed global DMA is EINVAL (the original error is lost).
    /// </summary>
    private IommuResult AllocDefaultDomainLocked(IommuGroup group, IommuDomainType req, out IommuDomain? domain)
    {
        group.AssertLocked();
        if (req != IommuDomainType.None) return AllocOrReuseLocked(group, req, out domain);
        if (group.DevicesLocked.Count > 0 && group.DevicesLocked[0].IommuDriver?.StaticDefaultDomain is { } st)
            return AllocOrReuseLocked(group, st.Type, out domain);
        var global = DefaultDomainType;
        var r = AllocOrReuseLocked(group, global, out domain);
        if (r.IsOk) return r;
        if (global == IommuDomainType.Dma) return IommuResult.Fail(Errno.EINVAL, r.Reason ?? $"{group}: no DMA domain");
        var r2 = AllocOrReuseLocked(group, IommuDomainType.Dma, out domain);
        if (r2.IsOk)
            AddLog($"iommu: Failed to allocate default IOMMU domain of type {(int)global} for group {group.Name ?? "(null)"} - Falling back to IOMMU_DOMAIN_DMA");
        return r2;
    }

    private IommuResult AllocOrReuseLocked(IommuGroup group, IommuDomainType type, out IommuDomain? domain)
    {
        group.AssertLocked();
        // A static legacy default domain: the request must be its type (spec 4.2 default domain step 1).
        if (group.DevicesLocked.Count > 0 && group.DevicesLocked[0].IommuDriver?.StaticDefaultDomain is { } st)
        {
            domain = st;
            return type == st.Type ? IommuResult.Ok : IommuResult.Fail(Errno.EINVAL, $"{group}: the driver only provides a {st.Type.LogName()} default domain");
        }
        // __iommu_group_alloc_default_domain: the current default of the same type is reused (a no-op change).
        if (group.DefaultDomainLocked is { } cur && cur.Type == type) { domain = cur; return IommuResult.Ok; }
        return AllocTypeLocked(group, type, out domain);
    }

    /// <summary><c>iommu_domain_free</c> for a domain the core allocated (static domains are never freed).</summary>
    private void FreeDomainInternal(IommuDomain? domain)
    {
        if (domain is null || domain.IsStatic || domain.Freed) return;
        domain.Freed = true;
        domain.Owner?.FreeDomain(domain);
        Raise(new DomainFreedEvent(domain));
    }

    // ---------------------------------------------------------------- default type (spec 5.2)

    /// <summary>
    /// <c>iommu_get_default_domain_type</c> (current): combine every device's requirement (a conflict logs and
    /// IDENTITY wins), an untrusted device forces strict DMA, a target must agree. -1 (as null) means EINVAL.
    /// </summary>
    private IommuDomainType? GroupDefaultTypeLocked(IommuGroup group, IommuDomainType target, out string? reason)
    {
        group.AssertLocked();
        reason = null;
        var driverType = IommuDomainType.None;
        IommuDevice? untrusted = null;
        foreach (var dev in group.DevicesLocked)
        {
            var ops = dev.IommuDriver!;
            // Drivers that declare a static default domain always choose it (iommu_get_def_domain_type).
            var t = ops.StaticDefaultDomain?.Type ?? ops.DefDomainType(dev);
            if (t != IommuDomainType.None && driverType != t)
            {
                if (driverType == IommuDomainType.None) driverType = t;
                else
                {
                    AddLog($"{dev.Name}: IOMMU driver error, requesting conflicting def_domain_type, {driverType.LogName()} and {t.LogName()}, for devices in group {group.Id}.");
                    if (t == IommuDomainType.Identity) driverType = t;
                }
            }
            if (dev.Bus == IommuBusKind.Pci && dev.Untrusted) untrusted ??= dev;
        }
        if (untrusted is not null)
        {
            if (driverType != IommuDomainType.None && driverType != IommuDomainType.Dma)
            {
                AddLog($"{untrusted.Name}: Device is not trusted, but driver is overriding group {group.Id} to {driverType.LogName()}, refusing to probe.");
                reason = $"{untrusted.Name} is untrusted (external-facing) and needs a strict DMA domain, but the driver requires {driverType.SysfsName()} for group {group.Id}";
                return null;
            }
            driverType = IommuDomainType.Dma;
        }
        if (target != IommuDomainType.None)
        {
            if (driverType != IommuDomainType.None && driverType != target)
            {
                var who = untrusted is not null && driverType == IommuDomainType.Dma ? $"{untrusted.Name} is untrusted and requires strict DMA" : $"a device of {group} requires {driverType.SysfsName()}";
                reason = $"{group}: cannot use {target.SysfsName()}: {who}";
                return null;
            }
            return target;
        }
        return driverType;
    }

    /// <summary>
    /// The 5.8–6.3 boot rule (<c>probe_get_default_domain_type</c>): the first device with a requirement sets it;
    /// a conflict logs "Device needs domain type…" and falls back to the global default for good.
    /// </summary>
    private IommuDomainType LegacyGroupTypeLocked(IommuGroup group)
    {
        group.AssertLocked();
        var type = IommuDomainType.None;
        IommuDevice? first = null;
        foreach (var dev in group.DevicesLocked)
        {
            var t = LegacyDeviceType(dev);
            if (t == IommuDomainType.None) continue;
            if (type != IommuDomainType.None && type != t)
            {
                AddLog($"{dev.Name}: Device needs domain type {t.LogName()}, but device {first!.Name} in the same iommu group requires type {type.LogName()} - using default");
                type = IommuDomainType.None;
            }
            if (first is null) { first = dev; type = t; }
        }
        return type;
    }

    /// <summary>The ≤6.3 <c>iommu_get_def_domain_type(dev)</c>: untrusted PCI → DMA, else the driver's requirement.</summary>
    private static IommuDomainType LegacyDeviceType(IommuDevice dev)
    {
        if (dev.Bus == IommuBusKind.Pci && dev.Untrusted) return IommuDomainType.Dma;
        var ops = dev.IommuDriver!;
        return ops.StaticDefaultDomain?.Type ?? ops.DefDomainType(dev);
    }

    // ---------------------------------------------------------------- setup_default_domain (spec 5.3)

    /// <summary>
    /// <c>iommu_setup_default_domain</c>: decide the type, allocate (or reuse) the default domain, map direct
    /// regions, attach every device, retry the direct mappings after attach when they failed before, and free the old
    /// default. On failure after the first setup the old default stays in place.
    /// </summary>
    private IommuResult SetupDefaultDomainLocked(IommuGroup group, IommuDomainType target, bool boot)
    {
        group.AssertLocked();
        IommuDomain? dom;
        if (Kernel.IdentityWinsConflicts || target != IommuDomainType.None)
        {
            var req = GroupDefaultTypeLocked(group, target, out var why);
            if (req is null) return IommuResult.Fail(Errno.EINVAL, why ?? $"{group}: conflicting domain type requirements"); // spec 5.3 step 1
            var r = AllocDefaultDomainLocked(group, req.Value, out dom);
            if (!r.IsOk) return r;
        }
        else
        {
            // ≤6.3: bus probe uses the combined group type, a single hot-plug probe the device's own (spec 5.2 older).
            var t = boot ? LegacyGroupTypeLocked(group) : LegacyDeviceType(group.DevicesLocked[0]);
            if (t == IommuDomainType.None) t = DefaultDomainType;
            var r = AllocOrReuseLocked(group, t, out dom);
            if (!r.IsOk && t != IommuDomainType.Dma)
            {
                r = AllocOrReuseLocked(group, IommuDomainType.Dma, out dom);
                if (r.IsOk) AddLog($"iommu: Failed to allocate default IOMMU domain of type {(int)t} for group {group.Name ?? "(null)"} - Falling back to IOMMU_DOMAIN_DMA");
            }
            // probe_alloc_default_domain / iommu_group_alloc_default_domain (≤6.3): no domain at all is ENOMEM.
            if (!r.IsOk) return IommuResult.Fail(Errno.ENOMEM, r.Reason ?? $"{group}: no default domain could be allocated");
        }
        return InstallDefaultDomainLocked(group, dom!);
    }

    private IommuResult InstallDefaultDomainLocked(IommuGroup group, IommuDomain dom)
    {
        group.AssertLocked();
        var oldDefault = group.DefaultDomainLocked;
        if (dom == oldDefault) return IommuResult.Ok;

        bool directFailed = false;
        foreach (var dev in group.DevicesLocked)
        {
            if (!CreateDirectMappingsLocked(group, dom, dev).IsOk && !directFailed)
            {
                directFailed = true;
                AddLog("iommu: IOMMU driver was not able to establish FW requested direct mapping.");
            }
        }

        var prevDomain = group.DomainLocked;
        group.DefaultDomainLocked = dom; // set before attaching (spec 5.3 step 6)
        if (prevDomain is null)
        {
            var r = SetGroupDomainLocked(group, dom, mustSucceed: true);
            if (!r.IsOk)
            {
                AddLog($"WARNING: {group}: first attach of the default domain failed: {r}");
                return r;
            }
        }
        else
        {
            var r = SetGroupDomainLocked(group, dom, mustSucceed: false);
            if (!r.IsOk)
            {
                FreeDomainInternal(dom);
                group.DefaultDomainLocked = oldDefault;
                return r;
            }
        }

        if (directFailed)
        {
            // Some drivers can only map once attached; retry now (spec 5.3 step 8).
            foreach (var dev in group.DevicesLocked)
            {
                var r = CreateDirectMappingsLocked(group, dom, dev);
                if (r.IsOk) continue;
                if (prevDomain is not null) SetGroupDomainLocked(group, prevDomain, mustSucceed: true);
                else group.DomainLocked = null;
                FreeDomainInternal(dom);
                group.DefaultDomainLocked = oldDefault;
                return r;
            }
        }
        if (oldDefault is not null && oldDefault != dom) FreeDomainInternal(oldDefault);
        return IommuResult.Ok;
    }

    /// <summary>
    /// <c>iommu_setup_dma_ops</c> for every device: a DMA-FQ default whose driver lacks deferred flush, or whose flush
    /// queue cannot be set up, becomes DMA (<c>iommu_dma_init_domain</c>).
    /// </summary>
    private void SetupDmaOpsLocked(IommuGroup group)
    {
        group.AssertLocked();
        var dom = group.DefaultDomainLocked;
        if (dom is null || dom.Type != IommuDomainType.DmaFq) return;
        foreach (var dev in group.DevicesLocked)
        {
            if (!dev.IommuDriver!.Capable(dev, IommuCapability.DeferredFlush) || !InitFlushQueueLocked(group, dom).IsOk)
            {
                dom.Type = IommuDomainType.Dma;
                return;
            }
        }
    }

    /// <summary><c>iommu_dma_init_fq</c>: idempotent; ENOMEM when the (injected) allocation fails (spec 6 step 5).</summary>
    private IommuResult InitFlushQueueLocked(IommuGroup group, IommuDomain dom)
    {
        group.AssertLocked();
        if (dom.FlushQueueReady) return IommuResult.Ok;
        if (FlushQueueInitFault?.Invoke(dom) == true)
        {
            AddLog("iommu: iova flush queue initialization failed");
            return IommuResult.Fail(Errno.ENOMEM, $"{group}: the flush queue could not be allocated");
        }
        dom.FlushQueueReady = true;
        return IommuResult.Ok;
    }

    // ---------------------------------------------------------------- direct mappings (spec 8.3)

    [ThreadStatic] private static List<ReservedRegion>? t_directScratch;

    /// <summary>
    /// <c>iommu_create_device_direct_mappings</c>: records <c>require_direct</c> for a DIRECT region whatever the
    /// domain, and maps DIRECT/DIRECT_RELAXABLE regions 1:1 into DMA-API domains, page by page skipping what is mapped
    /// already (the start is rounded up: a misaligned start loses its first partial page).
    /// </summary>
    private IommuResult CreateDirectMappingsLocked(IommuGroup group, IommuDomain domain, IommuDevice dev)
    {
        group.AssertLocked();
        ulong pg = domain.MinPageSize;
        if (domain.Type.IsDmaApi() && pg == 0) // spec 8.3 step 1: WARN + EINVAL
        {
            AddLog($"WARNING: {dev.Name}: DMA domain without a page size");
            return IommuResult.Fail(Errno.EINVAL, $"{dev.Name}: {domain} has no page size");
        }
        // A scratch list per thread (the kernel's is a local list freed on return), taken out while in use so a driver
        // callback that re-entered here would get a list of its own.
        var regions = t_directScratch ?? new List<ReservedRegion>();
        t_directScratch = null;
        try
        {
            dev.IommuDriver!.GetReservedRegions(dev, regions);
            foreach (var region in regions)
            {
                if (region.Type == ReservedRegionType.Direct) dev.RequireDirect = true;
                if (region.Type is not (ReservedRegionType.Direct or ReservedRegionType.DirectRelaxable) || !domain.Type.IsDmaApi()) continue;
                var r = MapDirectRegion(domain, region, pg);
                if (!r.IsOk) return IommuResult.Fail(r.Errno, $"{dev.Name}: direct region {region} could not be mapped into {domain}: {r.Errno.Describe()}");
            }
            return IommuResult.Ok;
        }
        finally
        {
            regions.Clear();
            if (regions.Capacity <= 64) t_directScratch = regions; // a firmware's long RMRR list is not kept per thread
        }
    }

    private static IommuResult MapDirectRegion(IommuDomain domain, ReservedRegion region, ulong pg)
    {
        // ALIGN(start, pg) and ALIGN(start + length, pg); a region reaching the top of the space is clipped to the last page.
        ulong mask = pg - 1;
        ulong start = region.Start > ulong.MaxValue - mask ? ulong.MaxValue & ~mask : (region.Start + mask) & ~mask;
        ulong endIncl = region.Last;
        ulong end = endIncl > ulong.MaxValue - pg ? ulong.MaxValue & ~mask : ((endIncl + 1 + mask) & ~mask);
        ulong runStart = 0, runLen = 0;
        for (ulong a = start; a < end; a += pg)
        {
            // At address 0 the query uses 1: a physical result of 0 would be ambiguous.
            bool mapped = domain.TryIovaToPhys(a == 0 ? 1 : a, out _);
            if (!mapped)
            {
                if (runLen == 0) runStart = a;
                runLen += pg;
                if (a + pg < end) continue;
            }
            if (runLen != 0)
            {
                var e = domain.Map(runStart, runStart, runLen, region.Prot);
                if (e != Errno.Ok) return IommuResult.Fail(e, "map failed");
                runLen = 0;
            }
        }
        return IommuResult.Ok;
    }
}
