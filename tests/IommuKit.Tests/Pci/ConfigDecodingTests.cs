using IommuKit.Pci;
using Xunit;

namespace IommuKit.Tests.Pci;

/// <summary>Config space decoding checked against bytes laid out by hand from the PCI/PCIe specifications.</summary>
public class ConfigDecodingTests
{
    private static readonly PciAddress Addr = new(0, 3, 0, 0);

    /// <summary>A config space builder: little-endian puts at offsets.</summary>
    private sealed class Cfg(int size = 4096)
    {
        public readonly byte[] B = new byte[size];
        public Cfg U8(int off, byte v) { B[off] = v; return this; }
        public Cfg U16(int off, ushort v) { B[off] = (byte)v; B[off + 1] = (byte)(v >> 8); return this; }
        public Cfg U32(int off, uint v) { U16(off, (ushort)v); U16(off + 2, (ushort)(v >> 16)); return this; }
        public ConfigSpace Space => new(B);
        public PciDeviceFacts Facts(out string? error) => PciDeviceFacts.FromConfig(Addr, Space, out error);
        public PciDeviceFacts Facts() { var f = Facts(out var e); Assert.Null(e); return f; }
    }

    [Fact]
    public void TypeZeroHeaderFieldsDecodeFromTheirSpecOffsets()
    {
        var c = new Cfg(256).U16(0x00, 0x8086).U16(0x02, 0x10d3).U8(0x08, 0x02).U8(0x09, 0x01).U8(0x0a, 0x00).U8(0x0b, 0x02)
            .U8(0x0e, 0x80).U16(0x2c, 0x1af4).U16(0x2e, 0x1100);
        var f = c.Facts();
        Assert.Equal(0x8086, f.VendorId);
        Assert.Equal(0x10d3, f.DeviceId);
        Assert.Equal(0x02, f.Revision);
        Assert.Equal(0x020001u, f.ClassCode);
        Assert.Equal(0, f.HeaderLayout);
        Assert.True(f.MultifunctionBit);
        Assert.Equal(0x1af4, f.SubsystemVendorId);
        Assert.Equal(0x1100, f.SubsystemDeviceId);
        Assert.Null(f.BridgeBuses);
        Assert.Null(f.Pcie);
        Assert.Equal(ConfigVisibility.Full, f.Visibility); // conventional 256 bytes is all there is
    }

    [Fact]
    public void TypeOneHeaderGivesBridgeBusNumbersAndNoSubsystemIds()
    {
        var f = new Cfg(256).U16(0, 0x1b36).U16(2, 0x0001).U8(0x0b, 0x06).U8(0x0a, 0x04).U8(0x0e, 0x01)
            .U8(0x18, 0x02).U8(0x19, 0x05).U8(0x1a, 0x07).U16(0x2c, 0xdead).Facts();
        Assert.Equal(1, f.HeaderLayout);
        Assert.False(f.MultifunctionBit);
        Assert.Equal(((byte)2, (byte)5, (byte)7), f.BridgeBuses);
        Assert.Equal(0, f.SubsystemVendorId); // 0x2c is the I/O base upper half in a type 1 header
    }

    private static Cfg RootPortWithAcs(ushort acsCap, ushort acsCtl)
    {
        // Status bit 4 (capability list); pointer 0x34 -> 0x40 PCIe capability (ID 0x10), next 0.
        // Flags 0x0142: version 2, type 4 (root port), slot implemented (bit 8).
        // Slot capabilities at +0x14: physical slot 5 in bits 31:19, hot-plug capable (bit 6).
        // Link status at +0x12: 8 GT/s (3), x4 (width 4 in bits 9:4).
        // Extended list: AER at 0x100 -> ACS at 0x148 (ID 0x000d, version 1), next 0.
        return new Cfg().U16(0, 0x1b36).U16(2, 0x000c).U8(0x0b, 0x06).U8(0x0a, 0x04).U8(0x0e, 0x01)
            .U8(0x18, 0).U8(0x19, 1).U8(0x1a, 1).U16(0x06, 0x0010).U8(0x34, 0x40)
            .U8(0x40, 0x10).U8(0x41, 0x00).U16(0x42, 0x0142).U32(0x44, 0x00008000)
            .U16(0x52, 0x0043).U32(0x54, (5u << 19) | 0x40)
            .U32(0x100, (0x148u << 20) | (2u << 16) | 0x0001)
            .U32(0x148, (0x000u << 20) | (1u << 16) | 0x000d).U16(0x14c, acsCap).U16(0x14e, acsCtl);
    }

