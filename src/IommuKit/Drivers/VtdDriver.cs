using IommuKit.Core;
using IommuKit.Paging;
using IommuKit.Pci;

namespace IommuKit.Drivers;

/// <summary>One DMAR hardware unit (DRHD) as the VT-d driver sees it.</summary>
/// <param name="Name">Unit name, <c>dmar0</c>.</param>
/// <param name="Devices">Devices in the unit's scope; empty with <paramref name="IncludeAll"/> for the catch-all unit.</param>
/// <param name="IncludeAll">DRHD_FLAGS_INCLUDE_ALL: the unit covers every PCI device no other unit lists.</param>
/// <param name="CachingMode">CAP.CM (bit 7): the unit is emulated and needs invalidations for non-present entries; the kernel then forces strict mode.</param>
/// <param name="PassThrough">ECAP.PT (bit 6): identity is possible.</param>
/// <param name="FiveLevel">SAGAW includes 5-level tables (57-bit IOVA).</param>
public sealed record VtdUnit(string Name, IReadOnlyList<PciAddress> Devices, bool IncludeAll = false, bool CachingMode = false, bool PassThrough = true, bool FiveLevel = false)
{
    /// <summary>From a machine's unit: registers when present (CAP.CM, ECAP.PT); unknown registers read as CM=0, PT=1.</summary>
    public static VtdUnit FromMachine(IommuUnit unit) =>
        new(unit.Name, unit.Devices, unit.Devices.Count == 0, unit.CachingMode ?? false, unit.PassThrough ?? true,
            unit.IntelCap is { } cap && ((cap >> 8) & 0x1f & (1 << 3)) != 0);
}

/// <summary>An ACPI DMAR RMRR: a memory range firmware keeps using for DMA, and the devices (or bridges) it scopes.</summary>
public sealed record VtdRmrr(ulong Base, ulong Last, IReadOnlyList<PciAddress> Scope);

/// <summary>
/// The VT-d-like reference driver (drivers/iommu/intel): PCI devices behind DMAR units, groups from
/// <c>pci_device_group</c>, RMRRs as direct regions (relaxable for USB and graphics), the ISA/LPC floppy range
/// 0–16 MiB as direct-relaxable, the MSI window, the HD-audio identity requirement, strict mode under caching
/// mode, and domains whose address width settles on first attach to a unit.
/// </summary>
public sealed class VtdDriver : IommuDriverBase
{
    private readonly IReadOnlyList<VtdUnit> _units;
    private readonly IReadOnlyList<VtdRmrr> _rmrrs;
    private readonly PciGroupResolver _group;
    private readonly object _widthLock = new(); // leaf: guards IommuDomain.SettledIovaBits of this driver's domains
    // device_lookup_iommu's answer, found once per address instead of by a walk of every unit's scope per call: the
    // first unit (in DRHD order) whose explicit scope lists the address, else the first INCLUDE_ALL unit.
    private readonly Dictionary<PciAddress, VtdUnit> _unitByScope = new();
    private readonly VtdUnit? _includeAll;

    /// <param name="units">The DMAR units in DRHD order; their scopes are read once, here (as the kernel parses the DMAR once).</param>
    /// <param name="pageTables">Creates the IO page table of a paging domain.</param>
    /// <param name="groups">The PCI grouping (the grouping engine's <c>pci_device_group</c>, or a recorded partition).</param>
    /// <param name="azaliaIdentity">IDENTMAP_AZALIA: set by the Tylersburg isochronous-unit check (<c>check_tylersburg_isoch</c>) when the BIOS routed Azalia DMA badly.</param>
    /// <param name="floppyWorkaround">CONFIG_INTEL_IOMMU_FLOPPY_WA (Debian: y).</param>
    public VtdDriver(IReadOnlyList<VtdUnit> units, Func<IoPageTableFormat, IIoPageTable>? pageTables, PciGroupResolver? groups = null,
        IReadOnlyList<VtdRmrr>? rmrrs = null, bool azaliaIdentity = false, bool floppyWorkaround = true)
        : base("intel-iommu", pageTables)
    {
        _units = units;
        int scoped = 0;
        foreach (var u in units) if (!u.IncludeAll) scoped += u.Devices.Count;
        _unitByScope.EnsureCapacity(scoped);
        foreach (var u in units)
        {
            if (u.IncludeAll) { _includeAll ??= u; continue; }
            foreach (var a in u.Devices) _unitByScope.TryAdd(a, u);
        }
        _rmrrs = rmrrs ?? [];
        _group = groups ?? PciGroupResolvers.OnePerDevice;
        AzaliaIdentity = azaliaIdentity;
        FloppyWorkaround = floppyWorkaround;
        StaticIdentityDomain = new IommuDomain(IommuDomainType.Identity, this, isStatic: true);
    }

