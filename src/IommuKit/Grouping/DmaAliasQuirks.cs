using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>What the DMA alias quirks (spec 2.8, <c>pci_add_dma_alias</c> callers in drivers/pci/quirks.c) did to one device.</summary>
/// <param name="Mask">The 256-bit <c>dma_alias_mask</c> as four words (bit n = devfn n), or null when empty.</param>
/// <param name="PcieBridgeAlias"><c>PCI_DEV_FLAGS_PCIE_BRIDGE_ALIAS</c>: a conventional bridge hiding a PCIe capability.</param>
/// <param name="XlateRoot"><c>PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT</c>: the IOMMU sits at this bridge; the alias walk stops here.</param>
/// <param name="Quirk">Name of the quirk for explanations, or null.</param>
/// <param name="FactsMissing">The quirk needs facts the source cannot give (Switchtec reads BAR0): aliases unknown.</param>
internal sealed record DmaAliasInfo(ulong[]? Mask, bool PcieBridgeAlias, bool XlateRoot, string? Quirk, bool FactsMissing = false)
{
    /// <summary>True when <paramref name="devfn"/> (0-255) is set in <see cref="Mask"/>; false when the mask is null.</summary>
    public bool HasAlias(int devfn) => Mask is not null && (Mask[devfn >> 6] & (1UL << (devfn & 63))) != 0;
}

/// <summary>The kernel's DMA alias quirks (spec 2.8), applied from vendor/device/subsystem IDs and topology.</summary>
internal static class DmaAliasQuirks
{
    private static readonly HashSet<uint> s_func0 = Ids(
        (0x1180, 0xe832), (0x1180, 0xe476), // Ricoh (quirk_dma_func0_alias)
        (0x6766, 0x3d40), (0x6766, 0x3d41)); // Glenfly

    private static readonly HashSet<uint> s_func1 = Ids(
        (0x1b4b, 0x9120), (0x1b4b, 0x9123), (0x1b4b, 0x9125), (0x1b4b, 0x9128), (0x1b4b, 0x9130), (0x1b4b, 0x9170),
        (0x1b4b, 0x9172), (0x1b4b, 0x917a), (0x1b4b, 0x9182), (0x1b4b, 0x9183), (0x1b4b, 0x91a0), (0x1b4b, 0x9215),
        (0x1b4b, 0x9220), (0x1b4b, 0x9230), (0x1b4b, 0x9235), // Marvell (quirk_dma_func1_alias)
        (0x1103, 0x0642), (0x1103, 0x0645), // HighPoint / TTI
        (0x197b, 0x2392), // JMicron JMB388 ESD
        (0x1c28, 0x0122)); // Lite-On / Plextor M6E

    private static readonly HashSet<uint> s_pcieBridgeAlias = Ids(
        (0x1b21, 0x1080), (0x10e3, 0x8113), (0x1283, 0x8892), (0x1283, 0x8893), (0x8086, 0x244e));

    private static readonly HashSet<uint> s_micX200 = Ids((0x8086, 0x2260), (0x8086, 0x2264));
    private static readonly HashSet<uint> s_vca = Ids((0x8086, 0x2954), (0x8086, 0x2955), (0x8086, 0x2956), (0x8086, 0x2958), (0x8086, 0x2959), (0x8086, 0x295A));
    private static readonly HashSet<uint> s_plx = Ids((0x10b5, 0x87b0), (0x10b5, 0x87b1));
    private static readonly HashSet<uint> s_xlateRoot = Ids((0x14e4, 0x9000), (0x14e4, 0x9084));

    private static HashSet<uint> Ids(params (int V, int D)[] ids)
    {
        var s = new HashSet<uint>();
        foreach (var (v, d) in ids) s.Add(((uint)v << 16) | (uint)d);
        return s;
    }

    /// <summary>Switchtec NTB functions (<c>quirk_switchtec_ntb_dma_alias</c>): Microsemi 0x11f8 gen3/4/5 and EFAR 0x1055.</summary>
    public static bool IsSwitchtecNtb(ushort vendor, ushort device)
    {
        if (vendor == 0x1055) return device is >= 0x1001 and <= 0x1006;
        if (vendor != 0x11f8) return false;
        if (device is >= 0x8531 and <= 0x8536 or >= 0x8541 and <= 0x8546 or >= 0x8551 and <= 0x8556
            or >= 0x8561 and <= 0x8566 or >= 0x8571 and <= 0x8576) return true;
        int hi = device >> 8, lo = device & 0xff;
        if (hi is 0x40 or 0x41 or 0x42) return lo is 0x00 or 0x84 or 0x68 or 0x52 or 0x36 or 0x28;
        if (hi is 0x43 or 0x44 or 0x45) return lo is 0x52 or 0x36 or 0x28;
        if (hi is >= 0x50 and <= 0x55) return lo is 0x00 or 0x84 or 0x68 or 0x52 or 0x36 or 0x28;
        return false;
    }

