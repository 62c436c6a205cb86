namespace IommuKit.Pci;

/// <summary>
/// ACS capability and control bits (PCIe Base Spec r6.0 §7.7.8.2/§7.7.8.3), the kernel's <c>PCI_ACS_*</c> values.
/// </summary>
[Flags]
public enum AcsFlags : ushort
{
    /// <summary>No ACS bit.</summary>
    None = 0,
    /// <summary>Source Validation.</summary>
    SV = 0x0001,
    /// <summary>Translation Blocking.</summary>
    TB = 0x0002,
    /// <summary>P2P Request Redirect.</summary>
    RR = 0x0004,
    /// <summary>P2P Completion Redirect.</summary>
    CR = 0x0008,
    /// <summary>Upstream Forwarding.</summary>
    UF = 0x0010,
    /// <summary>P2P Egress Control.</summary>
    EC = 0x0020,
    /// <summary>Direct Translated P2P.</summary>
    DT = 0x0040,

    /// <summary>What the IOMMU core requires before it treats a path as isolated (<c>REQ_ACS_FLAGS</c> in drivers/iommu/iommu.c).</summary>
    Required = SV | RR | CR | UF,
    /// <summary>All seven defined bits.</summary>
    All = SV | TB | RR | CR | UF | EC | DT,
}

/// <summary>Names for <see cref="AcsFlags"/> bits as lspci prints them.</summary>
public static class AcsFlagsNames
{
    private static readonly (AcsFlags Flag, string Name)[] s_names =
    [
        (AcsFlags.SV, "SrcValid"), (AcsFlags.TB, "TransBlk"), (AcsFlags.RR, "ReqRedir"), (AcsFlags.CR, "CmpltRedir"),
        (AcsFlags.UF, "UpstreamFwd"), (AcsFlags.EC, "EgressCtrl"), (AcsFlags.DT, "DirectTrans"),
    ];

    /// <summary>lspci's names for the bits, in bit order: SrcValid TransBlk ReqRedir CmpltRedir UpstreamFwd EgressCtrl DirectTrans.</summary>
    public static IReadOnlyList<(AcsFlags Flag, string Name)> LspciNames => s_names;

    /// <summary>The set bits as lspci names, e.g. <c>["SrcValid","ReqRedir"]</c>.</summary>
    public static string[] ToNames(this AcsFlags flags)
    {
        var list = new List<string>(7);
        foreach (var (f, n) in s_names)
        {
            if ((flags & f) != 0) list.Add(n);
        }
        return list.ToArray();
    }

    /// <summary>Short form used in explanations: <c>SV|RR|CR|UF</c>.</summary>
    public static string ToShortString(this AcsFlags flags) =>
        flags == AcsFlags.None ? "none" : string.Join('|', Enum.GetValues<AcsFlags>()
            .Where(f => f is not (AcsFlags.None or AcsFlags.Required or AcsFlags.All) && (flags & f) != 0)
            .Select(f => f.ToString()));
}
