using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>Which hook of the kernel's <c>pci_dev_acs_enabled[]</c> table an entry calls (drivers/pci/quirks.c).</summary>
public enum AcsQuirkHook
{
    /// <summary><c>pci_quirk_amd_sb_acs</c>: multifunction devices on a root bus, only with an ACPI IVRS table.</summary>
    AmdSouthbridge,
    /// <summary><c>pci_quirk_mf_endpoint_acs</c>: multifunction endpoints without peer-to-peer between functions.</summary>
    MfEndpoint,
    /// <summary><c>pci_quirk_rciep_acs</c>: Intel root-complex integrated endpoints.</summary>
    IntelRciep,
    /// <summary><c>pci_quirk_qcom_rp_acs</c>: QCOM QDF2xxx and HXT SD4800 root ports.</summary>
    QcomRootPort,
    /// <summary><c>pci_quirk_intel_pch_acs</c>: Intel PCH root ports, isolated only after the enable quirk ran.</summary>
    IntelPch,
    /// <summary><c>pci_quirk_intel_spt_pch_acs</c>: Sunrise/Union Point root ports with ACS control at +8 (32-bit).</summary>
    IntelSptPch,
    /// <summary><c>pci_quirk_cavium_acs</c>: ThunderX root ports.</summary>
    Cavium,
    /// <summary><c>pci_quirk_xgene_acs</c>: APM X-Gene and Ampere root ports.</summary>
    XGene,
    /// <summary><c>pci_quirk_brcm_acs</c>: Broadcom iProc PAXB.</summary>
    Broadcom,
    /// <summary><c>pci_quirk_loongson_acs</c>: Loongson root ports.</summary>
    Loongson,
    /// <summary><c>pci_quirk_al_acs</c>: Amazon Annapurna Labs root ports.</summary>
    AmazonAl,
    /// <summary><c>pci_quirk_nxp_rp_acs</c>: NXP LX2xx0 root ports.</summary>
    NxpRootPort,
    /// <summary><c>pci_quirk_zhaoxin_pcie_ports_acs</c>: listed Zhaoxin ports isolated, every other Zhaoxin port a hard "no".</summary>
    ZhaoxinPorts,
    /// <summary><c>pci_quirk_wangxun_nic_acs</c>: listed Wangxun NICs isolated, every other Wangxun device a hard "no".</summary>
    WangxunNic,
    /// <summary>The out-of-tree <c>pcie_acs_override</c> catch-all, the last entry when the kernel carries the patch.</summary>
    Override,
}

/// <summary>One entry of <c>pci_dev_acs_enabled[]</c>: vendor, device (<see cref="AcsQuirks.Any"/> = any) and hook.</summary>
internal readonly record struct AcsQuirkEntry(ushort Vendor, ushort Device, AcsQuirkHook Hook);

/// <summary>
/// The kernel's ACS quirk table <c>pci_dev_acs_enabled[]</c> in kernel order (spec 2.7, drivers/pci/quirks.c) and the
/// ID lists its hooks consult. The hooks themselves run in <see cref="PciGrouping.AcsEnabled"/> because some need the
/// effective ACS state of the device.
/// </summary>
internal static class AcsQuirks
{
    /// <summary>The kernel's <c>PCI_ANY_ID</c> as stored in the 16-bit table fields.</summary>
    public const ushort Any = 0xffff;

    /// <summary>PCI vendor IDs the quirk table and its hooks match on.</summary>
    public const ushort VendorAti = 0x1002, VendorAmd = 0x1022, VendorSolarflare = 0x1924, VendorIntel = 0x8086,
        VendorQcom = 0x17cb, VendorHxt = 0x1dbf, VendorCavium = 0x177d, VendorAmcc = 0x10e8, VendorAmpere = 0x1def,
        VendorBroadcom = 0x14e4, VendorLoongson = 0x0014, VendorAmazonAl = 0x1c36, VendorZhaoxin = 0x1d17,
        VendorNxp = 0x1957, VendorWangxun = 0x8088;

