namespace IommuKit.Pci;

// The firmware's own description of the IOMMUs (ACPI DMAR for Intel VT-d, IVRS for AMD-Vi, IORT for Arm SMMU), as
// decoded by Sources/Acpi. Values are the table's, not yet resolved against a topology: a DMAR device scope is a start
// bus plus a path of (device, function) steps through bridges, which only the topology turns into an address
// (dmar_find_matched_scope / dmar_insert_dev_scope); an IVRS entry is a 16-bit requester ID in the unit's segment.

/// <summary>The firmware tables a source carried; every member is null when the source lacks that table.</summary>
/// <param name="Dmar">Intel VT-d DMA Remapping table (<c>/sys/firmware/acpi/tables/DMAR</c>).</param>
/// <param name="Ivrs">AMD I/O Virtualization Reporting Structure (<c>IVRS</c>).</param>
/// <param name="Iort">Arm IO Remapping Table (<c>IORT</c>).</param>
public sealed record FirmwareTables(DmarTable? Dmar = null, IvrsTable? Ivrs = null, IortTable? Iort = null)
{
    /// <summary>No table at all.</summary>
    public static FirmwareTables None { get; } = new();

    /// <summary>True when at least one table is present.</summary>
    public bool Any => Dmar is not null || Ivrs is not null || Iort is not null;
}

/// <summary>The 36-byte header every ACPI table starts with (ACPI 6.5 §5.2.6).</summary>
/// <param name="Signature">Four ASCII characters: <c>DMAR</c>, <c>IVRS</c>, <c>IORT</c>.</param>
/// <param name="Length">Bytes of the whole table, header included.</param>
/// <param name="ChecksumValid">The bytes sum to zero modulo 256.</param>
public sealed record AcpiTableHeader(string Signature, uint Length, byte Revision, bool ChecksumValid, string OemId, string OemTableId, uint OemRevision);

// ---- DMAR (Intel VT-d specification, chapter 8 "BIOS Considerations") ----

/// <summary>A DMAR device scope's kind (VT-d spec §8.3.1, <c>ACPI_DMAR_SCOPE_TYPE_*</c>).</summary>
public enum DmarScopeKind : byte
{
    /// <summary>A PCI endpoint.</summary>
    Endpoint = 1,
    /// <summary>A PCI-PCI bridge: the scope covers the bridge and everything below it.</summary>
    Bridge = 2,
    /// <summary>An I/O APIC.</summary>
    IoApic = 3,
    /// <summary>An HPET timer block.</summary>
    Hpet = 4,
    /// <summary>An ACPI namespace device (named by an ANDD structure with the same enumeration id).</summary>
    Namespace = 5,
}

/// <summary>One step of a device-scope path: device and function on the bus the previous step's bridge leads to.</summary>
public readonly record struct DmarPathStep(byte Device, byte Function);

/// <summary>
/// One device scope (VT-d spec §8.3.1): the device is reached from <paramref name="StartBus"/> by following
/// <paramref name="Path"/>; every step but the last is a bridge whose secondary bus the next step sits on.
/// </summary>
/// <param name="EnumerationId">IOAPIC id, HPET number or ANDD device number; 0 for PCI scopes.</param>
public sealed record DmarDeviceScope(DmarScopeKind Kind, byte EnumerationId, byte StartBus, IReadOnlyList<DmarPathStep> Path)
{
    /// <summary>The device the path names when no bridge is crossed (a one-step path), else null (needs the topology).</summary>
    public PciAddress? DirectAddress(int segment) =>
        Path.Count == 1 ? new PciAddress(segment, StartBus, Path[0].Device, Path[0].Function) : null;
}

/// <summary>
/// A DMA remapping hardware unit (DRHD, VT-d spec §8.3): one IOMMU and the devices it translates for.
/// </summary>
/// <param name="Index">Position among the table's DRHDs, from 0, in table order.</param>
/// <param name="IncludePciAll">Flag bit 0, INCLUDE_PCI_ALL: the unit covers every device of its segment that no other unit's scope names.</param>
/// <param name="RegisterBase">Physical address of the unit's register set.</param>
public sealed record DmarUnit(int Index, int Segment, bool IncludePciAll, ulong RegisterBase, IReadOnlyList<DmarDeviceScope> Scopes);

/// <summary>A reserved memory region report (RMRR, VT-d spec §8.4): memory the scoped devices use for DMA before and after the OS takes over.</summary>
/// <param name="Base">First byte (4 KiB aligned).</param>
/// <param name="EndInclusive">Last byte, inclusive, as the table states it.</param>
public sealed record DmarReservedMemory(int Segment, ulong Base, ulong EndInclusive, IReadOnlyList<DmarDeviceScope> Scopes);

