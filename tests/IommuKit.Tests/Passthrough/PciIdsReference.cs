using System.Buffers;
using System.Globalization;
using System.Text;

namespace IommuKit.Tests.Passthrough;

/// <summary>
/// <see cref="IommuKit.Sources.PciIds"/> as it was before its top-level index was vectorized and its lookups made
/// lazier (issue 11, commit fd5ba40): kept verbatim as the oracle of <c>PciIdsScanTests</c> (only the mapped file is
/// dropped: it reads a byte array), plus the ids it knows, so a test can ask about every one of them.
/// </summary>
internal sealed class PciIdsReference
{
    public PciIdsReference(byte[] utf8) => _array = utf8;

    /// <summary>Every vendor id with a name.</summary>
    public IReadOnlyCollection<ushort> VendorIds { get { lock (_sync) return Index().Vendors.Keys.ToArray(); } }

    /// <summary>Every class id with a name.</summary>
    public IReadOnlyCollection<byte> ClassIds { get { lock (_sync) return Index().Classes.Keys.ToArray(); } }

    /// <summary>Every device id named under <paramref name="vendor"/>.</summary>
    public IReadOnlyCollection<ushort> DeviceIds(ushort vendor)
    {
        lock (_sync) return Index().Vendors.GetValueOrDefault(vendor) is { } s ? ChildrenOf(s, 4).Keys.ToArray() : [];
    }

    /// <summary>Every subclass id named under <paramref name="cls"/>.</summary>
    public IReadOnlyCollection<ushort> SubclassIds(byte cls)
    {
        lock (_sync) return Index().Classes.GetValueOrDefault(cls) is { } s ? ChildrenOf(s, 2).Keys.ToArray() : [];
    }

    // The database stays as the file's bytes. The first lookup indexes it in one pass over its top-level lines
    // (vendors and classes, a few thousand of ~40,000 lines); a vendor's or class's own lines (its devices or
    // subclasses) are parsed the first time one of them is asked for. A command names a few dozen devices, so
    // it parses a few sections instead of the whole 1.4 MB (issue 11: that was 6-8 ms of a 20 ms budget).
    // The result is the same as parsing every line in order (pciutils lib/names-parse.c): lines are split where
    // string.EnumerateLines splits them, each line is decoded on its own (a separator is never part of a UTF-8
    // sequence), and a name given twice is the later one.
    private readonly byte[] _array;

    private ReadOnlySpan<byte> Utf8 => _array;
    private readonly Lock _sync = new(); // guards _index and every Section.Children
    private IndexData? _index;

    /// <summary>One top-level line and the lines under it, up to the next top-level line.</summary>
    private sealed class Section(int lineStart, int bodyStart, Section? earlier)
    {
        /// <summary>Where the section's own line starts: its name is decoded the first time it is asked for.</summary>
        public int LineStart { get; } = lineStart;
        public string? Name { get; set; }
        public int BodyStart { get; } = bodyStart;
        public int BodyEnd { get; set; } = -1;
        /// <summary>The same id's previous section (a database that names a vendor twice): its lines come first.</summary>
        public Section? Earlier { get; } = earlier;
        /// <summary>Where each child's line starts (its name is decoded when asked for), once parsed.</summary>
        public Dictionary<ushort, int>? Children { get; set; }
    }

    private sealed record IndexData(Dictionary<ushort, Section> Vendors, Dictionary<byte, Section> Classes);

    // Where string.EnumerateLines ends a line: CR, LF, FF, and NEL/LS/PS (UTF-8 C2 85, E2 80 A8, E2 80 A9).
    private static readonly SearchValues<byte> LineBreakStarts = SearchValues.Create([(byte)'\n', (byte)'\r', (byte)'\f', 0xc2, 0xe2]);

    /// <summary>The end of the line starting at <paramref name="pos"/> and where the next one starts.</summary>
    private static (int End, int Next) LineAt(ReadOnlySpan<byte> text, int pos)
    {
        int i = pos;
        while (true)
        {
            int k = text[i..].IndexOfAny(LineBreakStarts);
            if (k < 0) return (text.Length, text.Length);
            i += k;
            byte b = text[i];
            if (b is (byte)'\n' or (byte)'\f') return (i, i + 1);
            if (b == (byte)'\r') return (i, i + 1 < text.Length && text[i + 1] == (byte)'\n' ? i + 2 : i + 1);
            if (b == 0xc2 && i + 1 < text.Length && text[i + 1] == 0x85) return (i, i + 2);
            if (b == 0xe2 && i + 2 < text.Length && text[i + 1] == 0x80 && text[i + 2] is 0xa8 or 0xa9) return (i, i + 3);
            i++;
        }
    }