    /// <summary>IDENTMAP_AZALIA is set: the Azalia 8086:3a3e HD-audio device needs identity.</summary>
    public bool AzaliaIdentity { get; }

    /// <summary>
    /// IDENTMAP_GFX: <c>intel_iommu=igfx_off</c> ("Disable GFX device mapping") made every display-class device ask
    /// for identity in 6.1; 6.12 still logs the message but no longer does that (h_igfx_off vs h_k612_igfx_off). The
    /// exact release that dropped it is not verified; it is modelled as 6.12.
    /// </summary>
    public bool GraphicsIdentity { get; private set; }
    /// <summary>CONFIG_INTEL_IOMMU_FLOPPY_WA: ISA bridges get 0-16 MiB direct-relaxable.</summary>
    public bool FloppyWorkaround { get; }
    /// <summary>The DMAR units (DRHDs) the driver fronts.</summary>
    public IReadOnlyList<VtdUnit> Units => _units;

    /// <inheritdoc/>
    protected override IoPageTableFormat PageTableFormat => IoPageTableFormat.X86_64Level4;

    /// <inheritdoc/>
    public override void Init(IommuCore core)
    {
        base.Init(core);
        // 6.7+ has a static blocking domain; older kernels fall back to an empty UNMANAGED domain.
        if (core.Kernel >= new KernelVersion(6, 7)) StaticBlockedDomain = new IommuDomain(IommuDomainType.Blocked, this, isStatic: true);
        foreach (var u in _units)
        {
            if (u.CachingMode)
            {
                // init_dmars / intel_iommu_init: caching mode disables batched invalidation → iommu_set_dma_strict().
                core.SetDmaStrict("DMAR: IOMMU batching disallowed due to virtualization");
                break;
            }
        }
        foreach (var opt in core.CommandLine.Options("intel_iommu"))
        {
            if (opt.StartsWith("strict", StringComparison.Ordinal))
                core.SetDmaStrict("DMAR: intel_iommu=strict deprecated; use iommu.strict=1 instead");
            if (opt.StartsWith("igfx_off", StringComparison.Ordinal))
            {
                core.AddLog("DMAR: Disable GFX device mapping");
                GraphicsIdentity = core.Kernel < KernelVersion.V6_12;
            }
        }
    }

    /// <inheritdoc/>
    public override string? UnitName(IommuDevice device) => UnitOf(device)?.Name;

    /// <summary>The unit whose scope holds the device (explicit scopes first, then the INCLUDE_ALL unit), or null.</summary>
    public VtdUnit? UnitOf(IommuDevice device)
    {
        if (device.Pci is not { } p) return null;
        if (device.Instance is { } inst)
        {
            for (int i = 0; i < _units.Count; i++) if (_units[i].Name == inst) return _units[i];
        }
        return _unitByScope.TryGetValue(p.Address, out var unit) ? unit : _includeAll;
    }

    /// <inheritdoc/>
    public override IommuResult ProbeDevice(IommuDevice device)
    {
        // intel_iommu_probe_device: device_lookup_iommu(); ACPI namespace devices are not modelled.
        if (device.Bus != IommuBusKind.Pci || UnitOf(device) is null)
            return IommuResult.Fail(Errno.ENODEV, $"{device.Name}: not in the scope of any DMAR unit");
        return IommuResult.Ok;
    }

    /// <inheritdoc/>
    public override IommuGroup? DeviceGroup(IommuDevice device, IGroupContext context) =>
        device.Pci is { } p ? _group(p, context) : context.Allocate();

    /// <summary><c>device_def_domain_type</c> (spec 9.1): no ECAP.PT → DMA; Azalia 8086:3a3e with IDENTMAP_AZALIA → identity.</summary>
    public override IommuDomainType DefDomainType(IommuDevice device)
    {
        if (UnitOf(device) is { PassThrough: false }) return IommuDomainType.Dma;
        if (device.Pci is { } p && AzaliaIdentity && p.VendorId == 0x8086 && p.DeviceId == 0x3a3e) return IommuDomainType.Identity;
        if (device.Pci is { } g && GraphicsIdentity && (g.ClassCode >> 16) == 0x03) return IommuDomainType.Identity; // IS_GFX_DEVICE
        return IommuDomainType.None;
    }