/// <summary>A root port ATS capability report (ATSR, VT-d spec §8.5).</summary>
/// <param name="AllPorts">Flag bit 0, ALL_PORTS: every root port of the segment supports ATS.</param>
public sealed record DmarAtsr(int Segment, bool AllPorts, IReadOnlyList<DmarDeviceScope> Scopes);

/// <summary>A SoC integrated address translation cache report (SATC, VT-d spec §8.8).</summary>
/// <param name="AtcRequired">Flag bit 0, ATC_REQUIRED: the devices need their ATC enabled to work.</param>
public sealed record DmarSatc(int Segment, bool AtcRequired, IReadOnlyList<DmarDeviceScope> Scopes);

/// <summary>An ACPI namespace device declaration (ANDD, VT-d spec §8.6): names the device of a <see cref="DmarScopeKind.Namespace"/> scope.</summary>
public sealed record DmarNamespaceDevice(byte DeviceNumber, string ObjectName);

/// <summary>The decoded DMAR table.</summary>
/// <param name="HostAddressWidth">DMA physical address width in bits (the table stores width − 1).</param>
/// <param name="Flags">Bit 0 INTR_REMAP, bit 1 X2APIC_OPT_OUT, bit 2 DMA_CTRL_PLATFORM_OPT_IN.</param>
/// <param name="Units">DRHDs in table order (the kernel's registration order differs: see <see cref="RegistrationOrder"/>).</param>
public sealed record DmarTable(
    AcpiTableHeader Header,
    int HostAddressWidth,
    byte Flags,
    IReadOnlyList<DmarUnit> Units,
    IReadOnlyList<DmarReservedMemory> ReservedMemory,
    IReadOnlyList<DmarAtsr> Atsrs,
    IReadOnlyList<DmarSatc> Satcs,
    IReadOnlyList<DmarNamespaceDevice> NamespaceDevices)
{
    /// <summary>
    /// The units in the order the kernel keeps them on <c>dmar_drhd_units</c>: <c>dmar_register_drhd_unit</c> adds a
    /// unit with INCLUDE_PCI_ALL at the tail and every other unit at the head, so units without the flag come first in
    /// reverse table order, then the INCLUDE_PCI_ALL units in table order. <c>for_each_drhd_unit</c>, and with it
    /// <c>iommu_device_register</c> per unit in <c>intel_iommu_init</c>, walks this order.
    /// </summary>
    public IReadOnlyList<DmarUnit> RegistrationOrder
    {
        get
        {
            var list = new List<DmarUnit>(Units.Count);
            foreach (var u in Units)
            {
                if (u.IncludePciAll) list.Add(u);
                else list.Insert(0, u);
            }
            return list;
        }
    }
}

// ---- IVRS (AMD I/O Virtualization Technology specification 48882, §5.2) ----

/// <summary>How an IVHD device entry was written (the entry's type byte, <c>IVHD_DEV_*</c> in amd/init.c).</summary>
public enum IvhdEntryKind : byte
{
    /// <summary>0x01 IVHD_DEV_ALL: every requester ID of the segment.</summary>
    All = 0x01,
    /// <summary>0x02 IVHD_DEV_SELECT / 0x46 IVHD_DEV_EXT_SELECT: one requester ID.</summary>
    Select = 0x02,
    /// <summary>0x03 … 0x04 (or 0x47 … 0x04): an inclusive range of requester IDs.</summary>
    Range = 0x03,
    /// <summary>0x42 IVHD_DEV_ALIAS: one requester ID whose DMA arrives as another ID.</summary>
    AliasSelect = 0x42,
    /// <summary>0x43 … 0x04 IVHD_DEV_ALIAS_RANGE: a range whose DMA arrives as one ID.</summary>
    AliasRange = 0x43,
}

/// <summary>
/// Requester IDs an IVHD names (<paramref name="First"/>..<paramref name="Last"/> inclusive, <c>bus &lt;&lt; 8 | devfn</c>
/// in the unit's segment). For aliases, <paramref name="Alias"/> is the ID the IOMMU sees (<c>amd_iommu_alias_table</c>).
/// </summary>
/// <param name="Setting">The DTE setting byte (INITPASS, EINTPASS, NMIPASS, SYSMGT, LINT0/1).</param>
/// <param name="Extended">Written as an extended (8-byte, 0x46/0x47) entry.</param>
public readonly record struct IvhdDeviceRange(IvhdEntryKind Kind, ushort First, ushort Last, byte Setting, ushort? Alias = null, bool Extended = false);

