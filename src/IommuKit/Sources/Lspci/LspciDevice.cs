using System.Globalization;
using IommuKit.Pci;

namespace IommuKit.Sources.Lspci;

/// <summary>Which capability's detail lines are being read (lspci prints them indented below the capability line).</summary>
internal enum LspciCapContext
{
    None,
    Express,
    Acs,
    Ari,
    Sriov,
    Other,
}

/// <summary>
/// Everything one device record of an lspci dump said, accumulated line by line, then turned into
/// <see cref="PciDeviceFacts"/> by <see cref="ToFacts"/>. Null fields were not shown.
/// </summary>
internal sealed class LspciDevice
{
    public LspciDevice(PciAddress address, int headerLine, string description)
    {
        Address = address;
        HeaderLine = headerLine;
        Description = description;
    }

    public PciAddress Address { get; }
    /// <summary>1-based line of the device header line.</summary>
    public int HeaderLine { get; }
    public int LastLine { get; set; }
    public string Description { get; }

    // Header line ("Class [cccc]: Vendor Device [vvvv:dddd] (rev rr) (prog-if pp [...])").
    public bool IdsKnown;
    public ushort VendorId, DeviceId;
    public ushort? ClassBaseSub; // 16-bit base class + sub-class, e.g. 0x0604
    public byte ProgIf, Revision;

    public ushort? SubsystemVendorId, SubsystemDeviceId;
    public (byte Primary, byte Secondary, byte Subordinate)? BridgeBuses;
    public string? Driver;
    public List<string>? KernelModules;
    public int? KernelGroup;
    public string? PhysicalSlot;

    /// <summary>Body lines seen (anything below the header line except hex).</summary>
    public int BodyLines;
    /// <summary>Body lines that were indented, as lspci prints them (a paste may have lost the indentation).</summary>
    public int IndentedLines;
    /// <summary>"Control:" was printed: the dump is at least -vv.</summary>
    public bool SawControl;
    public bool AccessDenied;
    public readonly List<PciCapability> Capabilities = new();
    public LspciCapContext Context;

    // PCI Express capability: "Express (v2) Root Port (Slot+), MSI 00".
    public int PcieOffset = -1, PcieVersion;
    public PcieType? PcieType;
    public bool PcieSlot, PcieDevCapSeen;
    public uint SlotCapabilities, LinkCapabilities;
    public ushort LinkStatus;

    public int AcsOffset = -1;
    public AcsFlags? AcsCap, AcsCtl;

    public int AriOffset = -1;
    public byte? AriNext;

    public int SriovOffset = -1;
    public ushort? SriovTotal, SriovNum, SriovFirst, SriovStride, SriovVfDevice;

    // Hex dump ("00: 86 80 ..." lines): bytes in order, from offset 0.
    public byte[]? Hex;
    public int HexLength;
    public bool HexBroken;
    public bool HexPartialLine;

    /// <summary>Capabilities not visible (non-root) or never printed (plain lspci, lspci -k).</summary>
    public bool CapabilitiesUnknown => AccessDenied || !SawDetail;

    /// <summary>"Flags:" was printed at the device level: the dump is lspci -v.</summary>
    public bool SawFlags;

    /// <summary>
    /// The record shows the verbose detail that lists capabilities (lspci -v or more): a "Control:" (-vv) or
    /// "Flags:" (-v) line, a bridge's "Bus:" line or a capability. Without it (plain lspci, lspci -k) the
    /// capabilities were never printed, and so are unknown.
    /// </summary>
    public bool SawDetail => SawControl || SawFlags || BridgeBuses is not null || Capabilities.Count > 0 || PcieType is not null || AcsOffset >= 0;

    /// <summary>The ACS capability line was shown but not its ACSCap/ACSCtl lines (lspci -v, not -vv).</summary>
    public bool AcsDetailMissing => AcsOffset >= 0 && (AcsCap is null || AcsCtl is null);

    public bool HasUsableHex => HexLength >= ConfigSpace.UnprivilegedSize && !HexBroken;

