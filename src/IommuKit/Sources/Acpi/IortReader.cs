using System.Buffers.Binary;
using IommuKit.Pci;

namespace IommuKit.Sources.Acpi;

/// <summary>
/// IORT decoder (Arm DEN 0049; the kernel's reading is drivers/acpi/arm64/iort.c: <c>iort_scan_node</c>,
/// <c>iort_node_map_id</c>). Layout: the 36-byte ACPI header, node count (offset 36), offset of the first node (40),
/// 4 reserved bytes; each node: type, 16-bit length, revision, identifier, mapping count, mapping offset (from the
/// node's start), then type-specific data; each ID mapping is 20 bytes.
/// </summary>
internal static class IortReader
{
    private const int HeaderLength = 48;
    private const int NodeHeaderLength = 16;
    private const int MappingLength = 20;

    public static IortTable Read(ReadOnlySpan<byte> bytes, string origin, ICollection<string>? warnings)
    {
        var header = AcpiTableReader.ReadHeader(bytes, "IORT", HeaderLength, origin, warnings, out var table);
        uint nodeCount = BinaryPrimitives.ReadUInt32LittleEndian(table[36..]);
        uint first = BinaryPrimitives.ReadUInt32LittleEndian(table[40..]);
        if (nodeCount > AcpiTableReader.MaxStructures)
            throw AcpiTableReader.Bad(origin, 36, $"IORT declares {nodeCount} nodes, more than the {AcpiTableReader.MaxStructures} cap");
        if (nodeCount > 0 && (first < HeaderLength || first > table.Length))
            throw AcpiTableReader.Bad(origin, 40, $"IORT first node offset 0x{first:x} is outside the table (0x{HeaderLength:x}..0x{table.Length:x})");
        var nodes = new List<IortNode>((int)nodeCount);
        int count = 0;
        long off = first;
        for (uint i = 0; i < nodeCount; i++)
        {
            // iort_scan_node: "IORT node pointer overflows, bad table!"
            if (table.Length - off < NodeHeaderLength)
                throw AcpiTableReader.Bad(origin, off, $"IORT node {i} of {nodeCount} needs a {NodeHeaderLength}-byte header, {table.Length - off} bytes left before the table's end");
            var h = table[(int)off..];
            byte type = h[0];
            ushort length = BinaryPrimitives.ReadUInt16LittleEndian(h[1..]);
            if (length < NodeHeaderLength)
                throw AcpiTableReader.Bad(origin, off + 1, $"IORT node type {type} has length {length}, less than its {NodeHeaderLength}-byte header");
            if (length > h.Length)
                throw AcpiTableReader.Bad(origin, off + 1, $"IORT node type {type} of {length} bytes runs past the table's end ({h.Length} bytes left)");
            var n = h[..length];
            uint mapCount = BinaryPrimitives.ReadUInt32LittleEndian(n[8..]);
            uint mapOffset = BinaryPrimitives.ReadUInt32LittleEndian(n[12..]);
            var mappings = new List<IortIdMapping>();
            if (mapCount > 0)
            {
                if (mapOffset < NodeHeaderLength || mapOffset > length || (length - mapOffset) / MappingLength < mapCount)
                    throw AcpiTableReader.Bad(origin, off + 8, $"IORT node type {type}: {mapCount} ID mappings at node offset 0x{mapOffset:x} do not fit in its {length} bytes");
                for (int m = 0; m < mapCount; m++)
                {
                    AcpiTableReader.Count(ref count, origin, off + mapOffset + m * MappingLength);
                    var e = n.Slice((int)mapOffset + m * MappingLength, MappingLength);
                    uint outRef = BinaryPrimitives.ReadUInt32LittleEndian(e[12..]);
                    if (outRef >= table.Length)
                        throw AcpiTableReader.Bad(origin, off + mapOffset + m * MappingLength + 12, $"IORT ID mapping output reference 0x{outRef:x} is outside the table");
                    mappings.Add(new IortIdMapping(BinaryPrimitives.ReadUInt32LittleEndian(e), BinaryPrimitives.ReadUInt32LittleEndian(e[4..]),
                        BinaryPrimitives.ReadUInt32LittleEndian(e[8..]), outRef, (BinaryPrimitives.ReadUInt32LittleEndian(e[16..]) & 1) != 0));
                }
            }
            int segment = 0;
            ulong baseAddress = 0;
            switch ((IortNodeKind)type)
            {
                case IortNodeKind.RootComplex:
                    if (length < 32)
                        throw AcpiTableReader.Bad(origin, off + 1, $"IORT root complex node length {length} is shorter than the 32 bytes that hold its PCI segment");
                    segment = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(n[28..]), int.MaxValue);
                    break;
                case IortNodeKind.Smmu or IortNodeKind.SmmuV3:
                    if (length < 24)
                        throw AcpiTableReader.Bad(origin, off + 1, $"IORT SMMU node length {length} is shorter than the 24 bytes that hold its base address");
                    baseAddress = BinaryPrimitives.ReadUInt64LittleEndian(n[16..]);
                    break;
            }
            nodes.Add(new IortNode((uint)off, (IortNodeKind)type, n[3], segment, baseAddress, mappings));
            off += length;
        }
        return new IortTable(header, nodes);
    }
}
