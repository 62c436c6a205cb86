using IommuKit.Core;
using IommuKit.Pci;

namespace IommuKit.Drivers;

/// <summary>
/// The POWER-like reference driver (arch/powerpc/kernel/iommu.c, PowerNV/pSeries): groups are firmware
/// Partitionable Endpoints at bridge granularity — every device on a bus belongs to that bus's PE — registered as
/// <c>domain&lt;D&gt;-pe&lt;N&gt;</c> (PCI domain in decimal, PE number in hex; here the PE number is the bus number).
/// The PE keeps its group alive without devices (the TCE table group holds a reference). ACS plays no part. The
/// default domain is the platform's own (type PLATFORM: the TCE code drives DMA; sysfs reads <c>unknown</c>); VFIO
/// ownership uses the static blocked domain; there are no paging or identity domains and no reserved regions.
/// </summary>
public sealed class PowerPeDriver : IommuDriverBase
{
    private readonly object _peLock = new(); // leaf: guards _pes
    private readonly Dictionary<(int Domain, int Bus), IommuGroup> _pes = new();

    /// <summary>A POWER (PowerNV) driver with one partitionable endpoint per bus.</summary>
    public PowerPeDriver() : base("powernv", null)
    {
        StaticBlockedDomain = new IommuDomain(IommuDomainType.Blocked, this, isStatic: true);
        StaticPlatformDomain = new IommuDomain(IommuDomainType.Platform, this, isStatic: true);
        StaticDefaultDomain = StaticPlatformDomain;
    }

    /// <summary>The static default domain (<c>spapr_tce_platform_domain</c>).</summary>
    public IommuDomain StaticPlatformDomain { get; }

    /// <inheritdoc/>
    protected override Paging.IoPageTableFormat PageTableFormat => Paging.IoPageTableFormat.X86_64Level4;

    /// <inheritdoc/>
    public override IommuResult ProbeDevice(IommuDevice device) =>
        device.Pci is null ? IommuResult.Fail(Errno.ENODEV, $"{device.Name}: not a PCI device") : IommuResult.Ok;

    /// <summary>The PE name of a bus: <c>domain%d-pe%lx</c> (<c>iommu_register_group</c>).</summary>
    public static string PeName(int domain, int pe) => $"domain{domain}-pe{pe:x}";

    /// <inheritdoc/>
    public override IommuGroup? DeviceGroup(IommuDevice device, IGroupContext context)
    {
        var p = device.Pci!;
        var key = (p.Bus.Domain, (int)p.Bus.Number);
        lock (_peLock)
        {
            if (_pes.TryGetValue(key, out var g)) return g;
            g = context.Allocate(PeName(key.Item1, key.Item2));
            Core!.GroupGet(g); // the PE's table group holds the group
            _pes[key] = g;
            return g;
        }
    }

    /// <inheritdoc/>
    public override IommuResult AllocPagingDomain(IommuDevice device, IommuDomainType type, out IommuDomain? domain)
    {
        domain = null;
        return IommuResult.Fail(Errno.EOPNOTSUPP, $"{device.Name}: {Name} has no paging domains (DMA goes through the PE's TCE tables)");
    }

    /// <inheritdoc/>
    public override bool Capable(IommuDevice device, IommuCapability capability) => capability == IommuCapability.CacheCoherency;

    /// <inheritdoc/>
    public override void GetReservedRegions(IommuDevice device, List<ReservedRegion> regions) { }
}