    [Fact]
    public void PcieCapabilityGivesTypeSlotAndLink()
    {
        var f = RootPortWithAcs(0x5f, 0x1d).Facts();
        var p = f.Pcie!;
        Assert.Equal(0x40, p.Offset);
        Assert.Equal(2, p.Version);
        Assert.Equal(PcieType.RootPort, p.Type);
        Assert.True(p.SlotImplemented);
        Assert.Equal(5, p.PhysicalSlot);
        Assert.True(p.HotPlugCapable);
        Assert.Equal(3, p.CurrentLinkSpeed);
        Assert.Equal(4, p.CurrentLinkWidth);
        Assert.Equal(ConfigVisibility.Full, f.Visibility);
    }

    [Fact]
    public void AcsCapabilityAndControlDecodeToTheirBits()
    {
        // QEMU's pcie-root-port: capability 0x005f, control 0x001d after the kernel enabled it.
        var acs = RootPortWithAcs(0x5f, 0x1d).Facts().Acs!;
        Assert.Equal(0x148, acs.Offset);
        Assert.Equal(AcsFlags.SV | AcsFlags.TB | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF | AcsFlags.DT, acs.Capability);
        Assert.Equal(AcsFlags.SV | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF, acs.Control);
        Assert.Equal(AcsFlags.Required, acs.Control);
        Assert.Equal(["SrcValid", "TransBlk", "ReqRedir", "CmpltRedir", "UpstreamFwd", "DirectTrans"], acs.Capability.ToNames());
    }

    [Fact]
    public void AcsIsInvisibleInA256ByteReadOfAPcieFunction()
    {
        var full = RootPortWithAcs(0x5f, 0x1d).B;
        var f = PciDeviceFacts.FromConfig(Addr, new ConfigSpace(full.AsSpan(0, 256)), out var error);
        Assert.Null(error);
        Assert.Equal(PcieType.RootPort, f.Pcie!.Type);
        Assert.Null(f.Acs);
        Assert.Equal(ConfigVisibility.NoExtended, f.Visibility);
    }

    [Fact]
    public void SixtyFourByteReadKnowsTheHeaderButNoCapability()
    {
        var full = RootPortWithAcs(0x5f, 0x1d).B;
        var f = PciDeviceFacts.FromConfig(Addr, new ConfigSpace(full.AsSpan(0, 64)), out var error);
        Assert.Null(error);
        Assert.Equal(((byte)0, (byte)1, (byte)1), f.BridgeBuses);
        Assert.Null(f.Pcie);
        Assert.Empty(f.Capabilities);
        Assert.Equal(ConfigVisibility.HeaderOnly, f.Visibility);
    }

    [Fact]
    public void AriCapabilityGivesTheNextFunctionNumber()
    {
        var c = new Cfg().U16(0, 0x15b3).U16(2, 0x1017).U32(0x100, (0x000u << 20) | (1u << 16) | 0x000e).U16(0x104, 0x0400);
        var ari = c.Facts().Ari!;
        Assert.Equal(0x100, ari.Offset);
        Assert.Equal(4, ari.NextFunction);
    }

    [Fact]
    public void SriovCapabilityPlacesVirtualFunctionsByOffsetAndStride()
    {
        // SR-IOV at 0x160: TotalVFs 8 (+0x0e), NumVFs 4 (+0x10), First VF Offset 0x80 (+0x14), stride 2 (+0x16), VF id 0x1018 (+0x1a).
        var c = new Cfg().U16(0, 0x15b3).U16(2, 0x1017).U32(0x100, (0x160u << 20) | (1u << 16) | 0x0001)
            .U32(0x160, (1u << 16) | 0x0010).U16(0x16e, 8).U16(0x170, 4).U16(0x174, 0x80).U16(0x176, 2).U16(0x17a, 0x1018);
        var sr = c.Facts().Sriov!;
        Assert.Equal((8, 4, 0x80, 2, 0x1018), ((int)sr.TotalVfs, (int)sr.NumVfs, (int)sr.FirstVfOffset, (int)sr.VfStride, (int)sr.VfDeviceId));
        var pf = new PciAddress(0, 3, 0, 0); // routing id 0x0300
        Assert.Equal(new PciAddress(0, 3, 16, 0), sr.VfAddress(pf, 0)); // 0x0380 = bus 3, devfn 0x80
        Assert.Equal(new PciAddress(0, 3, 16, 2), sr.VfAddress(pf, 1));
        Assert.Equal(new PciAddress(0, 3, 16, 6), sr.VfAddress(pf, 3));
        // Offsets can push VFs onto the next bus: 0x0300 + 0x80 + 64*2 = 0x0400.
        Assert.Equal(new PciAddress(0, 4, 0, 0), sr.VfAddress(pf, 64));
        Assert.Null(sr.VfAddress(new PciAddress(0, 0xff, 31, 7), 1)); // beyond routing id 0xffff
    }