/// <summary>The variety of an IVHD special device entry (0x48): what the handle numbers.</summary>
public enum IvhdSpecialVariety : byte
{
    /// <summary>The handle is an I/O APIC ID.</summary>
    IoApic = 1,
    /// <summary>The handle is an HPET number.</summary>
    Hpet = 2,
}

/// <summary>An IVHD special device (IOAPIC/HPET) with the requester ID it uses (entry 0x48, <c>IVHD_DEV_SPECIAL</c>).</summary>
public readonly record struct IvhdSpecial(IvhdSpecialVariety Variety, byte Handle, ushort RequesterId);

/// <summary>An ACPI device (entry 0xF0, <c>IVHD_DEV_ACPI_HID</c>): a non-PCI device behind the IOMMU with the requester ID it uses.</summary>
public sealed record IvhdAcpiDevice(ushort RequesterId, string Hid, string Cid, string Uid);

/// <summary>
/// An I/O virtualization hardware definition (IVHD, types 0x10, 0x11, 0x40): one IOMMU and the requester IDs it covers.
/// A firmware usually describes each IOMMU once per type; the kernel uses only the blocks of the highest type it
/// supports (<see cref="IvrsTable.EffectiveBlocks"/>).
/// </summary>
/// <param name="Type">0x10, 0x11 or 0x40.</param>
/// <param name="IommuRequesterId">Requester ID of the IOMMU's own PCI function (e.g. 00:00.2); the kernel gives that function no group.</param>
public sealed record IvhdBlock(
    byte Type, byte Flags, ushort IommuRequesterId, ushort CapabilityOffset, ulong BaseAddress, int Segment,
    IReadOnlyList<IvhdDeviceRange> Devices, IReadOnlyList<IvhdSpecial> Specials, IReadOnlyList<IvhdAcpiDevice> AcpiDevices)
{
    /// <summary>The IOMMU's own PCI function.</summary>
    public PciAddress IommuAddress => PciAddress.FromDevfn(Segment, (byte)(IommuRequesterId >> 8), (byte)IommuRequesterId);

    /// <summary>Whether a device entry of this block names <paramref name="requesterId"/>.</summary>
    public bool Covers(ushort requesterId)
    {
        foreach (var d in Devices)
            if (d.Kind == IvhdEntryKind.All || requesterId >= d.First && requesterId <= d.Last) return true;
        return false;
    }
}

/// <summary>An I/O virtualization memory definition (IVMD, types 0x20 all, 0x21 one device, 0x22 a range): memory the devices DMA to from boot.</summary>
/// <param name="Flags">Bit 0 unity mapping, bit 1 IR, bit 2 IW, bit 3 exclusion range.</param>
/// <param name="RequesterId">Type 0x21: the device; type 0x22: the first of the range.</param>
/// <param name="AuxiliaryId">Type 0x22: the last of the range.</param>
/// <param name="Length">Bytes.</param>
public sealed record IvmdBlock(byte Type, byte Flags, ushort RequesterId, ushort AuxiliaryId, ulong Start, ulong Length)
{
    /// <summary>True when the range applies to <paramref name="requesterId"/>.</summary>
    public bool AppliesTo(ushort requesterId) => Type switch
    {
        0x20 => true,
        0x21 => requesterId == RequesterId,
        _ => requesterId >= RequesterId && requesterId <= AuxiliaryId,
    };
}

/// <summary>The decoded IVRS table.</summary>
/// <param name="IvInfo">The IVinfo field (virtual/physical address sizes, EFR support).</param>
/// <param name="Blocks">Every IVHD in table order, of every type.</param>
public sealed record IvrsTable(AcpiTableHeader Header, uint IvInfo, IReadOnlyList<IvhdBlock> Blocks, IReadOnlyList<IvmdBlock> MemoryDefinitions)
{
    /// <summary>
    /// The IVHD type the kernel uses (<c>get_highest_supported_ivhd_type</c>): walking the blocks while their type is
    /// one it supports (at most 0x40), the type of the last block that describes the same IOMMU as the first; 0 when
    /// there is no block.
    /// </summary>
    public byte EffectiveType
    {
        get
        {
            if (Blocks.Count == 0) return 0;
            byte last = Blocks[0].Type;
            ushort devid = Blocks[0].IommuRequesterId;
            foreach (var b in Blocks)
            {
                if (b.Type > 0x40) break;
                if (b.IommuRequesterId == devid) last = b.Type;
            }
            return last;
        }
    }

