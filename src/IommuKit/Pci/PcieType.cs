namespace IommuKit.Pci;

/// <summary>
/// The PCI Express Device/Port Type field (PCIe Base Spec r6.0 §7.5.3.2, PCI Express Capabilities register bits 7:4),
/// with the kernel's <c>PCI_EXP_TYPE_*</c> values. <see cref="None"/> means the function has no PCIe capability
/// (conventional PCI or PCI-X).
/// </summary>
public enum PcieType
{
    /// <summary>No PCI Express capability: conventional PCI.</summary>
    None = -1,
    /// <summary>PCI Express endpoint.</summary>
    Endpoint = 0x0,
    /// <summary>Legacy PCI Express endpoint.</summary>
    LegacyEndpoint = 0x1,
    /// <summary>Root port of a root complex.</summary>
    RootPort = 0x4,
    /// <summary>Upstream port of a switch.</summary>
    Upstream = 0x5,
    /// <summary>Downstream port of a switch.</summary>
    Downstream = 0x6,
    /// <summary>PCI Express to PCI/PCI-X bridge (kernel <c>PCI_EXP_TYPE_PCI_BRIDGE</c>).</summary>
    PciBridge = 0x7,
    /// <summary>PCI/PCI-X to PCI Express bridge, a "reverse" bridge (kernel <c>PCI_EXP_TYPE_PCIE_BRIDGE</c>).</summary>
    PcieBridge = 0x8,
    /// <summary>Root Complex integrated endpoint (kernel <c>PCI_EXP_TYPE_RC_END</c>).</summary>
    RcEnd = 0x9,
    /// <summary>Root Complex event collector (kernel <c>PCI_EXP_TYPE_RC_EC</c>).</summary>
    RcEc = 0xa,
}

/// <summary>Display names for <see cref="PcieType"/>.</summary>
public static class PcieTypeNames
{
    /// <summary>The name lspci prints after "Express (vN)" and that our JSON uses.</summary>
    public static string ToDisplayName(this PcieType t) => t switch
    {
        PcieType.None => "PCI",
        PcieType.Endpoint => "Endpoint",
        PcieType.LegacyEndpoint => "Legacy Endpoint",
        PcieType.RootPort => "Root Port",
        PcieType.Upstream => "Upstream Port",
        PcieType.Downstream => "Downstream Port",
        PcieType.PciBridge => "PCI-Express to PCI/PCI-X Bridge",
        PcieType.PcieBridge => "PCI/PCI-X to PCI-Express Bridge",
        PcieType.RcEnd => "Root Complex Integrated Endpoint",
        PcieType.RcEc => "Root Complex Event Collector",
        _ => $"Unknown type {(int)t:x}",
    };

    /// <summary>Stable machine name used in JSON: <c>endpoint</c>, <c>root_port</c>, <c>pci</c> (no PCIe), …</summary>
    public static string ToJsonName(this PcieType t) => t switch
    {
        PcieType.None => "pci",
        PcieType.Endpoint => "endpoint",
        PcieType.LegacyEndpoint => "legacy_endpoint",
        PcieType.RootPort => "root_port",
        PcieType.Upstream => "upstream_port",
        PcieType.Downstream => "downstream_port",
        PcieType.PciBridge => "pcie_to_pci_bridge",
        PcieType.PcieBridge => "pci_to_pcie_bridge",
        PcieType.RcEnd => "rc_integrated_endpoint",
        PcieType.RcEc => "rc_event_collector",
        // A reserved value of the 4-bit field keeps its number, so a machine that has one exports and loads back.
        _ => $"unknown_{(int)t}",
    };

    /// <summary>The type of a JSON name: the names of <see cref="ToJsonName"/>, and <c>unknown_N</c> for a reserved value N (0-15).</summary>
    public static bool TryParseJsonName(string name, out PcieType type)
    {
        foreach (PcieType t in Enum.GetValues<PcieType>())
        {
            if (t.ToJsonName() == name) { type = t; return true; }
        }
        if (name.StartsWith("unknown_", StringComparison.Ordinal)
            && int.TryParse(name.AsSpan("unknown_".Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n)
            && n is >= 0 and <= 15 && !Enum.IsDefined((PcieType)n) && name == $"unknown_{n}")
        {
            type = (PcieType)n;
            return true;
        }
        type = PcieType.None;
        return false;
    }
}