    /// <inheritdoc/>
    protected override IommuResult AttachDeviceCore(IommuDomain domain, IommuDevice device)
    {
        var unit = UnitOf(device);
        if (unit is null) return IommuResult.Fail(Errno.ENODEV, $"{device.Name}: no DMAR unit");
        // Without ECAP.PT device_def_domain_type demands DMA (spec 9.1), so the core refuses identity before any attach;
        // this EINVAL ("incompatible", spec 4.3 driver convention) only guards direct attaches of the identity domain.
        if (domain.Type == IommuDomainType.Identity && !unit.PassThrough)
            return IommuResult.Fail(Errno.EINVAL, $"{device.Name}: {unit.Name} has no pass-through support (ECAP.PT clear)");
        if (!Kernel.CoreRefusesBlockingForDirect && domain.Type == IommuDomainType.Unmanaged && IsRmrrLocked(device))
        {
            // Pre-6.4 VT-d: intel_iommu_attach_device refuses RMRR-locked devices a user domain.
            Core?.AddLog($"{device.Name}: Device is ineligible for IOMMU domain attach due to platform RMRR requirement.  Contact your platform vendor.");
            return IommuResult.Fail(Errno.EPERM, $"{device.Name}: an RMRR (firmware direct region) locks the device to 1:1 DMA; it cannot be given to a user domain");
        }
        if (domain.Type.IsPaging())
        {
            // prepare_domain_attach_device: the first unit settles the domain's address width (agaw); a later unit with
            // a narrower width is incompatible (EINVAL: "try another domain").
            int unitBits = unit.FiveLevel ? 57 : 48;
            lock (_widthLock)
            {
                int settled = domain.SettledIovaBits;
                if (settled == 0)
                {
                    int bits = domain.PageTable is { } t ? Math.Min(t.IovaBits, unitBits) : unitBits;
                    domain.SettledIovaBits = bits;
                    domain.ApertureEnd = bits >= 64 ? ulong.MaxValue : (1UL << bits) - 1;
                }
                else if (unitBits < settled)
                    return IommuResult.Fail(Errno.EINVAL, $"{device.Name}: {unit.Name} handles {unitBits}-bit IOVAs but {domain} was settled at {settled} bits");
            }
        }
        return IommuResult.Ok;
    }

    /// <summary>The address width a domain settled at on its first attach, or null before any attach.</summary>
    public int? SettledWidth(IommuDomain domain)
    {
        ArgumentNullException.ThrowIfNull(domain);
        lock (_widthLock) return domain.SettledIovaBits != 0 ? domain.SettledIovaBits : null;
    }

    private bool IsRmrrLocked(IommuDevice device)
    {
        if (device.Pci is not { } p || IsRelaxable(p)) return false;
        foreach (var r in _rmrrs) if (InScope(r, p)) return true;
        return false;
    }

    private static bool IsRelaxable(PciDevice p) => (p.ClassCode >> 8) == 0x0c03 || (p.ClassCode >> 16) == 0x03; // IS_USB_DEVICE || IS_GFX_DEVICE

    private static bool InScope(VtdRmrr r, PciDevice p)
    {
        // The scope lists the device itself or a bridge above it (is_downstream_to_pci_bridge).
        foreach (var a in r.Scope)
        {
            if (a == p.Address) return true;
            for (var up = p.Parent; up is not null; up = up.Parent) if (up.Address == a) return true;
        }
        return false;
    }

    /// <summary><c>intel_iommu_get_resv_regions</c>: RMRRs in scope, the ISA floppy range, the MSI window.</summary>
    public override void GetReservedRegions(IommuDevice device, List<ReservedRegion> regions)
    {
        if (device.Pci is { } p)
        {
            foreach (var r in _rmrrs)
            {
                if (!InScope(r, p)) continue;
                regions.Add(ReservedRegion.FromInclusive(r.Base, r.Last, IommuProt.Read | IommuProt.Write,
                    IsRelaxable(p) ? ReservedRegionType.DirectRelaxable : ReservedRegionType.Direct));
            }
            // CONFIG_INTEL_IOMMU_FLOPPY_WA: an ISA bridge (class 0x0601) gets [0, 16 MiB) direct-relaxable.
            if (FloppyWorkaround && (p.ClassCode >> 8) == 0x0601)
                regions.Add(new ReservedRegion(0, 1UL << 24, IommuProt.Read | IommuProt.Write, ReservedRegionType.DirectRelaxable));
        }
        regions.Add(X86MsiRegion);
    }
}
