using IommuKit.Pci;

namespace IommuKit;

/// <summary>The kind of IOMMU hardware a unit is.</summary>
public enum IommuKind
{
    /// <summary>Not known which IOMMU the unit is.</summary>
    Unknown,
    /// <summary>Intel VT-d (<c>intel-iommu</c>, units named <c>dmarN</c>).</summary>
    Intel,
    /// <summary>AMD-Vi (<c>amd-iommu</c>, units named <c>ivhdN</c>).</summary>
    Amd,
    /// <summary>virtio-iommu (the unit is named after its PCI function).</summary>
    Virtio,
    /// <summary>ARM SMMU v2/v3.</summary>
    ArmSmmu,
}

/// <summary>
/// What kind of source a machine was read from. It decides what the source's silence means: a sysfs-shaped source
/// (a live host, a directory root, a snapshot) shows every registered IOMMU unit, so no unit means no IOMMU; an lspci
/// dump says nothing about units.
/// </summary>
public enum MachineProvenance
{
    /// <summary>Built in code (tests, what-if rewrites of unknown origin): nothing is implied by what is absent.</summary>
    Built,
    /// <summary><c>/sys</c> and <c>/proc</c>: a live host, a directory root or a snapshot tarball.</summary>
    Sysfs,
    /// <summary><c>lspci -vvnn</c> text or <c>-xxx</c> hex.</summary>
    Lspci,
    /// <summary>An IommuKit JSON machine.</summary>
    Json,
}

/// <summary>An IOMMU unit as <c>/sys/class/iommu/NAME</c> shows it.</summary>
/// <param name="Name">Unit name: <c>dmar0</c>, <c>ivhd0</c>, <c>0000:00:1d.0</c>.</param>
/// <param name="Devices">Addresses of the PCI functions the unit lists under <c>devices/</c>.</param>
/// <param name="Registers">Register files of the unit (<c>intel-iommu/cap</c>, <c>intel-iommu/ecap</c>, <c>amd-iommu/features</c>…) by relative name, raw text trimmed; empty when the source lacks them.</param>
public sealed record IommuUnit(string Name, IommuKind Kind, IReadOnlyList<PciAddress> Devices, IReadOnlyDictionary<string, string> Registers)
{
    /// <summary>VT-d capability register (<c>intel-iommu/cap</c>), when present.</summary>
    public ulong? IntelCap => Registers.TryGetValue("intel-iommu/cap", out var v) && TryHex(v, out var x) ? x : null;

    /// <summary>VT-d extended capability register (<c>intel-iommu/ecap</c>), when present.</summary>
    public ulong? IntelEcap => Registers.TryGetValue("intel-iommu/ecap", out var v) && TryHex(v, out var x) ? x : null;

    /// <summary>VT-d Caching Mode (CAP bit 7): the kernel then uses strict invalidation. Null when the register is unknown.</summary>
    public bool? CachingMode => IntelCap is { } c ? (c & (1UL << 7)) != 0 : null;

    /// <summary>VT-d pass-through support (ECAP bit 6). Null when unknown.</summary>
    public bool? PassThrough => IntelEcap is { } e ? (e & (1UL << 6)) != 0 : null;

    private static bool TryHex(string s, out ulong v)
    {
        s = s.Trim();
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) s = s[2..];
        return ulong.TryParse(s, System.Globalization.NumberStyles.AllowHexSpecifier, null, out v);
    }
}

/// <summary>A reserved region line of <c>iommu_groups/N/reserved_regions</c>: start, inclusive end, type name.</summary>
public readonly record struct ReservedRegionText(ulong Start, ulong End, string Type)
{
    /// <summary>Exactly the kernel's format: <c>0x%016llx 0x%016llx %s</c>.</summary>
    public override string ToString() => $"0x{Start:x16} 0x{End:x16} {Type}";
}

/// <summary>An IOMMU group as the kernel reported it in <c>/sys/kernel/iommu_groups/N</c>.</summary>
public sealed record KernelGroup(int Id, string? Type, IReadOnlyList<ReservedRegionText> ReservedRegions, IReadOnlyList<PciAddress> Devices, string? Name = null);

/// <summary>
/// A machine as a source described it: the PCI topology plus host facts (kernel release, command line, IOMMU units,
/// the kernel's own groups when the source has them) and the warnings raised while loading. A record so that a derived
/// machine (another command line, the kernel's groups removed) is written <c>machine with { ... }</c> and keeps every
/// other fact.
/// </summary>
public sealed record Machine
{
    /// <summary>The PCI functions, buses and bridges of the machine.</summary>
    public required PciTopology Topology { get; init; }
    /// <summary>Where the machine came from, for messages: a path, "live host", or "bundled example machine".</summary>
    public required string Origin { get; init; }
    /// <summary>What kind of source the machine came from (<see cref="MachineProvenance"/>).</summary>
    public MachineProvenance Provenance { get; init; }
    /// <summary><c>uname -r</c>, e.g. <c>6.1.0-56-amd64</c>; null when unknown.</summary>
    public string? KernelRelease { get; init; }
    /// <summary><c>/proc/cmdline</c> without the trailing newline; null when unknown.</summary>
    public string? CommandLine { get; init; }
    /// <summary>The IOMMU units the source reported; empty when none or unknown.</summary>
    public IReadOnlyList<IommuUnit> IommuUnits { get; init; } = [];
    /// <summary>
    /// The kernel's groups, or null when the source does not say (an lspci dump without "IOMMU group" lines, a snapshot
    /// taken without groups). An empty list means the kernel made no groups (IOMMU off).
    /// </summary>
    public IReadOnlyList<KernelGroup>? KernelGroups { get; init; }
    /// <summary>Physical slots: slot name to the address (domain:bus:device) it holds, from <c>/sys/bus/pci/slots</c>.</summary>
    public IReadOnlyDictionary<string, string> Slots { get; init; } = new Dictionary<string, string>();
    /// <summary>
    /// The firmware's IOMMU tables (DMAR, IVRS, IORT) when the source carries them (a snapshot taken as root);
    /// <see cref="FirmwareTables.None"/> otherwise.
    /// </summary>
    public FirmwareTables Firmware { get; init; } = FirmwareTables.None;
    /// <summary>The PCI host bridges' ACPI devices in ACPI namespace order (<see cref="HostBridgeFirmware.NamespaceOrder"/>); empty when the source does not say.</summary>
    public IReadOnlyList<HostBridgeFirmware> HostBridges { get; init; } = [];
    /// <summary>
    /// What the host uses its functions for (root, <c>/boot</c> and swap devices, the default route's NIC, the boot VGA
    /// device, the console framebuffer, keyboards' controllers), or null when the source does not say (an lspci dump, a
    /// JSON machine, a snapshot taken before these were captured).
    /// </summary>
    public HostUseFacts? HostUses { get; init; }
    /// <summary>Problems that did not stop the load (a device skipped, a fact that could not be read), one line each.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    /// <summary>The IOMMU kind of the machine's units (the first unit's), or Unknown when there is none.</summary>
    public IommuKind IommuKind => IommuUnits.Count > 0 ? IommuUnits[0].Kind : IommuKind.Unknown;
}
