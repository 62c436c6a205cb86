using System.Buffers.Binary;
using System.Text;
using IommuKit.Pci;

namespace IommuKit.Sources.Acpi;

/// <summary>
/// Decodes the firmware's IOMMU tables (the raw bytes of <c>/sys/firmware/acpi/tables/{DMAR,IVRS,IORT}</c>) into the
/// model of Pci/Firmware.cs. Every read is bounds-checked against the table's own length and the bytes at hand; a table
/// that breaks a structural rule (a length past the end, a structure shorter than its header) is an
/// <see cref="InputException"/> naming the file, the byte offset and the rule. A wrong checksum is a warning only,
/// because the kernel only warns too: ACPICA's <c>acpi_tb_verify_checksum</c> prints "Incorrect checksum in table"
/// and the table is still installed. (IVRS is the exception the warning names: AMD-Vi's own
/// <c>check_ivrs_checksum</c>, called from <c>early_amd_iommu_init</c>, refuses the table and leaves the IOMMU off.)
/// </summary>
internal static class AcpiTableReader
{
    /// <summary>Largest table accepted: real DMAR/IVRS/IORT tables are a few KiB (the largest in linuxhw/ACPI is under 8 KiB).</summary>
    public const int MaxTableBytes = 1024 * 1024;

    /// <summary>Structures (remapping structures, IVHD/IVMD blocks, IORT nodes, device entries, scopes) decoded per table.</summary>
    public const int MaxStructures = 65_536;

    /// <summary>Decodes a DMAR table. Warnings (checksum) go to <paramref name="warnings"/> when given.</summary>
    /// <exception cref="InputException">The bytes break a structural rule; the message names <paramref name="origin"/>, the offset and the rule.</exception>
    public static DmarTable ReadDmar(ReadOnlySpan<byte> bytes, string origin, ICollection<string>? warnings = null) =>
        DmarReader.Read(bytes, origin, warnings);

    /// <inheritdoc cref="ReadDmar"/>
    public static IvrsTable ReadIvrs(ReadOnlySpan<byte> bytes, string origin, ICollection<string>? warnings = null) =>
        IvrsReader.Read(bytes, origin, warnings);

    /// <inheritdoc cref="ReadDmar"/>
    public static IortTable ReadIort(ReadOnlySpan<byte> bytes, string origin, ICollection<string>? warnings = null) =>
        IortReader.Read(bytes, origin, warnings);

    /// <summary>
    /// Checks the common 36-byte header (ACPI §5.2.6) and returns it with the table's bytes cut to its declared length.
    /// </summary>
    internal static AcpiTableHeader ReadHeader(ReadOnlySpan<byte> bytes, string signature, int minLength, string origin,
        ICollection<string>? warnings, out ReadOnlySpan<byte> table)
    {
        if (bytes.Length > MaxTableBytes)
            throw InputException.At(origin, $"{signature} table of {bytes.Length} bytes is larger than the {MaxTableBytes}-byte cap");
        if (bytes.Length < 36)
            throw InputException.At(origin, $"{signature} table is {bytes.Length} bytes, shorter than the 36-byte ACPI header", offset: bytes.Length);
        string sig = Ascii(bytes[..4]);
        if (sig != signature)
            throw InputException.At(origin, $"signature is '{sig}', expected '{signature}'", offset: 0);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(bytes[4..]);
        if (length < minLength)
            throw InputException.At(origin, $"{signature} table length {length} is shorter than its {minLength}-byte header", offset: 4);
        if (length > bytes.Length)
            throw InputException.At(origin, $"{signature} table length {length} runs past the end of the {bytes.Length} bytes at hand", offset: 4);
        table = bytes[..(int)length];
        byte sum = 0;
        foreach (byte b in table) sum += b;
        if (sum != 0)
            warnings?.Add($"{origin}: {signature} checksum is wrong (bytes sum to 0x{sum:x2}, not 0); ACPICA only warns (acpi_tb_verify_checksum)" +
                          (signature == "IVRS" ? "; but AMD-Vi refuses it (check_ivrs_checksum): the kernel leaves the IOMMU off" : ""));
        return new AcpiTableHeader(sig, length, bytes[8], sum == 0, Ascii(bytes.Slice(10, 6)), Ascii(bytes.Slice(16, 8)),
            BinaryPrimitives.ReadUInt32LittleEndian(bytes[24..]));
    }

    /// <summary>Printable ASCII of a fixed-width field; other bytes become '?', trailing NULs are dropped.</summary>
    internal static string Ascii(ReadOnlySpan<byte> field)
    {
        int n = field.IndexOf((byte)0);
        if (n >= 0) field = field[..n];
        var sb = new StringBuilder(field.Length);
        foreach (byte b in field) sb.Append(b is >= 0x20 and < 0x7f ? (char)b : '?');
        return sb.ToString();
    }

    /// <summary>Throws the structural error for a structure at <paramref name="offset"/>.</summary>
    internal static InputException Bad(string origin, long offset, string rule) => InputException.At(origin, rule, offset: offset);

    /// <summary>Counts structures and refuses more than <see cref="MaxStructures"/>.</summary>
    internal static void Count(ref int count, string origin, long offset)
    {
        if (++count > MaxStructures)
            throw Bad(origin, offset, $"more than {MaxStructures} structures in one table");
    }
}
