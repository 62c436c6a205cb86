using IommuKit.Core;
using IommuKit.Paging;
using IommuKit.Pci;

namespace IommuKit.Drivers;

/// <summary>
/// The virtio-iommu-like reference driver (drivers/iommu/virtio-iommu.c): PCI endpoints listed by the device, groups
/// from <c>pci_device_group</c>, and only the reserved regions the device reports in its probe (on x86 QEMU the MSI
/// window as a bypass MSI region); without a reported MSI region a software MSI window is added. The virtio-iommu
/// PCI function itself is not translated and gets no group.
/// </summary>
public sealed class VirtioIommuDriver : IommuDriverBase
{
    /// <summary>MSI_IOVA_BASE / MSI_IOVA_LENGTH of the software MSI window (virtio-iommu, arm-smmu).</summary>
    public const ulong SwMsiBase = 0x800_0000, SwMsiLength = 0x10_0000;

    private readonly PciAddress _self;
    private readonly IReadOnlyList<PciAddress>? _endpoints;
    private readonly IReadOnlyList<ReservedRegion> _probeRegions;
    private readonly PciGroupResolver _group;

    /// <param name="self">The virtio-iommu PCI function (it is never its own endpoint).</param>
    /// <param name="endpoints">The endpoints the device manages; null: every PCI device but itself.</param>
    /// <param name="probeRegions">Regions from the device's PROBE request; null: QEMU x86's MSI bypass window.</param>
    public VirtioIommuDriver(PciAddress self, Func<IoPageTableFormat, IIoPageTable>? pageTables, PciGroupResolver? groups = null,
        IReadOnlyList<PciAddress>? endpoints = null, IReadOnlyList<ReservedRegion>? probeRegions = null)
        : base("virtio-iommu", pageTables)
    {
        _self = self;
        _endpoints = endpoints;
        _probeRegions = probeRegions ?? [X86MsiRegion];
        _group = groups ?? PciGroupResolvers.OnePerDevice;
        StaticIdentityDomain = new IommuDomain(IommuDomainType.Identity, this, isStatic: true);
    }

    /// <inheritdoc/>
    protected override IoPageTableFormat PageTableFormat => IoPageTableFormat.X86_64Level4;

    /// <summary>Every endpoint is behind the one virtio-iommu, named after its PCI function.</summary>
    public override string? UnitName(IommuDevice device) => _self.ToString();

    /// <inheritdoc/>
    public override void Init(IommuCore core)
    {
        base.Init(core);
        if (core.Kernel >= new KernelVersion(6, 7)) StaticBlockedDomain = new IommuDomain(IommuDomainType.Blocked, this, isStatic: true);
    }

    /// <inheritdoc/>
    public override IommuResult ProbeDevice(IommuDevice device)
    {
        if (device.Pci is not { } p || p.Address == _self)
            return IommuResult.Fail(Errno.ENODEV, $"{device.Name}: not an endpoint of virtio-iommu {_self}");
        if (_endpoints is not null)
        {
            bool found = false;
            foreach (var a in _endpoints) if (a == p.Address) { found = true; break; }
            if (!found) return IommuResult.Fail(Errno.ENODEV, $"{device.Name}: not an endpoint of virtio-iommu {_self}");
        }
        return IommuResult.Ok;
    }

    /// <inheritdoc/>
    public override IommuGroup? DeviceGroup(IommuDevice device, IGroupContext context) =>
        device.Pci is { } p ? _group(p, context) : context.Allocate();

    /// <summary><c>viommu_get_resv_regions</c>: the probed regions, plus a SW_MSI window when none of them is MSI.</summary>
    public override void GetReservedRegions(IommuDevice device, List<ReservedRegion> regions)
    {
        bool msi = false;
        foreach (var r in _probeRegions)
        {
            regions.Add(r);
            if (r.Type is ReservedRegionType.Msi or ReservedRegionType.SwMsi) msi = true;
        }
        if (!msi) regions.Add(new ReservedRegion(SwMsiBase, SwMsiLength, IommuProt.Read | IommuProt.Write | IommuProt.Mmio, ReservedRegionType.SwMsi));
    }
}