    /// <summary>SV|RR|CR|UF: what most root-port quirks grant (the kernel's usual <c>PCI_ACS_*</c> set for them).</summary>
    public const AcsFlags PortGrant = AcsFlags.SV | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF;

    /// <summary>What <c>pci_quirk_mf_endpoint_acs</c> grants: every control except Egress Control.</summary>
    public const AcsFlags MfEndpointGrant = AcsFlags.SV | AcsFlags.TB | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF | AcsFlags.DT;

    /// <summary>The table, in the kernel's order (first hook that returns 0 or more decides).</summary>
    public static IReadOnlyList<AcsQuirkEntry> Table { get; } = BuildTable();

    private static AcsQuirkEntry[] BuildTable()
    {
        var t = new List<AcsQuirkEntry>(128);
        void Add(ushort v, AcsQuirkHook h, params ushort[] devs) { foreach (var d in devs) t.Add(new(v, d, h)); }

        // AMD/ATI southbridge functions (pci_quirk_amd_sb_acs).
        Add(VendorAti, AcsQuirkHook.AmdSouthbridge, 0x4385, 0x439c, 0x4383, 0x439d, 0x4384, 0x4399);
        Add(VendorAmd, AcsQuirkHook.AmdSouthbridge, 0x780f, 0x7809);
        // Solarflare (pci_quirk_mf_endpoint_acs).
        Add(VendorSolarflare, AcsQuirkHook.MfEndpoint, 0x0903, 0x0923, 0x0A03);
        // Intel 82598/82599/X540/X550 and friends.
        Add(VendorIntel, AcsQuirkHook.MfEndpoint, 0x10C6, 0x10DB, 0x10DD, 0x10E1, 0x10F1, 0x10F7, 0x10F8, 0x10F9, 0x10FA,
            0x10FB, 0x10FC, 0x1507, 0x1514, 0x151C, 0x1529, 0x152A, 0x154D, 0x154F, 0x1551, 0x1558);
        Add(VendorIntel, AcsQuirkHook.MfEndpoint, 0x1509, 0x150E, 0x150F, 0x1510, 0x1511, 0x1516, 0x1527); // 82580
        Add(VendorIntel, AcsQuirkHook.MfEndpoint, 0x10C9, 0x10E6, 0x10E7, 0x10E8, 0x150A, 0x150D, 0x1518, 0x1526); // 82576
        Add(VendorIntel, AcsQuirkHook.MfEndpoint, 0x10A7, 0x10A9, 0x10D6); // 82575
        Add(VendorIntel, AcsQuirkHook.MfEndpoint, 0x1521, 0x1522, 0x1523, 0x1524); // I350
        Add(VendorIntel, AcsQuirkHook.MfEndpoint, 0x105E, 0x105F, 0x1060, 0x10D9); // 82571
        Add(VendorIntel, AcsQuirkHook.MfEndpoint, 0x15b7, 0x15b8); // I219
        Add(VendorIntel, AcsQuirkHook.IntelRciep, Any);
        Add(VendorQcom, AcsQuirkHook.QcomRootPort, 0x0400, 0x0401, 0x0115, 0x0111, 0x0120); // QDF2xxx, SA8775P, Hamoa, Glymur
        Add(VendorHxt, AcsQuirkHook.QcomRootPort, 0x0401);
        Add(VendorIntel, AcsQuirkHook.IntelPch, Any);
        Add(VendorIntel, AcsQuirkHook.IntelSptPch, Any);
        Add(0x19a2, AcsQuirkHook.MfEndpoint, 0x0710); // Emulex BE3-R
        Add(0x10df, AcsQuirkHook.MfEndpoint, 0x0720); // Emulex Skyhawk-R
        Add(VendorCavium, AcsQuirkHook.Cavium, Any);
        Add(VendorCavium, AcsQuirkHook.MfEndpoint, 0xA026, 0xA059, 0xA060);
        Add(VendorAmcc, AcsQuirkHook.XGene, 0xE004);
        Add(VendorAmpere, AcsQuirkHook.XGene, 0xE005, 0xE006, 0xE007, 0xE008, 0xE009, 0xE00A, 0xE00B, 0xE00C);
        Add(VendorBroadcom, AcsQuirkHook.MfEndpoint, 0x16D7, 0x1750, 0x1751, 0x1752, 0x1760, 0x1761, 0x1762, 0x1763);
        Add(VendorBroadcom, AcsQuirkHook.Broadcom, 0xD714);
        Add(VendorLoongson, AcsQuirkHook.Loongson, 0x3C09, 0x3C19, 0x3C29, 0x7A09, 0x7A19, 0x7A29, 0x7A39, 0x7A49, 0x7A59, 0x7A69);
        Add(VendorAmazonAl, AcsQuirkHook.AmazonAl, 0x0031);
        Add(VendorZhaoxin, AcsQuirkHook.MfEndpoint, 0x3038, 0x3104, 0x9083);
        Add(VendorNxp, AcsQuirkHook.NxpRootPort, 0x8d80, 0x8d81, 0x8d82, 0x8d83, 0x8d88, 0x8d89, 0x8d8a, 0x8d8b,
            0x8d90, 0x8d91, 0x8d92, 0x8d93, 0x8d98, 0x8d99, 0x8d9a, 0x8d9b, 0x8da0, 0x8da1, 0x8da8, 0x8da9,
            0x8db0, 0x8db1, 0x8db8, 0x8db9);
        Add(VendorZhaoxin, AcsQuirkHook.ZhaoxinPorts, Any);
        Add(VendorWangxun, AcsQuirkHook.WangxunNic, Any);
        return t.ToArray();
    }

