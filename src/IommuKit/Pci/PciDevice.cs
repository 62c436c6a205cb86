namespace IommuKit.Pci;

/// <summary>How much of a function's config space the source could see, and so which facts are known.</summary>
public enum ConfigVisibility
{
    /// <summary>Capabilities, including the extended ones where the device has them, were visible.</summary>
    Full,
    /// <summary>Standard capabilities were visible, the extended space was not (a 256-byte read of a PCIe function, or lspci -vv without root beyond the header).</summary>
    NoExtended,
    /// <summary>Only the 64-byte header: no capability is known (unprivileged read). PCIe type and ACS are unknown.</summary>
    HeaderOnly,
}

/// <summary>
/// What a source knows about one PCI function. Sources fill it in; <see cref="PciTopologyBuilder"/> turns a set of
/// them into an immutable <see cref="PciTopology"/>. Use <see cref="FromConfig"/> when raw config bytes are available.
/// </summary>
public sealed record PciDeviceFacts
{
    /// <summary>The function's address.</summary>
    public required PciAddress Address { get; init; }
    /// <summary>Vendor ID.</summary>
    public ushort VendorId { get; init; }
    /// <summary>Device ID.</summary>
    public ushort DeviceId { get; init; }
    /// <summary>Subsystem vendor ID (0 when none).</summary>
    public ushort SubsystemVendorId { get; init; }
    /// <summary>Subsystem device ID (0 when none).</summary>
    public ushort SubsystemDeviceId { get; init; }
    /// <summary>24-bit class code, e.g. <c>0x060400</c>.</summary>
    public uint ClassCode { get; init; }
    /// <summary>Revision ID.</summary>
    public byte Revision { get; init; }
    /// <summary>Header layout 0, 1 or 2.</summary>
    public int HeaderLayout { get; init; }
    /// <summary>Header type bit 7; null when the source does not show it (lspci text): then it is inferred from the slot's other functions.</summary>
    public bool? MultifunctionBit { get; init; }
    /// <summary>Primary, secondary and subordinate bus numbers of a bridge; null for a non-bridge.</summary>
    public (byte Primary, byte Secondary, byte Subordinate)? BridgeBuses { get; init; }
    /// <summary>The PCI Express capability; null when the function has none or it was not visible.</summary>
    public PcieInfo? Pcie { get; init; }
    /// <summary>The ACS capability; null when the function has none or it was not visible.</summary>
    public AcsInfo? Acs { get; init; }
    /// <summary>The ARI capability; null when none or not visible.</summary>
    public AriInfo? Ari { get; init; }
    /// <summary>The SR-IOV capability; null when none or not visible.</summary>
    public SriovInfo? Sriov { get; init; }
    /// <summary>Capabilities in list order, standard then extended.</summary>
    public IReadOnlyList<PciCapability> Capabilities { get; init; } = [];
    /// <summary>How much config space the source saw.</summary>
    public ConfigVisibility Visibility { get; init; } = ConfigVisibility.Full;
    /// <summary>Raw config space when the source had it.</summary>
    public ConfigSpace? Config { get; init; }

    /// <summary>Bound driver name, or null.</summary>
    public string? Driver { get; init; }
    /// <summary>
    /// Kernel modules that can drive the function (lspci -k "Kernel modules:", from the kernel's modules.alias), when
    /// the source lists them; empty otherwise (sysfs names only the driver in use).
    /// </summary>
    public IReadOnlyList<string> KernelModules { get; init; } = [];
    /// <summary>The IOMMU group number the kernel reported, or null when unknown or in none.</summary>
    public int? KernelGroup { get; init; }
    /// <summary>The IOMMU unit that manages the device (<c>dmar0</c>, <c>0000:00:1d.0</c> for virtio-iommu…), or null.</summary>
    public string? IommuUnit { get; init; }
    /// <summary>Firmware marked the port external-facing (Thunderbolt): devices below it are untrusted.</summary>
    public bool ExternalFacing { get; init; }
    /// <summary>The kernel's <c>pdev->untrusted</c>: the device sits below an external-facing port.</summary>
    public bool Untrusted { get; init; }
    /// <summary>
    /// The bridge this device sits under when the source knows it from the device path (sysfs realpath); null lets the
    /// builder find it from bridge bus numbers.
    /// </summary>
    public PciAddress? ParentHint { get; init; }
    /// <summary>Free text name (lspci's device description, or the pci.ids name), when the source has one.</summary>
    public string? Description { get; init; }
    /// <summary>Physical slot name (sysfs <c>slots/N</c>, lspci <c>Physical Slot:</c>), when known.</summary>
    public string? PhysicalSlot { get; init; }

