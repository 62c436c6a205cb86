using System.Globalization;
using IommuKit.Core;
using IommuKit.Paging;
using IommuKit.Pci;

namespace IommuKit.Drivers;

/// <summary>One AMD-Vi unit (IVHD) as the driver sees it.</summary>
/// <param name="Name">Unit name, <c>ivhd0</c>.</param>
/// <param name="Devices">Devices the IVHD covers; empty: every PCI device except the IOMMU's own function.</param>
/// <param name="NpCache">Capability header bit 26 (NpCache): the IOMMU caches non-present entries, as emulated ones do; the kernel then uses strict mode.</param>
public sealed record AmdViUnit(string Name, IReadOnlyList<PciAddress> Devices, bool NpCache = false)
{
    /// <summary>From a machine's unit: NpCache from <c>amd-iommu/cap</c> (the capability header) when present, else off.</summary>
    public static AmdViUnit FromMachine(IommuUnit unit) =>
        new(unit.Name, unit.Devices, CapHeader(unit) is { } cap && (cap & (1u << 26)) != 0);

    /// <summary>The <c>amd-iommu/cap</c> register (IOMMU capability header), or null.</summary>
    public static uint? CapHeader(IommuUnit unit)
    {
        if (!unit.Registers.TryGetValue("amd-iommu/cap", out var text)) return null;
        var s = text.Trim();
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) s = s[2..];
        return uint.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var v) ? v : null;
    }
}

/// <summary>
/// The AMD-Vi-like reference driver (drivers/iommu/amd): PCI devices behind IVHD units, groups from
/// <c>pci_device_group</c>, reserved regions = IVMD unity maps (DIRECT; exclusion ranges RESERVED), the MSI window
/// 0xfee00000–0xfeefffff and the HyperTransport range 0xfd_0000_0000–0xff_ffff_ffff (RESERVED); strict mode when a
/// unit caches non-present entries (NpCache, "Using strict mode due to virtualization") or with
/// <c>amd_iommu=fullflush</c>; identity for IOMMUv2-capable devices (ATS+PRI+PASID) unless memory is encrypted.
/// Page tables use the x86-64 4-level format (AMD's v2 table); the v1 format is not modelled separately.
/// </summary>
public sealed class AmdViDriver : IommuDriverBase
{
    /// <summary>HT_RANGE_START / HT_RANGE_END of amd_iommu_types.h.</summary>
    public const ulong HtRangeStart = 0xfd_0000_0000, HtRangeLast = 0xff_ffff_ffff;

    private readonly IReadOnlyList<AmdViUnit> _units;
    private readonly PciGroupResolver _group;
    private readonly IReadOnlyList<(ulong Start, ulong Last, bool Exclusion, IReadOnlyList<PciAddress> Scope)> _ivmd;
    private readonly bool _memoryEncryption;

    /// <param name="ivmd">IVMD entries: range, whether it is an exclusion range, and the devices it names.</param>
    /// <param name="memoryEncryption">CC_ATTR_MEM_ENCRYPT: IOMMUv2 devices are then not identity-mapped.</param>
    public AmdViDriver(IReadOnlyList<AmdViUnit> units, Func<IoPageTableFormat, IIoPageTable>? pageTables, PciGroupResolver? groups = null,
        IReadOnlyList<(ulong Start, ulong Last, bool Exclusion, IReadOnlyList<PciAddress> Scope)>? ivmd = null, bool memoryEncryption = false)
        : base("amd-iommu", pageTables)
    {
        _units = units;
        _group = groups ?? PciGroupResolvers.OnePerDevice;
        _ivmd = ivmd ?? [];
        _memoryEncryption = memoryEncryption;
        StaticIdentityDomain = new IommuDomain(IommuDomainType.Identity, this, isStatic: true);
    }

    /// <inheritdoc/>
    protected override IoPageTableFormat PageTableFormat => IoPageTableFormat.X86_64Level4;

    /// <inheritdoc/>
    public override void Init(IommuCore core)
    {
        base.Init(core);
        if (core.Kernel >= new KernelVersion(6, 7)) StaticBlockedDomain = new IommuDomain(IommuDomainType.Blocked, this, isStatic: true);
        foreach (var u in _units)
        {
            if (!u.NpCache) continue;
            core.SetDmaStrict("AMD-Vi: Using strict mode due to virtualization");
            break;
        }
        foreach (var opt in core.CommandLine.Options("amd_iommu"))
        {
            if (opt.StartsWith("fullflush", StringComparison.Ordinal))
                core.SetDmaStrict("AMD-Vi: amd_iommu=fullflush deprecated; use iommu.strict=1 instead");
        }
    }

    /// <summary>The IVHD unit whose scope holds the device, or null.</summary>
    public AmdViUnit? UnitOf(IommuDevice device)
    {
        if (device.Pci is not { } p) return null;
        foreach (var u in _units)
        {
            if (u.Devices.Count == 0)
            {
                // The IOMMU's own PCI function (class 0x0806, "IOMMU") is not behind itself.
                if ((p.ClassCode >> 8) != 0x0806) return u;
                continue;
            }
            foreach (var a in u.Devices) if (a == p.Address) return u;
        }
        return null;
    }

    /// <inheritdoc/>
    public override string? UnitName(IommuDevice device) => UnitOf(device)?.Name;

    /// <inheritdoc/>
    public override IommuResult ProbeDevice(IommuDevice device) =>
        UnitOf(device) is null ? IommuResult.Fail(Errno.ENODEV, $"{device.Name}: not covered by any IVHD") : IommuResult.Ok;

    /// <inheritdoc/>
    public override IommuGroup? DeviceGroup(IommuDevice device, IGroupContext context) =>
        device.Pci is { } p ? _group(p, context) : context.Allocate();

    /// <summary><c>amd_iommu_def_domain_type</c>: IOMMUv2-capable devices (ATS, PRI and PASID) want identity unless memory is encrypted.</summary>
    public override IommuDomainType DefDomainType(IommuDevice device)
    {
        if (device.Pci is not { } p || _memoryEncryption) return IommuDomainType.None;
        bool ats = false, pri = false, pasid = false;
        foreach (var c in p.Facts.Capabilities)
        {
            if (!c.Extended) continue;
            if (c.Id == PciCapabilityIds.ExtAts) ats = true;
            else if (c.Id == 0x0013) pri = true; // PCI_EXT_CAP_ID_PRI
            else if (c.Id == PciCapabilityIds.ExtPasid) pasid = true;
        }
        return ats && pri && pasid ? IommuDomainType.Identity : IommuDomainType.None;
    }

    /// <summary><c>amd_iommu_get_resv_regions</c>: IVMD unity maps, the MSI window, the HyperTransport range.</summary>
    public override void GetReservedRegions(IommuDevice device, List<ReservedRegion> regions)
    {
        if (device.Pci is { } p)
        {
            foreach (var (start, last, exclusion, scope) in _ivmd)
            {
                bool match = false;
                foreach (var a in scope) if (a == p.Address) { match = true; break; }
                if (!match) continue;
                regions.Add(ReservedRegion.FromInclusive(start, last, IommuProt.Read | IommuProt.Write,
                    exclusion ? ReservedRegionType.Reserved : ReservedRegionType.Direct));
            }
        }
        regions.Add(X86MsiRegion);
        regions.Add(ReservedRegion.FromInclusive(HtRangeStart, HtRangeLast, IommuProt.None, ReservedRegionType.Reserved));
    }
}
