using System.Globalization;

namespace IommuKit.Sources.Lspci;

/// <summary>
/// The names lspci prints after <c>Capabilities: [off]</c> (pciutils <c>ls-caps.c</c> for standard capabilities,
/// <c>ls-ecaps.c</c> for extended ones), mapped back to capability IDs.
/// </summary>
internal static class LspciCapabilityNames
{
    // Order matters where one name is a prefix of another ("MSI-X" before "MSI", "AGP3"/"AGP version").
    private static readonly (string Prefix, ushort Id)[] s_standard =
    [
        ("Power Management", 0x01),
        ("AGP version", 0x02),
        ("AGP3", 0x0e),
        ("Vital Product Data", 0x03),
        ("Slot ID", 0x04),
        ("Slot Identification", 0x04),
        ("MSI-X", 0x11),
        ("MSI", 0x05),
        ("CompactPCI hot-swap", 0x06),
        ("PCI-X", 0x07),
        ("HyperTransport", 0x08),
        ("Vendor Specific Information", 0x09),
        ("Debug port", 0x0a),
        ("CompactPCI central resource control", 0x0b),
        ("Hot-plug capable", 0x0c),
        ("Subsystem", 0x0d),
        ("Secure device", 0x0f),
        ("Express", 0x10),
        ("SATA HBA", 0x12),
        ("PCI Advanced Features", 0x13),
        ("Enhanced Allocation", 0x14),
        ("Flattening Portal Bridge", 0x15),
    ];

    private static readonly (string Prefix, ushort Id)[] s_extended =
    [
        ("Null", 0x00),
        ("Advanced Error Reporting", 0x01),
        ("Virtual Channel", 0x02), // lspci prints the same name for ID 0x09 (MFVC-capable VC)
        ("Device Serial Number", 0x03),
        ("Power Budgeting", 0x04),
        ("Root Complex Link", 0x05),
        ("Root Complex Internal Link", 0x06),
        ("Root Complex Event Collector", 0x07),
        ("Multi-Function Virtual Channel", 0x08),
        ("Root Complex Register Block", 0x0a),
        ("Vendor Specific Information", 0x0b),
        ("Access Control Services", 0x0d),
        ("Alternative Routing-ID Interpretation", 0x0e),
        ("Address Translation Service", 0x0f),
        ("Single Root I/O Virtualization", 0x10),
        ("Multi-Root I/O Virtualization", 0x11),
        ("Multicast", 0x12),
        ("Page Request Interface", 0x13),
        ("Physical Resizable BAR", 0x15),
        ("Resizable BAR", 0x15),
        ("Dynamic Power Allocation", 0x16),
        ("Transaction Processing Hints", 0x17),
        ("Latency Tolerance Reporting", 0x18),
        ("Secondary PCI Express", 0x19),
        ("Protocol Multiplexing", 0x1a),
        ("Process Address Space ID", 0x1b),
        ("LN Requester", 0x1c),
        ("Downstream Port Containment", 0x1d),
        ("L1 PM Substates", 0x1e),
        ("Precision Time Measurement", 0x1f),
        ("Readiness Time Reporting", 0x22),
        ("Designated Vendor-Specific", 0x23),
        ("VF Resizable BAR", 0x24),
        ("Data Link Feature", 0x25),
        ("Physical Layer 16.0 GT/s", 0x26),
        ("Lane Margining at the Receiver", 0x27),
        ("Physical Layer 32.0 GT/s", 0x2a),
        ("Physical Layer 64.0 GT/s", 0x31),
        ("Integrity & Data Encryption", 0x30),
    ];

    /// <summary>Maps the text after <c>[off]</c> or <c>[off vN]</c> to a capability ID; false when lspci's name is unknown to us.</summary>
    public static bool TryGetId(ReadOnlySpan<char> name, bool extended, out ushort id)
    {
        // Unknown IDs: "Capability ID 0x15 [0000]" (standard) and "Extended Capability ID 0x2a" (extended).
        ReadOnlySpan<char> unknownPrefix = extended ? "Extended Capability ID 0x" : "Capability ID 0x";
        if (name.StartsWith(unknownPrefix, StringComparison.Ordinal))
        {
            var hex = name[unknownPrefix.Length..];
            int n = 0;
            while (n < hex.Length && n < 4 && char.IsAsciiHexDigit(hex[n])) n++;
            if (n > 0 && ushort.TryParse(hex[..n], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out id)) return true;
        }
        // Very old lspci: "#%02x [%04x]".
        if (!extended && name.Length >= 3 && name[0] == '#' &&
            ushort.TryParse(name.Slice(1, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out id))
            return true;
        foreach (var (prefix, pid) in extended ? s_extended : s_standard)
        {
            if (name.StartsWith(prefix, StringComparison.Ordinal))
            {
                id = pid;
                return true;
            }
        }
        id = 0;
        return false;
    }
}
