using System.Buffers.Binary;
using IommuKit.Pci;

namespace IommuKit.Sources.Acpi;

/// <summary>
/// IVRS decoder (AMD IOMMU specification 48882 §5.2; the kernel's reading is <c>init_iommu_from_acpi</c> and
/// <c>init_memory_definitions</c> in drivers/iommu/amd/init.c). Layout: the 36-byte ACPI header, IVinfo (4 bytes),
/// 8 reserved bytes, then IVHD (0x10, 0x11, 0x40) and IVMD (0x20, 0x21, 0x22) blocks, each with type, flags and a
/// 16-bit length at offset 2.
/// </summary>
internal static class IvrsReader
{
    private const int HeaderLength = 48;
    private const int IvmdLength = 32;

    public static IvrsTable Read(ReadOnlySpan<byte> bytes, string origin, ICollection<string>? warnings)
    {
        var header = AcpiTableReader.ReadHeader(bytes, "IVRS", HeaderLength, origin, warnings, out var table);
        uint ivinfo = BinaryPrimitives.ReadUInt32LittleEndian(table[36..]);
        var blocks = new List<IvhdBlock>();
        var ivmds = new List<IvmdBlock>();
        int count = 0;
        for (int off = HeaderLength; off < table.Length;)
        {
            AcpiTableReader.Count(ref count, origin, off);
            if (table.Length - off < 4)
                throw AcpiTableReader.Bad(origin, off, $"IVRS block header needs 4 bytes, {table.Length - off} left before the table's end");
            byte type = table[off];
            ushort length = BinaryPrimitives.ReadUInt16LittleEndian(table[(off + 2)..]);
            if (length < 4)
                throw AcpiTableReader.Bad(origin, off + 2, $"IVRS block type 0x{type:x2} has length {length}, less than its 4-byte header");
            if (length > table.Length - off)
                throw AcpiTableReader.Bad(origin, off + 2, $"IVRS block type 0x{type:x2} of {length} bytes runs past the table's end ({table.Length - off} bytes left)");
            var s = table.Slice(off, length);
            switch (type)
            {
                case 0x10 or 0x11 or 0x40:
                    blocks.Add(ReadIvhd(s, off, origin, ref count));
                    break;
                case 0x20 or 0x21 or 0x22:
                    if (s.Length < IvmdLength)
                        throw AcpiTableReader.Bad(origin, off + 2, $"IVMD length {s.Length} is shorter than its {IvmdLength} bytes");
                    ivmds.Add(new IvmdBlock(type, s[1], BinaryPrimitives.ReadUInt16LittleEndian(s[4..]), BinaryPrimitives.ReadUInt16LittleEndian(s[6..]),
                        BinaryPrimitives.ReadUInt64LittleEndian(s[16..]), BinaryPrimitives.ReadUInt64LittleEndian(s[24..])));
                    break;
                default:
                    break; // unknown block types are skipped by length, as the kernel's walks do
            }
            off += length;
        }
        return new IvrsTable(header, ivinfo, blocks, ivmds);
    }

    /// <summary>IVHD header size per type (<c>get_ivhd_header_size</c>): 24 bytes for 0x10, 40 for 0x11 and 0x40.</summary>
    private static int IvhdHeaderSize(byte type) => type == 0x10 ? 24 : 40;