    /// <summary>
    /// Decodes facts from raw config bytes. The visibility follows the length read: 4096 = full, 256 = no extended
    /// capabilities (final for a conventional function), fewer = header only.
    /// </summary>
    /// <param name="error">A malformed capability list, described in one line; what was found before it is kept.</param>
    public static PciDeviceFacts FromConfig(PciAddress address, ConfigSpace cfg, out string? error)
    {
        // A malformed list still yields the capabilities found before the fault; error says what broke.
        cfg.TryReadCapabilities(out var caps, out error);
        PcieInfo? pcie = null; AcsInfo? acs = null; AriInfo? ari = null; SriovInfo? sriov = null;
        foreach (var c in caps)
        {
            if (!c.Extended && c.Id == PciCapabilityIds.Pcie && pcie is null) pcie = PcieInfo.Decode(cfg, c.Offset);
            else if (c.Extended && c.Id == PciCapabilityIds.ExtAcs && acs is null) acs = AcsInfo.Decode(cfg, c.Offset);
            else if (c.Extended && c.Id == PciCapabilityIds.ExtAri && ari is null) ari = AriInfo.Decode(cfg, c.Offset);
            else if (c.Extended && c.Id == PciCapabilityIds.ExtSriov && sriov is null) sriov = SriovInfo.Decode(cfg, c.Offset);
        }
        ConfigVisibility vis = cfg.HeaderOnly ? ConfigVisibility.HeaderOnly
            : cfg.HasExtendedSpace || pcie is null ? ConfigVisibility.Full
            : ConfigVisibility.NoExtended;
        return new PciDeviceFacts
        {
            Address = address,
            VendorId = cfg.VendorId,
            DeviceId = cfg.DeviceId,
            SubsystemVendorId = cfg.SubsystemVendorId,
            SubsystemDeviceId = cfg.SubsystemDeviceId,
            ClassCode = cfg.ClassCode,
            Revision = cfg.Revision,
            HeaderLayout = cfg.HeaderLayout,
            MultifunctionBit = cfg.MultifunctionBit,
            BridgeBuses = cfg.BridgeBuses,
            Pcie = pcie,
            Acs = acs,
            Ari = ari,
            Sriov = sriov,
            Capabilities = caps,
            Visibility = vis,
            Config = cfg,
        };
    }
}

/// <summary>
/// One PCI function in an immutable <see cref="PciTopology"/>: the facts a source gave plus its place in the tree.
/// </summary>
public sealed class PciDevice
{
    internal PciDevice(PciDeviceFacts facts, int probeIndex)
    {
        Facts = facts;
        ProbeIndex = probeIndex;
    }

    /// <summary>The facts the source gave for this function.</summary>
    public PciDeviceFacts Facts { get; }

    /// <summary>The topology this function belongs to (set when the topology is built).</summary>
    public PciTopology Topology { get; internal set; } = null!;

    /// <summary>The function's address.</summary>
    public PciAddress Address => Facts.Address;
    /// <summary>Vendor ID.</summary>
    public ushort VendorId => Facts.VendorId;
    /// <summary>Device ID.</summary>
    public ushort DeviceId => Facts.DeviceId;
    /// <summary>24-bit class code, e.g. <c>0x060400</c>.</summary>
    public uint ClassCode => Facts.ClassCode;
    /// <summary>PCIe Device/Port Type; <see cref="PcieType.None"/> without a (visible) PCIe capability.</summary>
    public PcieType PcieType => Facts.Pcie?.Type ?? PcieType.None;
    /// <summary>True when a PCI Express capability is known (the kernel's <c>pci_is_pcie</c>).</summary>
    public bool IsPcie => Facts.Pcie is not null;
    /// <summary>The ACS capability; null when none or not visible.</summary>
    public AcsInfo? Acs => Facts.Acs;
    /// <summary>Bound driver name, or null.</summary>
    public string? Driver => Facts.Driver;