    /// <summary>Builds the index of top-level lines on first use. Caller holds <see cref="_sync"/>.</summary>
    private IndexData Index()
    {
        if (_index is not null) return _index;
        var vendors = new Dictionary<ushort, Section>();
        var classes = new Dictionary<byte, Section>();
        ReadOnlySpan<byte> text = Utf8;
        char[] chars = new char[256];
        Section? open = null;
        int pos = 0;
        while (pos < text.Length)
        {
            var (end, next) = LineAt(text, pos);
            // Lines under a section (a tab first) and comments never end a section.
            if (end > pos && text[pos] is not ((byte)'\t' or (byte)'#'))
            {
                var line = Decode(text[pos..end], ref chars).TrimEnd();
                if (!line.IsEmpty)
                {
                    if (open is not null) open.BodyEnd = pos;
                    open = null;
                    if (TopLevel(line, out bool isClass, out int id, out _))
                    {
                        open = isClass
                            ? classes[(byte)id] = new Section(pos, next, classes.GetValueOrDefault((byte)id))
                            : vendors[(ushort)id] = new Section(pos, next, vendors.GetValueOrDefault((ushort)id));
                    }
                }
            }
            pos = next;
        }
        if (open is not null) open.BodyEnd = text.Length;
        return _index = new IndexData(vendors, classes);
    }

    /// <summary>A top-level line (trimmed at its end): a class (<c>C cc  Name</c>) or a vendor (<c>vvvv  Name</c>).</summary>
    private static bool TopLevel(ReadOnlySpan<char> line, out bool isClass, out int id, out ReadOnlySpan<char> name)
    {
        id = 0; name = default;
        isClass = line.StartsWith("C ") && TryIdName(line[2..], 2, out id, out name);
        return isClass || TryIdName(line, 4, out id, out name);
    }

    /// <summary>The section's name, decoded from its line on first use. Caller holds <see cref="_sync"/>.</summary>
    private string NameOf(Section section)
    {
        if (section.Name is { } known) return known;
        ReadOnlySpan<byte> text = Utf8;
        ReadOnlySpan<byte> line = text[section.LineStart..LineAt(text, section.LineStart).End];
        Span<char> chars = line.Length <= 256 ? stackalloc char[256] : new char[line.Length];
        int n = Encoding.UTF8.GetChars(line, chars);
        TopLevel(((ReadOnlySpan<char>)chars[..n]).TrimEnd(), out _, out _, out var name);
        return section.Name = name.ToString();
    }

    /// <summary>
    /// The id of a line one tab in (<c>\tdddd  Name</c>) read from its bytes, as <see cref="ChildName(ReadOnlySpan{char}, int, out int, out ReadOnlySpan{char})"/>
    /// reads the decoded line: true or false when the bytes decide it, null when only decoding can (no printable
    /// ASCII after the id, so whether the name is blank depends on how the rest decodes).
    /// </summary>
    private static bool? ChildIdFromBytes(ReadOnlySpan<byte> line, int digits, out int id)
    {
        id = 0;
        // A non-ASCII byte among the first digits + 2 decodes to a char that is neither a hex digit nor a space, and
        // the decoded line is never longer than its bytes: so a prefix that is not "\t" + hex digits + ' ' fails either way.
        if (line.Length < digits + 2) return false;
        for (int i = 1; i <= digits; i++)
        {
            int h = HexValue(line[i]);
            if (h < 0) return false;
            id = id << 4 | h;
        }
        if (line[digits + 1] != (byte)' ') return false;
        // The name is what follows, trimmed: a printable ASCII byte (never white space) makes it non-empty.
        foreach (byte b in line[(digits + 2)..])
            if (b is > 0x20 and < 0x7f) return true;
        return null;
    }

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    /// <summary>
    /// Where each line one tab under a section starts (devices of a vendor, subclasses of a class), found once per
    /// section; a later line with the same id wins. Caller holds <see cref="_sync"/>.
    /// </summary>
    private Dictionary<ushort, int> ChildrenOf(Section section, int digits)
    {
        if (section.Children is { } known) return known;
        var chain = new List<Section>();
        for (var s = section; s is not null; s = s.Earlier) chain.Add(s);
        // Sized for the section (a device line is ~40 bytes, and most of a big vendor's lines are subsystems): Intel's
        // 4,000 devices would otherwise grow it through a dozen copies.
        int bytes = 0;
        foreach (var s in chain) bytes += s.BodyEnd - s.BodyStart;
        var children = new Dictionary<ushort, int>(Math.Min(bytes / 80, 1 << 16));
        ReadOnlySpan<byte> text = Utf8;
        char[] chars = new char[256];
        for (int k = chain.Count - 1; k >= 0; k--)
        {
            int pos = chain[k].BodyStart, stop = chain[k].BodyEnd;
            while (pos < stop)
            {
                var (end, next) = LineAt(text, pos);
                // Exactly one tab: a device (or subclass); two are subsystems and prog-ifs, not kept.
                if (end - pos > 1 && text[pos] == (byte)'\t' && text[pos + 1] != (byte)'\t'
                    && (ChildIdFromBytes(text[pos..end], digits, out int id) ?? ChildName(Decode(text[pos..end], ref chars), digits, out id, out _)))
                    children[(ushort)id] = pos;
                pos = next;
            }
        }
        return section.Children = children;
    }