    // Vendors that appear in any alias quirk: most devices are rejected with one lookup.
    private static readonly HashSet<ushort> s_vendors = [0x1180, 0x6766, 0x1b4b, 0x1103, 0x197b, 0x1c28, 0x9005, 0x1b21, 0x10e3, 0x1283, 0x8086, 0x10b5, 0x14e4, 0x11f8, 0x1055];

    /// <summary>The alias facts of one device, or null when no quirk applies.</summary>
    public static DmaAliasInfo? For(PciDevice dev)
    {
        if (!s_vendors.Contains(dev.VendorId)) return null;
        uint id = ((uint)dev.VendorId << 16) | dev.DeviceId;
        int fn = dev.Address.Function;
        if (s_func0.Contains(id) && fn != 0)
            return Mask("DMA alias quirk: function 0 of the slot (quirk_dma_func0_alias)", (dev.Address.Device << 3) | 0, 1);
        if (s_func1.Contains(id) && fn != 1)
            return Mask("DMA alias quirk: ghost function 1 of the slot (quirk_dma_func1_alias)", (dev.Address.Device << 3) | 1, 1);
        if (id == 0x90050285 && dev.Facts.SubsystemVendorId == 0x9005 && dev.Facts.SubsystemDeviceId is 0x02bb or 0x02bc)
            return Mask("DMA alias quirk: Adaptec 3405/3805 hidden DMA engine at 01.0 (quirk_fixed_dma_alias)", 1 << 3, 1);
        if (s_pcieBridgeAlias.Contains(id))
        {
            // quirk_use_pcie_bridge_dma_alias: a conventional bridge, not on a root bus, whose parent is PCIe but not a PCIe-to-PCI bridge.
            var parent = dev.Parent;
            if (!dev.IsOnRootBus && dev.Facts.HeaderLayout == 1 && !dev.IsPcie && parent is not null && parent.IsPcie && parent.PcieType != PcieType.PciBridge)
                return new DmaAliasInfo(null, true, false, "PCIe-bridge alias quirk: the bridge hides its PCIe capability (quirk_use_pcie_bridge_dma_alias)");
            return null;
        }
        if (s_micX200.Contains(id))
        {
            var m = new ulong[4];
            Set(m, (0x10 << 3) | 0); Set(m, (0x11 << 3) | 0); Set(m, (0x12 << 3) | 3);
            return new DmaAliasInfo(m, false, false, "DMA alias quirk: Intel MIC x200 NTB aliases 10.0, 11.0, 12.3 (quirk_mic_x200_dma_alias)");
        }
        if (s_vca.Contains(id))
        {
            var m = new ulong[4];
            for (int slot = 0; slot < 32; slot++)
                for (int f = 0; f < 5; f++) Set(m, (slot << 3) | f);
            return new DmaAliasInfo(m, false, false, "DMA alias quirk: Intel VCA aliases functions 0-4 of every slot (quirk_pex_vca_alias)");
        }
        if (s_plx.Contains(id))
            return Mask("DMA alias quirk: PLX NTB aliases every devfn (quirk_plx_ntb_dma_alias)", 0, 256);
        if (s_xlateRoot.Contains(id))
            return new DmaAliasInfo(null, false, true, "BRIDGE_XLATE_ROOT quirk: the IOMMU translates at this bridge (quirk_bridge_cavm_thrx2_pcie_root)");
        if (IsSwitchtecNtb(dev.VendorId, dev.DeviceId) && (dev.ClassCode >> 8) == 0x0680)
            return new DmaAliasInfo(null, false, false, "Switchtec NTB alias quirk: its aliases come from BAR0 registers the source does not have", FactsMissing: true);
        return null;
    }

    private static DmaAliasInfo Mask(string quirk, int from, int nr)
    {
        var m = new ulong[4];
        nr = Math.Min(nr, 256 - from); // pci_add_dma_alias caps the count at MAX_NR_DEVFNS
        for (int i = from; i < from + nr; i++) Set(m, i);
        return new DmaAliasInfo(m, false, false, quirk);
    }

    private static void Set(ulong[] m, int devfn) => m[devfn >> 6] |= 1UL << (devfn & 63);
}