    /// <summary>A bridge (header type 1 or 2) with a bus below it.</summary>
    public bool IsBridge => Facts.HeaderLayout is 1 or 2;

    /// <summary>
    /// The kernel's <c>pdev->multifunction</c>: header type bit 7 on function 0, and always true for functions above 0
    /// (pci_scan_slot marks every function it finds after the first). When the source lacks the header byte, inferred
    /// from the presence of other functions in the slot (virtual functions do not count). Never true for an SR-IOV
    /// virtual function: <c>pci_iov_add_virtfn</c> adds VFs outside <c>pci_scan_slot</c> and leaves the flag clear.
    /// </summary>
    public bool IsMultifunction { get; internal set; }

    /// <summary>
    /// For an SR-IOV virtual function, its physical function (the PF whose SR-IOV capability places an enabled VF at
    /// this address: routing ID = PF + First VF Offset + n * VF Stride, PCIe r6.0 §9.3.3.10); null otherwise.
    /// </summary>
    public PciDevice? PhysicalFunction { get; internal set; }

    /// <summary>The VF's index under its PF (0-based, the kernel's <c>pci_iov_virtfn_devfn(pf, n)</c> order); -1 for any other device.</summary>
    public int VfIndex { get; internal set; } = -1;

    /// <summary>True for an SR-IOV virtual function (it has a <see cref="PhysicalFunction"/>).</summary>
    public bool IsVirtualFunction => PhysicalFunction is not null;

    /// <summary>Position in the kernel's probe order (devices of a bus before its child buses), from 0.</summary>
    public int ProbeIndex { get; internal set; }

    /// <summary>The bus this function sits on.</summary>
    public PciBus Bus { get; internal set; } = null!;

    /// <summary>The bus below this bridge, or null.</summary>
    public PciBus? Subordinate { get; internal set; }

    /// <summary>The bridge above this device (the bus's <c>self</c>), or null on a root or virtual bus.</summary>
    public PciDevice? Parent => Bus.Self;

    /// <summary>True when the device sits directly on a root bus (integrated into the root complex).</summary>
    public bool IsOnRootBus => Bus.IsRoot;

    /// <summary>The address in full form, <c>0000:00:1f.3</c>.</summary>
    public override string ToString() => Address.ToString();
}

/// <summary>A PCI bus: a root bus of a host bridge, the secondary bus of a bridge, or a virtual bus (SR-IOV VFs).</summary>
public sealed class PciBus
{
    internal PciBus(int domain, byte number, PciDevice? self, PciBus? parent)
    {
        Domain = domain;
        Number = number;
        Self = self;
        Parent = parent;
    }

    /// <summary>PCI domain (segment).</summary>
    public int Domain { get; }
    /// <summary>Bus number.</summary>
    public byte Number { get; }
    /// <summary>The bridge that leads to this bus; null for root and virtual buses.</summary>
    public PciDevice? Self { get; }
    /// <summary>The bus above; null for a root bus.</summary>
    public PciBus? Parent { get; }
    /// <summary>True for a root bus (no parent bus).</summary>
    public bool IsRoot => Parent is null;
    /// <summary>Functions on this bus in devfn order.</summary>
    public IReadOnlyList<PciDevice> Devices => _devices;
    /// <summary>Buses directly below this one, in the order the kernel adds them.</summary>
    public IReadOnlyList<PciBus> Children => _children;

    internal readonly List<PciDevice> _devices = new();
    internal readonly List<PciBus> _children = new();

    /// <summary>Sysfs-style name: <c>0000:03</c>.</summary>
    public override string ToString() => $"{Domain:x4}:{Number:x2}";
}
