using System.Buffers.Binary;
using IommuKit.Pci;

namespace IommuKit.Sources.Acpi;

/// <summary>
/// DMAR decoder (Intel VT-d specification chapter 8; the kernel's walk is <c>dmar_walk_remapping_entries</c> in
/// drivers/iommu/intel/dmar.c). Layout: the 36-byte ACPI header, host address width − 1 (byte 36), flags (byte 37),
/// 10 reserved bytes, then remapping structures, each starting with a 16-bit type and a 16-bit length.
/// </summary>
internal static class DmarReader
{
    private const int HeaderLength = 48;

    // Remapping structure types (ACPI_DMAR_TYPE_*).
    private const ushort Drhd = 0, Rmrr = 1, Atsr = 2, Rhsa = 3, Andd = 4, Satc = 5;

    public static DmarTable Read(ReadOnlySpan<byte> bytes, string origin, ICollection<string>? warnings)
    {
        var header = AcpiTableReader.ReadHeader(bytes, "DMAR", HeaderLength, origin, warnings, out var table);
        int width = table[36] + 1;
        byte flags = table[37];
        var units = new List<DmarUnit>();
        var rmrrs = new List<DmarReservedMemory>();
        var atsrs = new List<DmarAtsr>();
        var satcs = new List<DmarSatc>();
        var andds = new List<DmarNamespaceDevice>();
        int count = 0;
        for (int off = HeaderLength; off < table.Length;)
        {
            AcpiTableReader.Count(ref count, origin, off);
            if (table.Length - off < 4)
                throw AcpiTableReader.Bad(origin, off, $"remapping structure header needs 4 bytes, {table.Length - off} left before the table's end");
            ushort type = BinaryPrimitives.ReadUInt16LittleEndian(table[off..]);
            ushort length = BinaryPrimitives.ReadUInt16LittleEndian(table[(off + 2)..]);
            // dmar_walk_remapping_entries: a 0-length record would loop forever; one past the end is "Record passes table end".
            if (length < 4)
                throw AcpiTableReader.Bad(origin, off + 2, $"remapping structure type {type} has length {length}, less than its 4-byte header");
            if (length > table.Length - off)
                throw AcpiTableReader.Bad(origin, off + 2, $"remapping structure type {type} of {length} bytes runs past the table's end ({table.Length - off} bytes left)");
            var s = table.Slice(off, length);
            switch (type)
            {
                case Drhd:
                    Need(s, 16, origin, off, "DRHD");
                    units.Add(new DmarUnit(units.Count, BinaryPrimitives.ReadUInt16LittleEndian(s[6..]), (s[4] & 1) != 0,
                        BinaryPrimitives.ReadUInt64LittleEndian(s[8..]), Scopes(s, 16, off, origin, ref count)));
                    break;
                case Rmrr:
                    {
                        Need(s, 24, origin, off, "RMRR");
                        ulong b = BinaryPrimitives.ReadUInt64LittleEndian(s[8..]);
                        ulong end = BinaryPrimitives.ReadUInt64LittleEndian(s[16..]);
                        // dmar_parse_one_rmrr warns "Your BIOS is broken; bad RMRR" for end < base and keeps going; we refuse it.
                        if (end < b)
                            throw AcpiTableReader.Bad(origin, off + 16, $"RMRR end 0x{end:x} is below its base 0x{b:x}");
                        rmrrs.Add(new DmarReservedMemory(BinaryPrimitives.ReadUInt16LittleEndian(s[6..]), b, end, Scopes(s, 24, off, origin, ref count)));
                        break;
                    }
                case Atsr:
                    Need(s, 8, origin, off, "ATSR");
                    atsrs.Add(new DmarAtsr(BinaryPrimitives.ReadUInt16LittleEndian(s[6..]), (s[4] & 1) != 0, Scopes(s, 8, off, origin, ref count)));
                    break;
                case Satc:
                    Need(s, 8, origin, off, "SATC");
                    satcs.Add(new DmarSatc(BinaryPrimitives.ReadUInt16LittleEndian(s[6..]), (s[4] & 1) != 0, Scopes(s, 8, off, origin, ref count)));
                    break;
                case Andd:
                    Need(s, 8, origin, off, "ANDD");
                    andds.Add(new DmarNamespaceDevice(s[7], AcpiTableReader.Ascii(s[8..])));
                    break;
                case Rhsa:
                default:
                    // RHSA (NUMA proximity), SIDP and types the kernel does not know: skipped by length, as
                    // dmar_walk_remapping_entries does ("Unknown DMAR structure type").
                    break;
            }
            off += length;
        }
        return new DmarTable(header, width, flags, units, rmrrs, atsrs, satcs, andds);
    }

    private static void Need(ReadOnlySpan<byte> s, int min, string origin, int off, string what)
    {
        if (s.Length < min)
            throw AcpiTableReader.Bad(origin, off + 2, $"{what} length {s.Length} is shorter than its {min}-byte fixed part");
    }

    /// <summary>
    /// The device scopes (VT-d spec §8.3.1) that fill a structure from <paramref name="start"/> to its end: type,
    /// length (6 + 2 per path step), flags, reserved, enumeration id, start bus, path.
    /// </summary>
    private static List<DmarDeviceScope> Scopes(ReadOnlySpan<byte> s, int start, int structOffset, string origin, ref int count)
    {
        var list = new List<DmarDeviceScope>();
        for (int off = start; off < s.Length;)
        {
            long at = structOffset + off;
            AcpiTableReader.Count(ref count, origin, at);
            if (s.Length - off < 2)
                throw AcpiTableReader.Bad(origin, at, $"device scope header needs 2 bytes, {s.Length - off} left in the structure");
            byte type = s[off], length = s[off + 1];
            if (length < 6 || (length & 1) != 0)
                throw AcpiTableReader.Bad(origin, at + 1, $"device scope length {length} is not 6 plus 2 bytes per path step");
            if (length > s.Length - off)
                throw AcpiTableReader.Bad(origin, at + 1, $"device scope of {length} bytes runs past its structure's end ({s.Length - off} bytes left)");
            if (type is >= 1 and <= 5)
            {
                var path = new DmarPathStep[(length - 6) / 2];
                for (int i = 0; i < path.Length; i++)
                {
                    byte dev = s[off + 6 + 2 * i], fn = s[off + 7 + 2 * i];
                    if (dev > 31 || fn > 7)
                        throw AcpiTableReader.Bad(origin, at + 6 + 2 * i, $"device scope path step {dev:x2}.{fn:x} is not a device (0-1f) and function (0-7)");
                    path[i] = new DmarPathStep(dev, fn);
                }
                if (path.Length == 0 && type is 1 or 2)
                    throw AcpiTableReader.Bad(origin, at + 1, "PCI device scope has an empty path");
                list.Add(new DmarDeviceScope((DmarScopeKind)type, s[off + 4], s[off + 5], path));
            }
            // Other scope types: dmar_alloc_dev_scope warns "Unsupported device scope" and skips them.
            off += length;
        }
        return list;
    }
}
