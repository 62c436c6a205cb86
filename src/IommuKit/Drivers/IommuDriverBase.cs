using System.Collections.Concurrent;
using IommuKit.Core;
using IommuKit.Paging;
using IommuKit.Pci;
using IommuKit.Simulation;

namespace IommuKit.Drivers;

/// <summary>
/// Shared plumbing of the reference drivers: paging domains over an <see cref="IIoPageTable"/> factory, the
/// per-device "context entry" (which domain each device translates through), static identity/blocked domains,
/// and fault injection for tests. The core only sees <see cref="IIommuDriver"/>.
/// </summary>
public abstract class IommuDriverBase : IIommuDriver
{
    private readonly Func<IoPageTableFormat, IIoPageTable>? _pageTables;
    private readonly ConcurrentDictionary<IommuDevice, IommuDomain> _contexts = new();

    protected IommuDriverBase(string name, Func<IoPageTableFormat, IIoPageTable>? pageTables)
    {
        Name = name;
        _pageTables = pageTables;
    }

    public string Name { get; }

    /// <summary>The core this driver registered with (set by <see cref="Init"/>).</summary>
    protected IommuCore? Core { get; private set; }

    /// <summary>The kernel generation (6.12 until registered).</summary>
    protected KernelVersion Kernel => Core?.Kernel ?? KernelVersion.V6_12;

    /// <summary>Fault injection: return an errno other than Ok to make <see cref="AttachDevice"/> fail for that device and domain.</summary>
    public Func<IommuDevice, IommuDomain, Errno>? AttachFault { get; set; }

    /// <summary>Fault injection: return an errno other than Ok to make domain allocation of that type fail.</summary>
    public Func<IommuDevice, IommuDomainType, Errno>? AllocFault { get; set; }

    /// <summary>
    /// Emulated hardware units by unit name (<see cref="UnitName"/>). When a device's unit is here, attach programs its
    /// context entry (keyed by requester ID: the PCI RID, or a platform device's first stream ID) and release clears it;
    /// otherwise attach is driver state only (<see cref="Contexts"/>).
    /// </summary>
    public IReadOnlyDictionary<string, IommuHardware>? Hardware { get; set; }

    /// <summary>The hardware unit a device is behind, as named in <see cref="Hardware"/>; null when unknown.</summary>
    public virtual string? UnitName(IommuDevice device) => device.Instance;

    private IommuHardware? HardwareOf(IommuDevice device, out ushort requesterId)
    {
        requesterId = device.Pci is { } p ? p.Address.RequesterId : device.StreamIds.Count > 0 ? (ushort)device.StreamIds[0] : (ushort)0;
        if (Hardware is null || UnitName(device) is not { } unit) return null;
        if (device.Pci is null && device.StreamIds.Count == 0) return null;
        return Hardware.GetValueOrDefault(unit);
    }

    /// <summary>The context entry a domain programs: identity, blocked, or translated through its page table.</summary>
    protected static IommuContext ContextFor(IommuDomain domain) => domain.Type switch
    {
        IommuDomainType.Identity or IommuDomainType.Platform => IommuContext.Identity,
        _ when domain.Type.IsPaging() && domain.PageTable is { } t => IommuContext.Translated(domain.Id, t),
        _ => IommuContext.Blocked,
    };

    /// <summary>What each device's context entry points at (driver state of attach), by device.</summary>
    public IReadOnlyDictionary<IommuDevice, IommuDomain> Contexts => _contexts;

    /// <summary>The page-table format a new paging domain of this driver uses.</summary>
    protected abstract IoPageTableFormat PageTableFormat { get; }

    public virtual void Init(IommuCore core) => Core = core;

    public abstract IommuResult ProbeDevice(IommuDevice device);

    public virtual void ReleaseDevice(IommuDevice device)
    {
        _contexts.TryRemove(device, out _);
        if (HardwareOf(device, out var rid) is { } hw) hw.ClearContext(rid);
    }

    public abstract IommuGroup? DeviceGroup(IommuDevice device, IGroupContext context);

    public virtual IommuDomainType DefDomainType(IommuDevice device) => IommuDomainType.None;

    public virtual bool Capable(IommuDevice device, IommuCapability capability) =>
        capability is IommuCapability.CacheCoherency or IommuCapability.DeferredFlush;

    public virtual IommuDomain? StaticIdentityDomain { get; protected set; }

    public virtual IommuDomain? StaticDefaultDomain { get; protected set; }

    public virtual IommuDomain? StaticBlockedDomain { get; protected set; }

    public virtual IommuResult AllocPagingDomain(IommuDevice device, IommuDomainType type, out IommuDomain? domain)
    {
        domain = null;
        if (AllocFault?.Invoke(device, type) is { } e && e != Errno.Ok)
            return IommuResult.Fail(e, $"{device.Name}: {Name}: allocation of a {type.SysfsName()} domain failed (injected {e})");
        var table = _pageTables?.Invoke(PageTableFormat);
        ulong bits = table is null ? 48UL : (ulong)table.IovaBits;
        ulong pgsize = table?.PageSizeBitmap ?? ((1UL << 12) | (1UL << 21) | (1UL << 30));
        domain = new IommuDomain(type, this, pgsize, 0, bits >= 64 ? ulong.MaxValue : (1UL << (int)bits) - 1, forceAperture: true, pageTable: table);
        return IommuResult.Ok;
    }

    public virtual IommuResult AllocIdentityDomain(IommuDevice device, out IommuDomain? domain)
    {
        domain = null;
        return IommuResult.Fail(Errno.EOPNOTSUPP, $"{device.Name}: {Name} has no identity domain");
    }

    public virtual void FreeDomain(IommuDomain domain) { }

    public virtual IommuResult AttachDevice(IommuDomain domain, IommuDevice device, IommuDomain? old)
    {
        if (AttachFault?.Invoke(device, domain) is { } e && e != Errno.Ok)
            return IommuResult.Fail(e, $"{device.Name}: {Name}: attach to {domain} failed (injected {e})");
        var r = AttachDeviceCore(domain, device);
        if (!r.IsOk) return r;
        _contexts[device] = domain;
        if (HardwareOf(device, out var rid) is { } hw)
        {
            // Program the context entry, then flush what the old domain left cached for this requester.
            hw.SetContext(rid, ContextFor(domain));
            if (old is not null) hw.FlushDomain(old.Id);
        }
        return r;
    }

    /// <summary>Driver-specific attach checks and hardware programming; the base records the context entry on success.</summary>
    protected virtual IommuResult AttachDeviceCore(IommuDomain domain, IommuDevice device) => IommuResult.Ok;

    public abstract void GetReservedRegions(IommuDevice device, List<ReservedRegion> regions);

    /// <summary>The x86 interrupt window 0xfee00000–0xfeefffff as a hardware MSI region (VT-d, AMD-Vi, virtio-iommu on x86).</summary>
    public static ReservedRegion X86MsiRegion { get; } = new(0xfee0_0000, 0x10_0000, IommuProt.None, ReservedRegionType.Msi);
}
