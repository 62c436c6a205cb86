using IommuKit.Pci;

namespace IommuKit.Core;

/// <summary>The bus a device sits on (the kernel probes platform, then PCI; spec 1.2).</summary>
public enum IommuBusKind
{
    /// <summary>A PCI function.</summary>
    Pci,
    /// <summary>A platform (non-PCI) device with stream IDs.</summary>
    Platform,
}

/// <summary>
/// A device as the IOMMU core sees it (<c>struct device</c> plus <c>dev->iommu</c> and <c>dev->iommu_group</c>).
/// Created by the embedder; the core fills in the IOMMU side when the device is probed.
/// </summary>
/// <remarks>
/// Locking: <see cref="Group"/> and <see cref="IommuDriver"/> are written under the core's probe lock and the group lock
/// (see docs/LOCKING.md); <see cref="DriverName"/>/<see cref="DriverManagedDma"/> under the device lock and the group
/// lock. Reads without a lock see a value that was current at some point.
/// </remarks>
public sealed class IommuDevice
{
    /// <param name="name">Device name as sysfs shows it (<c>0000:00:1f.3</c>, <c>e6800000.usb</c>).</param>
    /// <param name="pci">The PCI function, for PCI devices.</param>
    /// <param name="untrusted">The kernel's <c>pdev-&gt;untrusted</c> (below an external-facing port): forces a strict DMA domain.</param>
    /// <param name="instance">The IOMMU instance (unit) the firmware puts the device behind (fwspec), e.g. <c>dmar0</c>; null lets the driver decide.</param>
    /// <param name="streamIds">Firmware IDs of a platform device (fwspec ids: SMMU stream IDs).</param>
    public IommuDevice(string name, IommuBusKind bus, PciDevice? pci = null, bool untrusted = false, string? instance = null, IReadOnlyList<uint>? streamIds = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (bus == IommuBusKind.Pci && pci is null) throw new ArgumentException($"{name}: a PCI device needs its PciDevice", nameof(pci));
        Name = name;
        Bus = bus;
        Pci = pci;
        Untrusted = untrusted;
        Instance = instance;
        StreamIds = streamIds ?? [];
    }

    /// <summary>Builds the core device for a PCI function (untrusted from the source's facts).</summary>
    public static IommuDevice FromPci(PciDevice pci, string? instance = null) =>
        new(pci.Address.ToString(), IommuBusKind.Pci, pci, pci.Facts.Untrusted, instance);

    /// <summary>The device name (<c>0000:00:02.0</c> for PCI, the platform name otherwise).</summary>
    public string Name { get; }
    /// <summary>The bus the device sits on.</summary>
    public IommuBusKind Bus { get; }
    /// <summary>The PCI function, for PCI devices; null for platform devices.</summary>
    public PciDevice? Pci { get; }
    /// <summary><c>pdev-&gt;untrusted</c>: behind an external-facing port; gets a strict DMA domain.</summary>
    public bool Untrusted { get; }
    /// <summary>The IOMMU unit (fwspec instance) the device is behind, when the source names one.</summary>
    public string? Instance { get; }
    /// <summary>The stream IDs of a platform device (fwspec <c>ids</c>); empty for PCI.</summary>
    public IReadOnlyList<uint> StreamIds { get; }

    /// <summary>The kernel's <c>device_lock</c>. Lock order: probe lock → device lock → group lock (docs/LOCKING.md).</summary>
    internal readonly object DeviceLock = new();

    private volatile IommuGroup? _group;
    private volatile IIommuDriver? _driver;
    private volatile string? _driverName;
    private volatile bool _driverManagedDma;

    /// <summary>The group the device is in, or null (not probed, no IOMMU, or removed).</summary>
    public IommuGroup? Group { get => _group; internal set => _group = value; }

    /// <summary>The IOMMU driver (ops) the device is behind, or null.</summary>
    public IIommuDriver? IommuDriver { get => _driver; internal set => _driver = value; }

    /// <summary>The bound device driver's name, or null when unbound.</summary>
    public string? DriverName { get => _driverName; internal set => _driverName = value; }

    /// <summary>The bound driver declares <c>driver_managed_dma</c> (vfio-pci, pci-stub, pcieport): binding it does not use the default domain.</summary>
    public bool DriverManagedDma { get => _driverManagedDma; internal set => _driverManagedDma = value; }

    /// <summary><c>dev-&gt;iommu-&gt;require_direct</c>: set once a DIRECT region was seen for the device (spec 8.3). Guarded by the group lock.</summary>
    public bool RequireDirect { get; internal set; }

    /// <summary>The domain the driver last attached the device to (what its context entry points at). Guarded by the group lock.</summary>
    public IommuDomain? AttachedDomain { get; internal set; }

    /// <summary>Driver-private per-device state (<c>dev_iommu_priv</c>), owned by the IOMMU driver.</summary>
    public object? DriverPrivate { get; set; }

    /// <summary>
    /// Drivers the kernel declares <c>driver_managed_dma</c> for (5.19+): pci-stub, pcieport, and every VFIO driver
    /// (<see cref="IsVfioDriver"/>).
    /// </summary>
    public static bool IsDriverManagedDma(string driver) => driver is "pci-stub" or "pcieport" || IsVfioDriver(driver);

    /// <summary>
    /// A driver that hands its devices to VFIO: <c>vfio-pci</c>, <c>vfio-platform</c>, ... and the vfio-pci variant
    /// drivers (<c>mlx5_vfio_pci</c>, <c>hisi_acc_vfio_pci</c>, <c>nvgrace_gpu_vfio_pci</c>), which all set
    /// <c>driver_managed_dma</c> through vfio_pci_core.
    /// </summary>
    /// <summary>
    /// Before 5.19, <c>vfio_dev_driver_allowed</c> (drivers/vfio/vfio.c): besides driver-less and VFIO-bound devices, a
    /// group stays viable with a device whose header is not <c>PCI_HEADER_TYPE_NORMAL</c> (a bridge, whatever its
    /// driver) or one bound to a driver on <c>vfio_driver_allowed</c>, which holds only "pci-stub".
    /// </summary>
    public static bool VfioDriverAllowedBefore519(PciDevice? pci, string driver) =>
        pci is not null && pci.Facts.HeaderLayout != 0 || driver == "pci-stub";

    /// <summary>True for the VFIO drivers (<c>vfio-pci</c> and its variants).</summary>
    public static bool IsVfioDriver(string driver) =>
        driver.StartsWith("vfio", StringComparison.Ordinal) || driver.Replace('_', '-').Contains("vfio-pci", StringComparison.Ordinal);

    /// <inheritdoc/>
    public override string ToString() => Name;
}