    /// <summary>The blocks of <see cref="EffectiveType"/>, one per IOMMU, in table order (the kernel's <c>init_iommu_all</c> order).</summary>
    public IReadOnlyList<IvhdBlock> EffectiveBlocks
    {
        get
        {
            byte t = EffectiveType;
            var list = new List<IvhdBlock>();
            foreach (var b in Blocks)
                if (b.Type == t) list.Add(b);
            return list;
        }
    }
}

// ---- IORT (Arm DEN 0049) ----

/// <summary>IORT node types (DEN 0049 table 4).</summary>
public enum IortNodeKind : byte
{
    /// <summary>An ITS group (GIC interrupt translation services).</summary>
    ItsGroup = 0,
    /// <summary>A named component (an ACPI namespace device).</summary>
    NamedComponent = 1,
    /// <summary>A PCI root complex.</summary>
    RootComplex = 2,
    /// <summary>SMMUv1 or SMMUv2.</summary>
    Smmu = 3,
    /// <summary>SMMUv3.</summary>
    SmmuV3 = 4,
    /// <summary>PMCG (SMMUv3 performance monitor counter group).</summary>
    Pmcg = 5,
    /// <summary>RMR (reserved memory range).</summary>
    ReservedMemoryRange = 6,
}

/// <summary>
/// One ID mapping (DEN 0049 §3.4): input IDs <paramref name="InputBase"/> .. <paramref name="InputBase"/> +
/// <paramref name="IdCount"/> (the table stores the count minus one, as here) map to output IDs from
/// <paramref name="OutputBase"/> on the node at table offset <paramref name="OutputReference"/>.
/// </summary>
/// <param name="SingleMapping">Flag bit 0: the node's own ID, not a range.</param>
public readonly record struct IortIdMapping(uint InputBase, uint IdCount, uint OutputBase, uint OutputReference, bool SingleMapping);

/// <summary>An IORT node: its offset in the table (what mappings reference), kind and mappings.</summary>
/// <param name="Segment">Root complex: its PCI segment; otherwise 0.</param>
/// <param name="BaseAddress">SMMU nodes: the register base; otherwise 0.</param>
public sealed record IortNode(uint Offset, IortNodeKind Kind, byte Revision, int Segment, ulong BaseAddress, IReadOnlyList<IortIdMapping> Mappings);

/// <summary>The decoded IORT table.</summary>
public sealed record IortTable(AcpiTableHeader Header, IReadOnlyList<IortNode> Nodes)
{
    /// <summary>The node at table offset <paramref name="offset"/>, or null.</summary>
    public IortNode? NodeAt(uint offset)
    {
        foreach (var n in Nodes)
            if (n.Offset == offset) return n;
        return null;
    }
}

/// <summary>
/// A PCI host bridge's ACPI device, from the root bus's <c>firmware_node</c> link (<c>sys/devices/pci0000:40/firmware_node</c>).
/// </summary>
/// <param name="Domain">The root bus's PCI domain (segment).</param>
/// <param name="Bus">The root bus number.</param>
/// <param name="AcpiDevice">The ACPI device's sysfs name, <c>HID:instance</c> (<c>PNP0A08:01</c>).</param>
/// <param name="AcpiPath">Its namespace path (<c>\_SB_.S0D1</c>), when the source has the <c>path</c> file.</param>
public sealed record HostBridgeFirmware(int Domain, byte Bus, string AcpiDevice, string? AcpiPath)
{
    /// <summary>
    /// ACPI namespace order, the order <c>acpi_bus_scan</c> creates the devices and with them the root buses
    /// (<c>acpi_pci_root_add</c> → <c>pci_acpi_scan_root</c>): <c>acpi_device_set_name</c> numbers the instances of
    /// each HID in creation order, so for bridges of one HID the instance number is the namespace order. Bridges of
    /// different HIDs (PNP0A03 and PNP0A08 on one machine) cannot be ordered by name alone and keep HID order.
    /// </summary>
    public static Comparison<HostBridgeFirmware> NamespaceOrder { get; } = (a, b) =>
    {
        var (ha, ia) = Split(a.AcpiDevice);
        var (hb, ib) = Split(b.AcpiDevice);
        int c = string.CompareOrdinal(ha, hb);
        if (c != 0) return c;
        c = ia.CompareTo(ib);
        return c != 0 ? c : (a.Domain, a.Bus).CompareTo((b.Domain, b.Bus));
    };

    private static (string Hid, int Instance) Split(string name)
    {
        int colon = name.LastIndexOf(':');
        return colon > 0 && int.TryParse(name.AsSpan(colon + 1), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out int i)
            ? (name[..colon], i) : (name, -1);
    }
}
