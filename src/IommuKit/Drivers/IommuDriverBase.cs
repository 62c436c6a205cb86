using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using IommuKit.Core;
using IommuKit.Grouping;
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
    private ConcurrentDictionary<IommuDevice, IommuDomain> _contexts = new(); // sized for the core's devices by Init

    /// <summary>A driver named <paramref name="name"/> whose paging domains get tables from <paramref name="pageTables"/> (none when null).</summary>
    protected IommuDriverBase(string name, Func<IoPageTableFormat, IIoPageTable>? pageTables)
    {
        Name = name;
        _pageTables = pageTables;
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <summary>The core this driver registered with (set by <see cref="Init"/>).</summary>
    protected IommuCore? Core { get; private set; }

    /// <summary>The kernel generation (6.12 until registered).</summary>
    protected KernelVersion Kernel => Core?.Kernel ?? KernelVersion.V6_12;

    /// <summary>Fault injection: return an errno other than Ok to make <see cref="AttachDevice"/> fail for that device and domain.</summary>
    internal Func<IommuDevice, IommuDomain, Errno>? AttachFault { get; set; }

    /// <summary>Fault injection: return an errno other than Ok to make domain allocation of that type fail.</summary>
    internal Func<IommuDevice, IommuDomainType, Errno>? AllocFault { get; set; }

    /// <summary>
    /// Emulated hardware units by unit name (<see cref="UnitName"/>). When a device's unit is here, attach programs the
    /// context entry of every requester ID its DMA may carry (the device's own and each DMA alias, from the one alias
    /// walk <see cref="PciGrouping.ForEachDmaAlias"/>; a platform device's first stream ID), reference-counted per
    /// requester ID, and gives a translated domain a domain id on that unit; release clears what no device uses any
    /// more. Otherwise attach is driver state only (<see cref="Contexts"/>).
    /// </summary>
    /// <remarks>Setting it also routes each unit's faults to the core as <see cref="DmaFaultEvent"/>s
    /// (<c>report_iommu_fault</c>), naming the device and domain that use the faulting requester ID.</remarks>
    public IReadOnlyDictionary<string, IommuHardware>? Hardware
    {
        get => _hardware;
        set
        {
            _hardware = value;
            if (value is null) return;
            foreach (var (name, hw) in value) hw.FaultHandler += f => OnHardwareFault(name, hw, f);
        }
    }

    private IReadOnlyDictionary<string, IommuHardware>? _hardware;

    private void OnHardwareFault(string unitName, IommuHardware hw, DmaFault fault)
    {
        IommuDevice? device = null;
        lock (_hwLock)
        {
            foreach (var (dev, state) in _devices)
            {
                if (state.Unit == hw && Array.IndexOf(state.RequesterIds, fault.RequesterId) >= 0) { device = dev; break; }
            }
        }
        var domain = device is null ? null : _contexts.GetValueOrDefault(device);
        Core?.ReportFault(new DmaFaultEvent(unitName, fault.RequesterId, device, domain, fault.Address, fault.Write, fault.Reason.ToString()));
    }

    /// <summary>
    /// The grouping context whose alias walk names a PCI device's requester IDs (its DMA alias quirks and VMD
    /// real-DMA-device map). Null: built once from the device's own topology on first use, which gives the same
    /// answer (aliases depend on the devices, not on the command line).
    /// </summary>
    public GroupingContext? DmaAliases { get; set; }

    /// <summary>The hardware unit a device is behind, as named in <see cref="Hardware"/>; null when unknown.</summary>
    public virtual string? UnitName(IommuDevice device) => device.Instance;

    private IommuHardware? HardwareOf(IommuDevice device)
    {
        if (Hardware is null || UnitName(device) is not { } unit) return null;
        if (device.Pci is null && device.StreamIds.Count == 0) return null;
        return Hardware.GetValueOrDefault(unit);
    }

    /// <summary>The context entry a domain programs: identity, blocked, or translated through its page table under
    /// <paramref name="domainId"/> (the domain's id on the unit).</summary>
    protected static IommuContext ContextFor(IommuDomain domain, int domainId) => domain.Type switch
    {
        IommuDomainType.Identity or IommuDomainType.Platform => IommuContext.Identity,
        _ when NeedsDomainId(domain) => IommuContext.Translated(domainId, domain.PageTable!),
        _ => IommuContext.Blocked,
    };

    private static bool NeedsDomainId(IommuDomain domain) => domain.Type.IsPaging() && domain.PageTable is not null;

    // ---------------------------------------------------------------- per-unit hardware state
    // _hwLock (leaf, taken under the group lock) guards _units, _devices and everything inside them.
    private readonly Lock _hwLock = new();
    private readonly Dictionary<IommuHardware, UnitState> _units = new();
    private readonly Dictionary<IommuDevice, DeviceState> _devices = new();

    /// <summary>One unit's domain ids (VT-d <c>domain_attach_iommu</c>: an IDA of DIDs per IOMMU, a per-IOMMU reference
    /// count per domain) and requester-ID context references.</summary>
    private sealed class UnitState(IommuHardware unit)
    {
        public readonly IommuHardware Unit = unit;
        public readonly ulong[] UsedIds = new ulong[(unit.DomainIdCount + 63) / 64];
        public readonly Dictionary<IommuDomain, Binding> Bound = new();
        public readonly Dictionary<ushort, int> RidRefs = new();

        /// <summary>Lowest free id in 1..DomainIdCount-1 (0 is reserved), or -1 when every id is taken.</summary>
        public int AllocId()
        {
            for (int w = 0; w < UsedIds.Length; w++)
            {
                ulong free = ~UsedIds[w];
                if (w == 0) free &= ~1UL;
                if (free == 0) continue;
                int id = w * 64 + System.Numerics.BitOperations.TrailingZeroCount(free);
                if (id >= Unit.DomainIdCount) return -1;
                UsedIds[w] |= 1UL << (id & 63);
                return id;
            }
            return -1;
        }

        public void FreeId(int id) => UsedIds[id >> 6] &= ~(1UL << (id & 63));
    }

    private sealed class Binding(int domainId, IIotlbInvalidator iotlb)
    {
        public readonly int DomainId = domainId;
        public readonly IIotlbInvalidator Iotlb = iotlb;
        public int Devices;
    }

    private sealed class DeviceState(IommuHardware unit, ushort[] requesterIds)
    {
        public readonly IommuHardware Unit = unit;
        public readonly ushort[] RequesterIds = requesterIds;
        public IommuDomain? Bound; // the translated domain whose id this device holds a reference on
    }

    /// <summary>The domain id <paramref name="domain"/> has on the unit named <paramref name="unitName"/>, or null
    /// when it is not attached there (ids are per unit and reused after the last device leaves).</summary>
    public int? DomainIdOn(string unitName, IommuDomain domain)
    {
        if (Hardware?.GetValueOrDefault(unitName) is not { } hw) return null;
        lock (_hwLock)
            return _units.TryGetValue(hw, out var u) && u.Bound.TryGetValue(domain, out var b) ? b.DomainId : null;
    }

    /// <summary>Every requester ID a device's DMA may carry at its IOMMU: <c>pci_for_each_dma_alias</c> for PCI (the
    /// device's own ID first), the first stream ID of a platform device.</summary>
    public IReadOnlyList<ushort> RequesterIds(IommuDevice device)
    {
        if (device.Pci is not { } p)
            return device.StreamIds.Count > 0 ? [(ushort)device.StreamIds[0]] : [];
        var ctx = DmaAliases;
        if (ctx is null || !ReferenceEquals(ctx.Topology, p.Topology))
            ctx = DmaAliases = DmaAliasWalk.ContextFor(p.Topology);
        return DmaAliasWalk.RequesterIds(p, ctx);
    }

    /// <summary>
    /// Programs the unit for <paramref name="device"/> moving to <paramref name="domain"/>: a domain id for a translated
    /// domain (ENOSPC when the unit has none left), every requester ID's context entry, then the old domain's id is
    /// dropped when this was its last device on the unit (its IOTLB entries retired before the id is reused).
    /// </summary>
    private IommuResult ProgramHardware(IommuHardware hw, IommuDomain domain, IommuDevice device)
    {
        IReadOnlyList<ushort>? rids;
        lock (_hwLock) rids = _devices.TryGetValue(device, out var known) ? known.RequesterIds : null;
        rids ??= RequesterIds(device); // outside _hwLock: may build the alias context
        lock (_hwLock)
        {
            if (!_units.TryGetValue(hw, out var unit)) _units[hw] = unit = new UnitState(hw);
            if (!_devices.TryGetValue(device, out var dev))
            {
                _devices[device] = dev = new DeviceState(hw, [.. rids]);
                foreach (var rid in dev.RequesterIds) unit.RidRefs[rid] = unit.RidRefs.GetValueOrDefault(rid) + 1;
            }
            int did = 0;
            if (NeedsDomainId(domain))
            {
                if (!unit.Bound.TryGetValue(domain, out var b))
                {
                    did = unit.AllocId();
                    if (did < 0)
                        return IommuResult.Fail(Errno.ENOSPC, $"{device.Name}: {hw.Name} has no free domain id for {domain} (all {hw.DomainIdCount - 1} in use)");
                    unit.Bound[domain] = b = new Binding(did, hw.InvalidatorFor(did));
                    domain.AddIotlb(b.Iotlb);
                }
                did = b.DomainId;
                if (dev.Bound != domain) b.Devices++;
            }
            var ctx = ContextFor(domain, did);
            foreach (var rid in dev.RequesterIds) hw.SetContext(rid, ctx);
            var prev = dev.Bound;
            dev.Bound = NeedsDomainId(domain) ? domain : null;
            if (prev is not null && prev != domain) UnbindLocked(unit, prev);
            return IommuResult.Ok;
        }
    }

    /// <summary>One device fewer on <paramref name="domain"/> at this unit; the last one frees the domain id after
    /// retiring its IOTLB entries (VT-d <c>domain_detach_iommu</c>).</summary>
    private void UnbindLocked(UnitState unit, IommuDomain domain)
    {
        if (!unit.Bound.TryGetValue(domain, out var b) || --b.Devices > 0) return;
        unit.Bound.Remove(domain);
        domain.RemoveIotlb(b.Iotlb);
        unit.Unit.FlushDomain(b.DomainId);
        unit.FreeId(b.DomainId);
    }

    /// <summary>What each device's context entry points at (driver state of attach), by device.</summary>
    public IReadOnlyDictionary<IommuDevice, IommuDomain> Contexts => _contextsView ??= new ContextsView(this);

    private ContextsView? _contextsView;

    /// <summary><see cref="Contexts"/>: reads the table the driver has now (registration replaces the empty one with
    /// one sized for the core), so a reference taken before registration stays live.</summary>
    private sealed class ContextsView(IommuDriverBase driver) : IReadOnlyDictionary<IommuDevice, IommuDomain>
    {
        public IommuDomain this[IommuDevice key] => driver._contexts[key];
        public IEnumerable<IommuDevice> Keys => driver._contexts.Keys;
        public IEnumerable<IommuDomain> Values => driver._contexts.Values;
        public int Count => driver._contexts.Count;
        public bool ContainsKey(IommuDevice key) => driver._contexts.ContainsKey(key);
        public bool TryGetValue(IommuDevice key, [MaybeNullWhen(false)] out IommuDomain value) => driver._contexts.TryGetValue(key, out value);
        public IEnumerator<KeyValuePair<IommuDevice, IommuDomain>> GetEnumerator() => driver._contexts.GetEnumerator();
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    /// <summary>The page-table format a new paging domain of this driver uses.</summary>
    protected abstract IoPageTableFormat PageTableFormat { get; }

    /// <inheritdoc/>
    public virtual void Init(IommuCore core)
    {
        Core = core;
        // Sized for every device the core knows: grown from empty, the table re-created its nodes at each doubling
        // (a boot of 131,072 devices allocated 2.5 nodes per device).
        if (_contexts.IsEmpty) _contexts = new ConcurrentDictionary<IommuDevice, IommuDomain>(Environment.ProcessorCount, Math.Max(31, core.DeviceCount));
    }

    /// <inheritdoc/>
    public abstract IommuResult ProbeDevice(IommuDevice device);

    /// <inheritdoc/>
    public virtual void ReleaseDevice(IommuDevice device)
    {
        _contexts.TryRemove(device, out _);
        lock (_hwLock)
        {
            if (!_devices.Remove(device, out var dev) || !_units.TryGetValue(dev.Unit, out var unit)) return;
            foreach (var rid in dev.RequesterIds)
            {
                // A requester ID shared with another device (a bridge alias) keeps its entry until the last one goes.
                int refs = unit.RidRefs.GetValueOrDefault(rid) - 1;
                if (refs > 0) { unit.RidRefs[rid] = refs; continue; }
                unit.RidRefs.Remove(rid);
                dev.Unit.ClearContext(rid);
            }
            if (dev.Bound is { } d) UnbindLocked(unit, d);
        }
    }

    /// <inheritdoc/>
    public abstract IommuGroup? DeviceGroup(IommuDevice device, IGroupContext context);

    /// <inheritdoc/>
    public virtual IommuDomainType DefDomainType(IommuDevice device) => IommuDomainType.None;

    /// <inheritdoc/>
    public virtual bool Capable(IommuDevice device, IommuCapability capability) =>
        capability is IommuCapability.CacheCoherency or IommuCapability.DeferredFlush;

    /// <inheritdoc/>
    public virtual IommuDomain? StaticIdentityDomain { get; protected set; }

    /// <inheritdoc/>
    public virtual IommuDomain? StaticDefaultDomain { get; protected set; }

    /// <inheritdoc/>
    public virtual IommuDomain? StaticBlockedDomain { get; protected set; }

    /// <inheritdoc/>
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

    /// <inheritdoc/>
    public virtual IommuResult AllocIdentityDomain(IommuDevice device, out IommuDomain? domain)
    {
        domain = null;
        return IommuResult.Fail(Errno.EOPNOTSUPP, $"{device.Name}: {Name} has no identity domain");
    }

    /// <summary><c>domain_free</c>: a domain still holding ids (a caller freed it while attached) gives them back.</summary>
    public virtual void FreeDomain(IommuDomain domain)
    {
        lock (_hwLock)
        {
            foreach (var unit in _units.Values)
            {
                if (!unit.Bound.TryGetValue(domain, out var b)) continue;
                b.Devices = 1;
                UnbindLocked(unit, domain);
            }
        }
    }

    /// <inheritdoc/>
    public virtual IommuResult AttachDevice(IommuDomain domain, IommuDevice device, IommuDomain? old)
    {
        if (AttachFault?.Invoke(device, domain) is { } e && e != Errno.Ok)
            return IommuResult.Fail(e, $"{device.Name}: {Name}: attach to {domain} failed (injected {e})");
        var r = AttachDeviceCore(domain, device);
        if (!r.IsOk) return r;
        if (HardwareOf(device) is { } hw)
        {
            // Entries are tagged by domain id, so the device cannot hit what the old domain cached; the old domain's id
            // is retired (flushed) when its last device on the unit leaves.
            var h = ProgramHardware(hw, domain, device);
            if (!h.IsOk) return h;
        }
        _contexts[device] = domain;
        return r;
    }

    /// <summary>Driver-specific attach checks and hardware programming; the base records the context entry on success.</summary>
    protected virtual IommuResult AttachDeviceCore(IommuDomain domain, IommuDevice device) => IommuResult.Ok;

    /// <inheritdoc/>
    public abstract void GetReservedRegions(IommuDevice device, List<ReservedRegion> regions);

    /// <summary>The x86 interrupt window 0xfee00000–0xfeefffff as a hardware MSI region (VT-d, AMD-Vi, virtio-iommu on x86).</summary>
    public static ReservedRegion X86MsiRegion { get; } = new(0xfee0_0000, 0x10_0000, IommuProt.None, ReservedRegionType.Msi);
}