    // Per-vendor index into Table so a lookup does not scan ~120 entries per device (order within a vendor kept).
    private static readonly Dictionary<ushort, int[]> s_byVendor = BuildIndex();

    private static Dictionary<ushort, int[]> BuildIndex()
    {
        var d = new Dictionary<ushort, List<int>>();
        var table = Table;
        for (int i = 0; i < table.Count; i++)
        {
            if (!d.TryGetValue(table[i].Vendor, out var l)) d[table[i].Vendor] = l = new List<int>();
            l.Add(i);
        }
        return d.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray());
    }

    /// <summary>Indexes into <see cref="Table"/> of the entries that match vendor:device, in table order.</summary>
    internal static ReadOnlySpan<int> EntriesFor(ushort vendor) =>
        s_byVendor.TryGetValue(vendor, out var a) ? a : ReadOnlySpan<int>.Empty;

    /// <summary>Intel PCH root ports handled by <c>pci_quirk_intel_pch_acs_match</c> (spec 2.7 PCH list).</summary>
    public static bool IsIntelPchRootPortId(ushort device) =>
        device is >= 0x3b42 and <= 0x3b51 // Ibexpeak
        or >= 0x1c10 and <= 0x1c1f // Cougarpoint
        or >= 0x1e10 and <= 0x1e1f // Pantherpoint
        or >= 0x8c10 and <= 0x8c1f // Lynxpoint-H
        or >= 0x9c10 and <= 0x9c1b // Lynxpoint-LP
        or >= 0x9c90 and <= 0x9c9b // Wildcat
        or 0x1d10 or 0x1d12 or 0x1d14 or 0x1d16 or 0x1d18 or 0x1d1a or 0x1d1c or 0x1d1e // Patsburg
        or >= 0x8d10 and <= 0x8d1e // Wellsburg
        or 0x8c90 or 0x8c92 or 0x8c94 or 0x8c96 or 0x8c98 or 0x8c9a or 0x8c9c or 0x8c9e; // 9-series

    /// <summary>Sunrise Point / Union Point / 7th-8th gen mobile root ports (<c>pci_quirk_intel_spt_pch_acs_match</c>).</summary>
    public static bool IsIntelSptRootPortId(ushort device) =>
        device is >= 0xa110 and <= 0xa11f or >= 0xa167 and <= 0xa16a
        or >= 0xa290 and <= 0xa29f or >= 0xa2e7 and <= 0xa2ee
        or >= 0x9d10 and <= 0x9d1b;

    /// <summary>ThunderX root-port IDs (<c>pci_quirk_cavium_acs_match</c>).</summary>
    public static bool IsCaviumRootPortId(ushort device) =>
        device is >= 0xa000 and <= 0xa7ff or 0xaf84 or 0xb884;

    /// <summary>Zhaoxin ports that isolate (<c>pci_quirk_zhaoxin_pcie_ports_acs</c>).</summary>
    public static bool IsZhaoxinIsolatedPortId(ushort device) =>
        device is >= 0x0710 and <= 0x071e or 0x0721 or >= 0x0723 and <= 0x0752;

    /// <summary>Wangxun NICs that isolate (<c>pci_quirk_wangxun_nic_acs</c>).</summary>
    public static bool IsWangxunIsolatedId(ushort device) =>
        device is >= 0x0100 and <= 0x010F or 0x1001 or 0x2001 or 0x5010 or 0x5025 or 0x5040 or 0x5110 or 0x5125 or 0x5140;

    /// <summary>The kernel's <c>pci_acs_ctrl_enabled(req, ena)</c>: 1 when every requested bit is among the granted ones.</summary>
    internal static int CtrlEnabled(AcsFlags requested, AcsFlags granted) => (requested & granted) == requested ? 1 : 0;

    /// <summary>Short human name of a hook for explanations.</summary>
    public static string Describe(AcsQuirkHook hook) => hook switch
    {
        AcsQuirkHook.AmdSouthbridge => "AMD southbridge ACS quirk (pci_quirk_amd_sb_acs)",
        AcsQuirkHook.MfEndpoint => "multifunction-endpoint ACS quirk (pci_quirk_mf_endpoint_acs)",
        AcsQuirkHook.IntelRciep => "Intel RCiEP ACS quirk (pci_quirk_rciep_acs)",
        AcsQuirkHook.QcomRootPort => "QCOM/HXT root-port ACS quirk (pci_quirk_qcom_rp_acs)",
        AcsQuirkHook.IntelPch => "Intel PCH root-port ACS quirk (pci_quirk_intel_pch_acs)",
        AcsQuirkHook.IntelSptPch => "Intel Sunrise Point root-port ACS quirk (pci_quirk_intel_spt_pch_acs)",
        AcsQuirkHook.Cavium => "Cavium ThunderX root-port ACS quirk (pci_quirk_cavium_acs)",
        AcsQuirkHook.XGene => "X-Gene/Ampere root-port ACS quirk (pci_quirk_xgene_acs)",
        AcsQuirkHook.Broadcom => "Broadcom iProc ACS quirk (pci_quirk_brcm_acs)",
        AcsQuirkHook.Loongson => "Loongson root-port ACS quirk (pci_quirk_loongson_acs)",
        AcsQuirkHook.AmazonAl => "Amazon Annapurna Labs ACS quirk (pci_quirk_al_acs)",
        AcsQuirkHook.NxpRootPort => "NXP root-port ACS quirk (pci_quirk_nxp_rp_acs)",
        AcsQuirkHook.ZhaoxinPorts => "Zhaoxin port ACS quirk (pci_quirk_zhaoxin_pcie_ports_acs)",
        AcsQuirkHook.WangxunNic => "Wangxun NIC ACS quirk (pci_quirk_wangxun_nic_acs)",
        AcsQuirkHook.Override => "out-of-tree pcie_acs_override",
        _ => hook.ToString(),
    };
}
