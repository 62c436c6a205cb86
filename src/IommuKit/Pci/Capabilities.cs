namespace IommuKit.Pci;

/// <summary>The decoded PCI Express capability (PCIe r6.0 §7.5.3).</summary>
/// <param name="Offset">Offset of the capability in config space (-1 when the source printed it without an offset).</param>
/// <param name="Version">Capability version (bits 3:0 of the PCI Express Capabilities register).</param>
/// <param name="Type">Device/Port type.</param>
/// <param name="SlotImplemented">Slot Implemented bit (ports only).</param>
/// <param name="DeviceCapabilities">Device Capabilities register.</param>
/// <param name="LinkCapabilities">Link Capabilities register (0 when absent).</param>
/// <param name="LinkStatus">Link Status register (0 when absent).</param>
/// <param name="SlotCapabilities">Slot Capabilities register (0 when absent).</param>
public sealed record PcieInfo(
    int Offset,
    int Version,
    PcieType Type,
    bool SlotImplemented,
    uint DeviceCapabilities = 0,
    uint LinkCapabilities = 0,
    ushort LinkStatus = 0,
    uint SlotCapabilities = 0)
{
    /// <summary>Physical slot number from Slot Capabilities bits 31:19 (only meaningful when <see cref="SlotImplemented"/>).</summary>
    public int PhysicalSlot => (int)(SlotCapabilities >> 19);
    /// <summary>Hot-plug capable (Slot Capabilities bit 6).</summary>
    public bool HotPlugCapable => (SlotCapabilities & 0x40) != 0;
    /// <summary>Link speed code from Link Status bits 3:0 (1 = 2.5 GT/s … 6 = 64 GT/s).</summary>
    public int CurrentLinkSpeed => LinkStatus & 0xf;
    /// <summary>Negotiated link width from Link Status bits 9:4.</summary>
    public int CurrentLinkWidth => (LinkStatus >> 4) & 0x3f;

    /// <summary>Decodes the capability at <paramref name="offset"/>; null when it runs past what was read.</summary>
    public static PcieInfo? Decode(ConfigSpace cfg, int offset)
    {
        if (!cfg.TryReadUInt16(offset + 2, out ushort flags)) return null;
        var type = (PcieType)((flags >> 4) & 0xf);
        bool slot = (flags & 0x0100) != 0;
        cfg.TryReadUInt32(offset + 4, out uint devcap);
        cfg.TryReadUInt32(offset + 0x0c, out uint linkcap);
        cfg.TryReadUInt16(offset + 0x12, out ushort linksta);
        cfg.TryReadUInt32(offset + 0x14, out uint slotcap);
        return new PcieInfo(offset, flags & 0xf, type, slot, devcap, linkcap, linksta, slot ? slotcap : 0);
    }
}

/// <summary>
/// The ACS extended capability (PCIe r6.0 §7.7.8): the capability register says which controls exist, the control
/// register which are enabled.
/// </summary>
/// <param name="Offset">Offset of the extended capability (-1 when unknown, e.g. from lspci text without it).</param>
public sealed record AcsInfo(int Offset, AcsFlags Capability, AcsFlags Control)
{
    /// <summary>Reads the ACS capability and control registers of the capability at <paramref name="offset"/>.</summary>
    /// <returns>The decoded capability, or null when the registers lie beyond the bytes read.</returns>
    public static AcsInfo? Decode(ConfigSpace cfg, int offset)
    {
        if (!cfg.TryReadUInt16(offset + 4, out ushort cap) || !cfg.TryReadUInt16(offset + 6, out ushort ctl)) return null;
        return new AcsInfo(offset, (AcsFlags)(cap & 0x7f), (AcsFlags)(ctl & 0x7f));
    }
}

/// <summary>The ARI capability (PCIe r6.0 §7.8.7): the next function number of a device with up to 256 functions.</summary>
public sealed record AriInfo(int Offset, byte NextFunction)
{
    /// <summary>Reads the ARI capability register of the capability at <paramref name="offset"/>.</summary>
    /// <returns>The decoded capability, or null when the register lies beyond the bytes read.</returns>
    public static AriInfo? Decode(ConfigSpace cfg, int offset) =>
        cfg.TryReadUInt16(offset + 4, out ushort cap) ? new AriInfo(offset, (byte)(cap >> 8)) : null;
}

/// <summary>
/// The SR-IOV capability (PCIe r6.0 §9.3.3): enough to place the virtual functions. VF n (1-based) has routing ID
/// <c>PF + FirstVfOffset + (n-1) * VfStride</c>.
/// </summary>
public sealed record SriovInfo(int Offset, ushort TotalVfs, ushort NumVfs, ushort FirstVfOffset, ushort VfStride, ushort VfDeviceId)
{
    /// <summary>Reads TotalVFs, NumVFs, First VF Offset, VF Stride and VF Device ID of the capability at <paramref name="offset"/>.</summary>
    /// <returns>The decoded capability, or null when any register lies beyond the bytes read.</returns>
    public static SriovInfo? Decode(ConfigSpace cfg, int offset)
    {
        if (!cfg.TryReadUInt16(offset + 0x0e, out ushort total) ||
            !cfg.TryReadUInt16(offset + 0x10, out ushort num) ||
            !cfg.TryReadUInt16(offset + 0x14, out ushort first) ||
            !cfg.TryReadUInt16(offset + 0x16, out ushort stride) ||
            !cfg.TryReadUInt16(offset + 0x1a, out ushort vfdev))
            return null;
        return new SriovInfo(offset, total, num, first, stride, vfdev);
    }

    /// <summary>The address of VF <paramref name="index"/> (0-based) of the PF at <paramref name="pf"/>, or null if it overflows the bus range.</summary>
    public PciAddress? VfAddress(PciAddress pf, int index)
    {
        int rid = pf.RequesterId + FirstVfOffset + index * VfStride;
        if (index < 0 || rid > 0xffff) return null;
        return PciAddress.FromDevfn(pf.Domain, (byte)(rid >> 8), (byte)(rid & 0xff));
    }
}