    /// <summary>The name of the child <paramref name="id"/> of a section, or null. Caller holds <see cref="_sync"/>.</summary>
    private string? ChildName(Section section, int digits, ushort id)
    {
        if (!ChildrenOf(section, digits).TryGetValue(id, out int pos)) return null;
        ReadOnlySpan<byte> text = Utf8;
        ReadOnlySpan<byte> line = text[pos..LineAt(text, pos).End];
        Span<char> chars = line.Length <= 256 ? stackalloc char[256] : new char[line.Length];
        int n = Encoding.UTF8.GetChars(line, chars);
        return ChildName(chars[..n], digits, out _, out var name) ? name.ToString() : null;
    }

    /// <summary>A line one tab in (<c>\tdddd  Name</c>) as pciutils reads it: trailing blanks dropped, then id and name.</summary>
    private static bool ChildName(ReadOnlySpan<char> line, int digits, out int id, out ReadOnlySpan<char> name)
    {
        line = line.TrimEnd();
        id = 0; name = default;
        return line.Length > 1 && TryIdName(line[1..], digits, out id, out name);
    }

    /// <summary>One line decoded from UTF-8 (invalid bytes become U+FFFD, as decoding the whole file did).</summary>
    private static ReadOnlySpan<char> Decode(ReadOnlySpan<byte> line, ref char[] chars)
    {
        if (chars.Length < line.Length) chars = new char[line.Length];
        return chars.AsSpan(0, Encoding.UTF8.GetChars(line, chars));
    }

    private static bool TryIdName(ReadOnlySpan<char> s, int digits, out int id, out ReadOnlySpan<char> name)
    {
        id = 0; name = default;
        if (s.Length < digits + 2 || s[digits] != ' ') return false;
        if (!int.TryParse(s[..digits], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out id)) return false;
        name = s[(digits + 1)..].Trim();
        return name.Length > 0;
    }

    /// <summary>The vendor's name, or null when the database does not have it.</summary>
    public string? Vendor(ushort vendor)
    {
        lock (_sync) return Index().Vendors.GetValueOrDefault(vendor) is { } section ? NameOf(section) : null;
    }

    /// <summary>The device's name under <paramref name="vendor"/>, or null when the database does not have it.</summary>
    public string? Device(ushort vendor, ushort device)
    {
        lock (_sync)
            return Index().Vendors.GetValueOrDefault(vendor) is { } section ? ChildName(section, 4, device) : null;
    }

    /// <summary>The subclass name of a 24-bit class code, else its base-class name (pciutils' lookup order), else null.</summary>
    public string? Class(uint classCode)
    {
        lock (_sync)
        {
            if (Index().Classes.GetValueOrDefault((byte)(classCode >> 16)) is not { } section) return null;
            return ChildName(section, 2, (byte)(classCode >> 8)) ?? NameOf(section);
        }
    }

    /// <summary>"Vendor Device" when both are known, else what is known, else null.</summary>
    public string? Name(ushort vendor, ushort device)
    {
        var v = Vendor(vendor);
        var d = Device(vendor, device);
        if (v is not null && d is not null) return $"{v} {d}";
        return v is not null ? $"{v} Device" : null;
    }
}