    [Fact]
    public void CapabilityPointerIntoItselfIsALoopError()
    {
        var c = new Cfg(256).U16(0x06, 0x10).U8(0x34, 0x40).U8(0x40, 0x01).U8(0x41, 0x40);
        Assert.False(c.Space.TryReadCapabilities(out var caps, out var error));
        Assert.Single(caps);
        Assert.Contains("loops back", error);
        c.Facts(out var e2);
        Assert.NotNull(e2);
    }

    [Fact]
    public void LongerStandardCapabilityCycleIsALoopError()
    {
        var c = new Cfg(256).U16(0x06, 0x10).U8(0x34, 0x40)
            .U8(0x40, 0x01).U8(0x41, 0x50).U8(0x50, 0x05).U8(0x51, 0x60).U8(0x60, 0x11).U8(0x61, 0x40);
        Assert.False(c.Space.TryReadCapabilities(out var caps, out var error));
        Assert.Equal(3, caps.Count);
        Assert.Contains("0x40 at 0x61", error);
    }

    [Fact]
    public void CapabilityPointerIntoTheHeaderIsAnError()
    {
        var c = new Cfg(256).U16(0x06, 0x10).U8(0x34, 0x20);
        Assert.False(c.Space.TryReadCapabilities(out _, out var error));
        Assert.Contains("points into the header", error);
    }

    [Fact]
    public void ExtendedCapabilityLoopIsAnError()
    {
        var c = new Cfg().U32(0x100, (0x140u << 20) | (1u << 16) | 0x0001).U32(0x140, (0x100u << 20) | (1u << 16) | 0x000d);
        Assert.False(c.Space.TryReadCapabilities(out var caps, out var error));
        Assert.Equal(2, caps.Count);
        Assert.Contains("loops back", error);
    }

    [Fact]
    public void ExtendedCapabilityPointingBelowTheExtendedSpaceIsAnError()
    {
        var c = new Cfg().U32(0x100, (0x0f0u << 20) | (1u << 16) | 0x0001);
        Assert.False(c.Space.TryReadCapabilities(out _, out var error));
        Assert.Contains("outside the extended space", error);
    }

    [Fact]
    public void StatusWithoutCapabilityListBitIgnoresThePointer()
    {
        // PCI Local Bus 3.0 §6.7: the pointer is valid only when Status bit 4 is set.
        var c = new Cfg(256).U8(0x34, 0x40).U8(0x40, 0x10).U16(0x42, 0x0042);
        Assert.True(c.Space.TryReadCapabilities(out var caps, out _));
        Assert.Empty(caps);
    }

    [Fact]
    public void CardBusHeaderReadsItsCapabilityPointerAt0x14()
    {
        var c = new Cfg(256).U8(0x0e, 0x02).U16(0x06, 0x10).U8(0x14, 0x80).U8(0x80, 0x01).U8(0x81, 0x00).U16(0x40, 0x1234);
        Assert.True(c.Space.TryReadCapabilities(out var caps, out _));
        Assert.Equal(0x80, Assert.Single(caps).Offset);
        Assert.Equal(0x1234, c.Space.SubsystemVendorId);
    }

    [Fact]
    public void ConfigShorterThanTheHeaderCannotBeWrapped()
    {
        Assert.Throws<ArgumentException>(() => new ConfigSpace(new byte[3]));
        Assert.Throws<ArgumentException>(() => new ConfigSpace(new byte[63]));
    }
}