    private static IvhdBlock ReadIvhd(ReadOnlySpan<byte> s, int off, string origin, ref int count)
    {
        byte type = s[0];
        int hdr = IvhdHeaderSize(type);
        if (s.Length < hdr)
            throw AcpiTableReader.Bad(origin, off + 2, $"IVHD type 0x{type:x2} length {s.Length} is shorter than its {hdr}-byte header");
        var devices = new List<IvhdDeviceRange>();
        var specials = new List<IvhdSpecial>();
        var acpi = new List<IvhdAcpiDevice>();
        // A range opens with 0x03, 0x43 or 0x47 and closes with 0x04 (init_iommu_from_acpi keeps devid_start and alias).
        (IvhdEntryKind Kind, ushort First, byte Setting, ushort? Alias, bool Ext)? open = null;
        for (int p = hdr; p < s.Length;)
        {
            long at = off + p;
            AcpiTableReader.Count(ref count, origin, at);
            byte et = s[p];
            int len = EntryLength(s, p, at, origin);
            if (len > s.Length - p)
                throw AcpiTableReader.Bad(origin, at, $"IVHD device entry type 0x{et:x2} of {len} bytes runs past its IVHD's end ({s.Length - p} bytes left)");
            var e = s.Slice(p, len);
            ushort devid = BinaryPrimitives.ReadUInt16LittleEndian(e[1..]);
            byte setting = e[3];
            switch (et)
            {
                case 0x01: devices.Add(new IvhdDeviceRange(IvhdEntryKind.All, 0, 0xffff, setting)); break;
                case 0x02: devices.Add(new IvhdDeviceRange(IvhdEntryKind.Select, devid, devid, setting)); break;
                case 0x46: devices.Add(new IvhdDeviceRange(IvhdEntryKind.Select, devid, devid, setting, Extended: true)); break;
                case 0x03: open = (IvhdEntryKind.Range, devid, setting, null, false); break;
                case 0x47: open = (IvhdEntryKind.Range, devid, setting, null, true); break;
                case 0x42:
                    devices.Add(new IvhdDeviceRange(IvhdEntryKind.AliasSelect, devid, devid, setting, BinaryPrimitives.ReadUInt16LittleEndian(e[5..])));
                    break;
                case 0x43: open = (IvhdEntryKind.AliasRange, devid, setting, BinaryPrimitives.ReadUInt16LittleEndian(e[5..]), false); break;
                case 0x04:
                    if (open is { } o)
                    {
                        if (devid < o.First)
                            throw AcpiTableReader.Bad(origin, at, $"IVHD range end {Rid(devid)} is below its start {Rid(o.First)}");
                        devices.Add(new IvhdDeviceRange(o.Kind, o.First, devid, o.Setting, o.Alias, o.Ext));
                    }
                    open = null;
                    break;
                case 0x48:
                    if (e[7] is 1 or 2)
                        specials.Add(new IvhdSpecial((IvhdSpecialVariety)e[7], e[4], BinaryPrimitives.ReadUInt16LittleEndian(e[5..])));
                    break;
                case 0xf0:
                    {
                        int uidLen = e[21];
                        // UID format byte 20: 1 = an integer of up to 8 bytes, 2 = a string.
                        string uid = e[20] == 1 ? UidInteger(e.Slice(22, uidLen)) : AcpiTableReader.Ascii(e.Slice(22, uidLen));
                        acpi.Add(new IvhdAcpiDevice(devid, AcpiTableReader.Ascii(e.Slice(4, 8)), AcpiTableReader.Ascii(e.Slice(12, 8)), uid));
                        break;
                    }
                default: break; // padding (0x00) and reserved types
            }
            p += len;
        }
        return new IvhdBlock(type, s[1], BinaryPrimitives.ReadUInt16LittleEndian(s[4..]), BinaryPrimitives.ReadUInt16LittleEndian(s[6..]),
            BinaryPrimitives.ReadUInt64LittleEndian(s[8..]), BinaryPrimitives.ReadUInt16LittleEndian(s[16..]), devices, specials, acpi);
    }

    /// <summary>
    /// Length of the device entry at <paramref name="p"/> (<c>ivhd_entry_length</c>): 4 bytes for types below 0x40,
    /// 8 for 0x40-0x7f, 22 plus the UID length (byte 21) for 0xF0 ACPI_HID. Other types of 0x80 and above have no
    /// length the kernel knows (it returns 0 and cannot walk on), so they are refused.
    /// </summary>
    private static int EntryLength(ReadOnlySpan<byte> s, int p, long at, string origin)
    {
        byte t = s[p];
        if (t < 0x80) return 4 << (t >> 6);
        if (t == 0xf0)
        {
            if (s.Length - p < 22)
                throw AcpiTableReader.Bad(origin, at, $"IVHD ACPI_HID entry needs 22 bytes before its UID, {s.Length - p} left in its IVHD");
            return 22 + s[p + 21];
        }
        throw AcpiTableReader.Bad(origin, at, $"IVHD device entry type 0x{t:x2} has no known length (ivhd_entry_length)");
    }

    private static string UidInteger(ReadOnlySpan<byte> b)
    {
        ulong v = 0;
        for (int i = Math.Min(b.Length, 8) - 1; i >= 0; i--) v = v << 8 | b[i];
        return v.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    private static string Rid(ushort id) => $"{id >> 8:x2}:{(id >> 3) & 31:x2}.{id & 7:x}";
}