    /// <summary>Turns what the record showed into facts; hex bytes win where present, text fills in the rest.</summary>
    /// <param name="warn">Receives one-line problems found while decoding (a malformed capability list in the hex).</param>
    /// <param name="dumpHasExtended">Some device of the dump has more than 256 bytes of hex (an -xxxx dump): lspci then
    /// printed all the config space each device has, so 256 bytes is the whole of this one (pciutils lspci.c
    /// show_hex_dump stops at 256 when the extended space cannot be read, as for a PCIe device below a conventional bridge).</param>
    public PciDeviceFacts ToFacts(string origin, Action<string> warn, bool dumpHasExtended)
    {
        PciDeviceFacts facts = HasUsableHex ? FromHex(origin, warn) : FromText();
        if (HasUsableHex && dumpHasExtended && HexLength >= ConfigSpace.ConventionalSize && facts.Visibility == ConfigVisibility.NoExtended)
            facts = facts with { Visibility = ConfigVisibility.Full };
        return facts with
        {
            Driver = Driver,
            KernelModules = KernelModules is null ? [] : KernelModules,
            KernelGroup = KernelGroup,
            // One-line fields, escaped as every source escapes them (a tab inside a name would not survive an export).
            PhysicalSlot = TextSafety.EscapeOrNull(PhysicalSlot),
            Description = TextSafety.EscapeOrNull(Description),
        };
    }

    private PciDeviceFacts FromHex(string origin, Action<string> warn)
    {
        var cfg = new ConfigSpace(Hex.AsSpan(0, HexLength));
        var facts = PciDeviceFacts.FromConfig(Address, cfg, out string? error);
        if (error is not null)
            warn($"{origin}:{HeaderLine}: {Address}: {error}; capabilities after it are ignored");
        if (IdsKnown && (cfg.VendorId != VendorId || cfg.DeviceId != DeviceId))
            warn($"{origin}:{HeaderLine}: {Address}: the header line says [{VendorId:x4}:{DeviceId:x4}] but the hex dump says [{cfg.VendorId:x4}:{cfg.DeviceId:x4}]; using the hex dump");
        // A 64- or 256-byte hex dump next to -vv text that showed the capabilities: the text knows more.
        if (!cfg.HasExtendedSpace && BodyLines > 0 && !AccessDenied && Capabilities.Count > 0)
        {
            var text = FromText();
            facts = facts with
            {
                Pcie = facts.Pcie ?? text.Pcie,
                Acs = facts.Acs ?? text.Acs,
                Ari = facts.Ari ?? text.Ari,
                Sriov = facts.Sriov ?? text.Sriov,
                Capabilities = text.Capabilities.Count > facts.Capabilities.Count ? text.Capabilities : facts.Capabilities,
                Visibility = text.Visibility,
            };
        }
        return facts;
    }

    private PciDeviceFacts FromText()
    {
        ushort cls = ClassBaseSub ?? 0;
        // lspci prints "Bus: primary=..." for header types 1 and 2 only (pciutils lspci.c show_htype1/show_htype2).
        int layout = cls == 0x0607 ? 2 : (BridgeBuses is not null || cls is 0x0604 or 0x0609) ? 1 : 0;
        PcieInfo? pcie = PcieType is { } t
            ? new PcieInfo(PcieOffset, PcieVersion, t, PcieSlot, LinkCapabilities: LinkCapabilities, LinkStatus: LinkStatus,
                SlotCapabilities: PcieSlot ? SlotCapabilities : 0)
            : null;
        AcsInfo? acs = AcsCap is { } cap && AcsCtl is { } ctl ? new AcsInfo(AcsOffset, cap, ctl) : null;
        AriInfo? ari = AriNext is { } next ? new AriInfo(AriOffset, next) : null;
        SriovInfo? sriov = SriovTotal is { } total && SriovNum is { } num && SriovFirst is { } first && SriovStride is { } stride && SriovVfDevice is { } vfdev
            ? new SriovInfo(SriovOffset, total, num, first, stride, vfdev)
            : null;
        ConfigVisibility vis = CapabilitiesUnknown ? ConfigVisibility.HeaderOnly
            : AcsDetailMissing ? ConfigVisibility.NoExtended
            : ConfigVisibility.Full;
        return new PciDeviceFacts
        {
            Address = Address,
            VendorId = VendorId,
            DeviceId = DeviceId,
            // Type 0 headers carry the subsystem ids at 0x2c; a bridge's "Subsystem:" line comes from its SSVID
            // capability, which FromConfig does not decode either, so both sources agree.
            SubsystemVendorId = layout == 0 ? SubsystemVendorId ?? 0 : (ushort)0,
            SubsystemDeviceId = layout == 0 ? SubsystemDeviceId ?? 0 : (ushort)0,
            ClassCode = ((uint)cls << 8) | ProgIf,
            Revision = Revision,
            HeaderLayout = layout,
            MultifunctionBit = null, // lspci text does not print the header type byte
            BridgeBuses = BridgeBuses,
            Pcie = vis == ConfigVisibility.HeaderOnly ? null : pcie,
            Acs = acs,
            Ari = ari,
            Sriov = sriov,
            Capabilities = Capabilities.ToArray(),
            Visibility = vis,
        };
    }
}
