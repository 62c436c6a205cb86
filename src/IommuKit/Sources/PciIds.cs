using System.Buffers;
using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;

namespace IommuKit.Sources;

/// <summary>
/// The pci.ids database (https://pci-ids.ucw.cz) as pciutils reads it: vendor, device and class names. Optional:
/// every caller must work without it (names are then null and output falls back to numbers, as lspci does).
/// </summary>
/// <remarks>
/// Format (pciutils <c>lib/names-parse.c</c>): <c>vvvv  Vendor</c>, <c>\tdddd  Device</c>,
/// <c>\t\tssss ssss  Subsystem</c>; <c>C cc  Class</c>, <c>\tss  Subclass</c>, <c>\t\tpp  Prog-if</c>; <c>#</c> comments.
/// Lines of other sections (<c>X</c>, <c>L</c>…) are skipped. Subsystem and prog-if names are not kept.
/// </remarks>
public sealed class PciIds
{
    /// <summary>Where distributions install the database, in the order pciutils and hwdata use them.</summary>
    public static readonly IReadOnlyList<string> DefaultPaths =
        ["/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"];

    /// <summary>Largest file accepted (the real database is about 1.5 MB).</summary>
    public const long MaxBytes = 64L * 1024 * 1024;

    /// <summary>An empty database: every lookup returns null.</summary>
    public static PciIds Empty { get; } = new();

    /// <summary>Where the database was read from, or null for <see cref="Empty"/> and parsed text.</summary>
    public string? Path { get; private init; }

    /// <summary>Number of vendor names in the database.</summary>
    public int VendorCount
    {
        get
        {
            try { lock (_sync) return VendorKeys(Index()).Count; }
            finally { GC.KeepAlive(this); }
        }
    }

    /// <summary>Number of device names in the database (finds every vendor's devices: for tests and tools).</summary>
    public int DeviceCount
    {
        get
        {
            try
            {
                lock (_sync)
                {
                    var index = Index();
                    int n = 0;
                    foreach (int vendor in VendorKeys(index)) n += new HashSet<ushort>(ChildrenOf(index, vendor, 4)!.Ids).Count;
                    return n;
                }
            }
            finally { GC.KeepAlive(this); }
        }
    }

    private static HashSet<int> VendorKeys(IndexData index) => index.Keys.Where(k => k is >= 0 and < ClassKey).ToHashSet();

    /// <summary>The first installed database of <see cref="DefaultPaths"/>, or null when none is installed or readable.</summary>
    public static PciIds? LoadInstalled()
    {
        foreach (var p in DefaultPaths)
        {
            // The installed database is mapped, not read: a package replaces it whole, never in place.
            var ids = TryLoad(p, out _, map: true);
            if (ids is not null) return ids;
        }
        return null;
    }

    /// <summary>
    /// Reads a database file; null when it does not exist or cannot be read (never throws for I/O). Only a regular file
    /// is read, and at most <see cref="MaxBytes"/>: a FIFO or <c>/dev/zero</c> is refused at once.
    /// </summary>
    public static PciIds? TryLoad(string path) => TryLoad(path, out _);

    /// <summary>As <see cref="TryLoad(string)"/>, with why it could not be read (null when it does not exist).</summary>
    public static PciIds? TryLoad(string path, out string? problem) => TryLoad(path, out problem, map: false);

    private static PciIds? TryLoad(string path, out string? problem, bool map)
    {
        problem = null;
        try
        {
            if (map && RegularFile.MapReadOnly(path, path, MaxBytes) is { } mapped) return new PciIds(mapped) { Path = path };
            return new PciIds(RegularFile.ReadAllCapped(path, path, MaxBytes)) { Path = path };
        }
        catch (FileNotFoundException) { return null; }
        catch (FileReadException ex) { problem = ex.Reason; return null; }
    }

    private PciIds() : this([]) { }

    private PciIds(byte[] utf8) => _array = utf8;

    private PciIds(RegularFile.MappedFile mapped) => _mapped = mapped;

    /// <summary>Unmaps a mapped database: every lookup keeps this object alive (GC.KeepAlive) while it reads the bytes.</summary>
    ~PciIds() => _mapped?.Unmap();

    /// <summary>Parses database text. Malformed lines are skipped, as pciutils does for unknown sections.</summary>
    public static PciIds Parse(string text) => new(Encoding.UTF8.GetBytes(text));

    /// <summary>A database from its file's bytes (kept, not copied), as <see cref="TryLoad(string)"/> reads them.</summary>
    internal static PciIds FromUtf8(byte[] utf8) => new(utf8);

    // The database stays as the file's bytes. The first lookup finds its top-level lines (vendors and classes, about
    // 2,400 of 36,000 lines) in one vectorized pass; a vendor's or class's own lines (its devices or subclasses) are
    // found, the same way, the first time one of them is asked for, and a name is decoded when it is asked for. A
    // command names a few dozen devices, so it reads a few sections instead of parsing the whole 1.4 MB (issue 11).
    // The result is the same as parsing every line in order (pciutils lib/names-parse.c): lines are split where
    // string.EnumerateLines splits them, each line is decoded on its own (a separator is never part of a UTF-8
    // sequence), and a name given twice is the later one. PciIdsScanTests holds the reader this replaced as its oracle.
    private readonly byte[]? _array;
    private readonly RegularFile.MappedFile? _mapped; // the installed file, mapped read-only

    /// <summary>The file's bytes: the array read, or the mapped file.</summary>
    private ReadOnlySpan<byte> Utf8 => _mapped is { } m ? m.Span : _array;
    private readonly Lock _sync = new(); // guards _index and everything it holds
    private IndexData? _index;

    /// <summary>Key of a class's top-level line: its id plus this (a vendor's key is its id).</summary>
    private const int ClassKey = 0x10000;
    /// <summary>Key of a top-level line that ends a section and opens none (<c>X  other</c>, <c>zzzz  bad</c>).</summary>
    private const int NoKey = -1;
    /// <summary>What <see cref="TopLevelKey"/> says of a line that ends no section (blank once trimmed).</summary>
    private const int NotTopLevel = -2;

    /// <summary>
    /// The top-level lines in file order: every line that ends the section before it (not blank once trimmed, not a
    /// comment, no tab first). A section's lines run from the line after its own to the next top-level line.
    /// </summary>
    private sealed class IndexData(List<int> starts, List<int> keys)
    {
        /// <summary>Where each top-level line starts.</summary>
        public List<int> Starts { get; } = starts;
        /// <summary>Its vendor id, <see cref="ClassKey"/> + class id, or <see cref="NoKey"/>.</summary>
        public List<int> Keys { get; } = keys;
        /// <summary>Names decoded so far, by position in <see cref="Starts"/>.</summary>
        public Dictionary<int, string> Names { get; } = new();
        /// <summary>The last top-level line of each key asked for so far (-1: none), by key.</summary>
        public Dictionary<int, int> LastEntries { get; } = new();

        /// <summary>The position in <see cref="Starts"/> of the last line with <paramref name="key"/> (its name wins), or -1.</summary>
        public int LastEntry(int key)
        {
            if (!LastEntries.TryGetValue(key, out int entry))
                LastEntries[key] = entry = CollectionsMarshal.AsSpan(Keys).LastIndexOf(key);
            return entry;
        }
        /// <summary>The child lines of every section of a key (a vendor named twice has two), once found.</summary>
        public Dictionary<int, Children> ChildrenByKey { get; } = new();
    }

    /// <summary>The lines one tab under the sections of one key, in file order (a later line with the same id wins).</summary>
    private sealed class Children(List<ushort> ids, List<int> starts)
    {
        public List<ushort> Ids { get; } = ids;
        public List<int> Starts { get; } = starts;
        /// <summary>Names decoded so far (null: no such child).</summary>
        public Dictionary<ushort, string?> Names { get; } = new();
    }

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
            int length = BreakLength(text, i);
            if (length > 0) return (i, i + (text[i] == (byte)'\r' && i + 1 < text.Length && text[i + 1] == (byte)'\n' ? 2 : length));
            i++;
        }
    }

    /// <summary>
    /// The length of the line break at <paramref name="i"/>, or 0. A CR is one byte here even before an LF: the LF then
    /// ends an empty line, which is neither a top-level nor a child line, so the lines found are the same.
    /// </summary>
    private static int BreakLength(ReadOnlySpan<byte> text, int i) => text[i] switch
    {
        (byte)'\n' or (byte)'\r' or (byte)'\f' => 1,
        0xc2 => i + 1 < text.Length && text[i + 1] == 0x85 ? 2 : 0,
        0xe2 => i + 2 < text.Length && text[i + 1] == 0x80 && text[i + 2] is 0xa8 or 0xa9 ? 3 : 0,
        _ => 0,
    };

    /// <summary>
    /// Adds to <paramref name="found"/>, in order, the start of every line in [<paramref name="from"/>, <paramref name="to"/>)
    /// that <typeparamref name="TLines"/> wants. <paramref name="from"/> must be where a line starts.
    /// </summary>
    /// <remarks>
    /// 64 bytes a step, as four 16-byte vectors: a mask of the LFs, whose next line's first bytes are then checked one
    /// by one (a line is ~37 bytes, most start with a tab), and one test for any byte that may start another break
    /// (CR, FF, and any non-ASCII byte, which covers 0xC2 of NEL and 0xE2 of LS/PS: the real file has eight non-ASCII
    /// bytes). A step with one of those takes every CR, FF, LF, 0xC2 and 0xE2 in order and checks each for a break.
    /// Vector128 only: the native build targets x64-v2, without AVX2.
    /// </remarks>
    private static void FindLineStarts<TLines>(ReadOnlySpan<byte> text, int from, int to, List<int> found)
        where TLines : struct, ILineFilter
    {
        if (from < to && TLines.Wanted(text, from)) found.Add(from);
        int i = from;
        if (Vector128.IsHardwareAccelerated)
        {
            ref byte start = ref MemoryMarshal.GetReference(text);
            const int Step = 64, Width = 16;
            // A wanted line's first two bytes are read past an LF: stay that far inside the text.
            while (i + Step <= to && i + Step + 2 <= text.Length)
            {
                nuint at = (nuint)i;
                var a0 = Vector128.LoadUnsafe(ref start, at);
                var a1 = Vector128.LoadUnsafe(ref start, at + Width);
                var a2 = Vector128.LoadUnsafe(ref start, at + 2 * Width);
                var a3 = Vector128.LoadUnsafe(ref start, at + 3 * Width);
                var c0 = CrOrFf(a0);
                var c1 = CrOrFf(a1);
                var c2 = CrOrFf(a2);
                var c3 = CrOrFf(a3);
                ulong breaks = Bits(Lf(a0), Lf(a1), Lf(a2), Lf(a3));
                // Sign bits: a non-ASCII byte, or a CR or FF.
                if ((a0 | a1 | a2 | a3 | c0 | c1 | c2 | c3).ExtractMostSignificantBits() == 0)
                {
                    for (; breaks != 0; breaks &= breaks - 1)
                    {
                        int next = i + BitOperations.TrailingZeroCount(breaks) + 1;
                        if (next < to && TLines.Wanted(text, next)) found.Add(next);
                    }
                }
                else
                {
                    breaks |= Bits(c0, c1, c2, c3) | Bits(C2OrE2(a0), C2OrE2(a1), C2OrE2(a2), C2OrE2(a3));
                    for (; breaks != 0; breaks &= breaks - 1)
                        AddIfWanted<TLines>(text, i + BitOperations.TrailingZeroCount(breaks), to, found);
                }
                i += Step;
            }
        }
        for (; i < to; i++) AddIfWanted<TLines>(text, i, to, found);
    }

    /// <summary>Adds the line after a break at <paramref name="i"/> when it is inside the range and wanted.</summary>
    private static void AddIfWanted<TLines>(ReadOnlySpan<byte> text, int i, int to, List<int> found) where TLines : struct, ILineFilter
    {
        int length = BreakLength(text, i);
        if (length > 0 && i + length < to && TLines.Wanted(text, i + length)) found.Add(i + length);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> Lf(Vector128<byte> a) => Vector128.Equals(a, Vector128.Create((byte)'\n'));

    /// <summary>(b &amp; 0xFE) == 0x0C: FF or CR.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> CrOrFf(Vector128<byte> a) =>
        Vector128.Equals(a & Vector128.Create((byte)0xfe), Vector128.Create((byte)0x0c));

    /// <summary>(b | 0x20) == 0xE2: 0xC2 or 0xE2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> C2OrE2(Vector128<byte> a) =>
        Vector128.Equals(a | Vector128.Create((byte)0x20), Vector128.Create((byte)0xe2));

    /// <summary>The four 16-byte masks as one 64-bit mask, first byte lowest.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Bits(Vector128<byte> m0, Vector128<byte> m1, Vector128<byte> m2, Vector128<byte> m3) =>
        m0.ExtractMostSignificantBits() | (ulong)m1.ExtractMostSignificantBits() << 16
        | (ulong)m2.ExtractMostSignificantBits() << 32 | (ulong)m3.ExtractMostSignificantBits() << 48;

    /// <summary>Which lines <see cref="FindLineStarts"/> looks for.</summary>
    private interface ILineFilter
    {
        /// <summary>Whether the line starting at <paramref name="pos"/> (inside the text) may be one.</summary>
        static abstract bool Wanted(ReadOnlySpan<byte> text, int pos);
    }

    /// <summary>Lines that may be top-level: not a tab, '#' or a break first.</summary>
    private readonly struct TopLevelLines : ILineFilter
    {
        public static bool Wanted(ReadOnlySpan<byte> text, int pos) =>
            text[pos] is not ((byte)'\t' or (byte)'#' or (byte)'\n' or (byte)'\r' or (byte)'\f');
    }

    /// <summary>Lines one tab in: a tab, then not a tab.</summary>
    private readonly struct ChildLines : ILineFilter
    {
        public static bool Wanted(ReadOnlySpan<byte> text, int pos) =>
            text[pos] == (byte)'\t' && pos + 1 < text.Length && text[pos + 1] != (byte)'\t';
    }

    /// <summary>Finds the top-level lines on first use. Caller holds <see cref="_sync"/>.</summary>
    private IndexData Index()
    {
        if (_index is not null) return _index;
        ReadOnlySpan<byte> text = Utf8;
        // Debian's pci.ids: 1.36 MB, 2,347 lines not starting with a tab or '#'.
        var candidates = new List<int>(text.Length / 512 + 16);
        FindLineStarts<TopLevelLines>(text, 0, text.Length, candidates);
        var starts = new List<int>(candidates.Count);
        var keys = new List<int>(candidates.Count);
        char[]? chars = null;
        foreach (int pos in candidates)
        {
            int key = TopLevelKey(text, pos, ref chars);
            if (key == NotTopLevel) continue;
            starts.Add(pos);
            keys.Add(key);
        }
        return _index = new IndexData(starts, keys);
    }

    /// <summary>
    /// What the line at <paramref name="pos"/> (no tab or '#' first) is: a vendor (its id), a class
    /// (<see cref="ClassKey"/> + id), another top-level line (<see cref="NoKey"/>), or blank (<see cref="NotTopLevel"/>).
    /// </summary>
    private static int TopLevelKey(ReadOnlySpan<byte> text, int pos, ref char[]? chars)
    {
        // A printable first byte makes the line non-blank; the bytes then decide the rest as a rule (see IdFromBytes).
        if (text[pos] is > 0x20 and < 0x7f)
        {
            bool isClass = text[pos] == (byte)'C' && pos + 1 < text.Length && text[pos + 1] == (byte)' ';
            int id = IdFromBytes(text, isClass ? pos + 2 : pos, isClass ? 2 : 4);
            if (id >= 0) return isClass ? ClassKey + id : id;
            if (id == NotAnId) return NoKey;
        }
        int end = LineAt(text, pos).End;
        chars ??= new char[256];
        var line = Decode(text[pos..end], ref chars).TrimEnd();
        if (line.IsEmpty) return NotTopLevel;
        return TopLevel(line, out bool cls, out int lineId, out _) ? (cls ? ClassKey + lineId : lineId) : NoKey;
    }

    /// <summary>A top-level line (trimmed at its end): a class (<c>C cc  Name</c>) or a vendor (<c>vvvv  Name</c>).</summary>
    private static bool TopLevel(ReadOnlySpan<char> line, out bool isClass, out int id, out ReadOnlySpan<char> name)
    {
        id = 0; name = default;
        isClass = line.StartsWith("C ") && TryIdName(line[2..], 2, out id, out name);
        return isClass || TryIdName(line, 4, out id, out name);
    }

    /// <summary>The name of top-level line <paramref name="entry"/>, decoded on first use. Caller holds <see cref="_sync"/>.</summary>
    private string NameOf(IndexData index, int entry)
    {
        if (index.Names.TryGetValue(entry, out var known)) return known;
        ReadOnlySpan<byte> text = Utf8;
        int pos = index.Starts[entry];
        ReadOnlySpan<byte> line = text[pos..LineAt(text, pos).End];
        Span<char> chars = line.Length <= 256 ? stackalloc char[256] : new char[line.Length];
        int n = Encoding.UTF8.GetChars(line, chars);
        TopLevel(((ReadOnlySpan<char>)chars[..n]).TrimEnd(), out _, out _, out var name);
        return index.Names[entry] = name.ToString();
    }

    /// <summary>
    /// The id at <paramref name="at"/> (<paramref name="digits"/> hex digits, then a space, then the name) read from
    /// the bytes, as <see cref="TryIdName"/> reads the decoded line trimmed at its end: the id, or <see cref="NotAnId"/>,
    /// when the bytes decide it; <see cref="Undecided"/> when only decoding can (no printable ASCII after the id, so
    /// whether the name is blank depends on how the rest decodes).
    /// </summary>
    /// <remarks>
    /// A byte of another character among the id and its space decodes to a char that is neither a hex digit nor a
    /// space, at that place or before it (the decoded line is never longer than its bytes), and a line break there
    /// ends the line too soon: so an id that is not hex digits and a space fails either way. Spaces, then a printable
    /// ASCII byte, are in the line and make the trimmed name non-empty.
    /// </remarks>
    private static int IdFromBytes(ReadOnlySpan<byte> text, int at, int digits)
    {
        if ((uint)(at + digits) >= (uint)text.Length) return NotAnId;
        int id = 0;
        foreach (byte b in text.Slice(at, digits))
        {
            int h = HexValue(b);
            if (h < 0) return NotAnId;
            id = id << 4 | h;
        }
        int p = at + digits;
        if (text[p] != (byte)' ') return NotAnId;
        while (++p < text.Length && text[p] == (byte)' ') { }
        return p < text.Length && text[p] is > 0x20 and < 0x7f ? id : Undecided;
    }

    /// <summary>What <see cref="IdFromBytes"/> returns for a line that is not an id and a name.</summary>
    private const int NotAnId = -1;
    /// <summary>What <see cref="IdFromBytes"/> returns when only decoding the line can tell.</summary>
    private const int Undecided = -2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int HexValue(byte b)
    {
        uint digit = (uint)(b - '0');
        if (digit <= 9) return (int)digit;
        uint letter = (uint)((b | 0x20) - 'a'); // 'A'-'F' and 'a'-'f' alone land on 0-5
        return letter <= 5 ? (int)letter + 10 : -1;
    }

    /// <summary>
    /// The lines one tab under every section of <paramref name="key"/> (devices of a vendor, subclasses of a class),
    /// found once per key. Null when no top-level line has the key. Caller holds <see cref="_sync"/>.
    /// </summary>
    private Children? ChildrenOf(IndexData index, int key, int digits)
    {
        if (index.ChildrenByKey.TryGetValue(key, out var known)) return known;
        var keys = CollectionsMarshal.AsSpan(index.Keys);
        ReadOnlySpan<byte> text = Utf8;
        List<int>? lines = null;
        char[]? chars = null;
        for (int entry = keys.IndexOf(key); entry >= 0; entry = NextEntry(keys, key, entry))
        {
            int from = LineAt(text, index.Starts[entry]).Next;
            int to = entry + 1 < keys.Length ? index.Starts[entry + 1] : text.Length;
            // Sized for the section (a device line is ~40 bytes, and most of a big vendor's lines are subsystems):
            // Intel's 4,233 devices would otherwise grow it through a dozen copies.
            lines ??= new List<int>(Math.Min((to - from) / 80 + 4, 1 << 16));
            FindLineStarts<ChildLines>(text, from, to, lines);
        }
        if (lines is null) return null;
        var ids = new List<ushort>(lines.Count);
        var starts = new List<int>(lines.Count);
        foreach (int pos in lines)
        {
            int id = IdFromBytes(text, pos + 1, digits);
            if (id == Undecided && !SlowChildId(text, pos, digits, ref chars, out id)) continue;
            if (id < 0) continue;
            ids.Add((ushort)id);
            starts.Add(pos);
        }
        return index.ChildrenByKey[key] = new Children(ids, starts);
    }

    private static int NextEntry(ReadOnlySpan<int> keys, int key, int entry)
    {
        int k = keys[(entry + 1)..].IndexOf(key);
        return k < 0 ? -1 : entry + 1 + k;
    }

    /// <summary>A line one tab in whose bytes did not decide it (<see cref="IdFromBytes"/> undecided): decoded and read.</summary>
    private static bool SlowChildId(ReadOnlySpan<byte> text, int pos, int digits, ref char[]? chars, out int id)
    {
        chars ??= new char[256];
        return ChildName(Decode(text[pos..LineAt(text, pos).End], ref chars), digits, out id, out _);
    }

    /// <summary>The name of child <paramref name="id"/> of <paramref name="key"/>'s sections, or null. Caller holds <see cref="_sync"/>.</summary>
    private string? ChildName(IndexData index, int key, int digits, ushort id)
    {
        if (ChildrenOf(index, key, digits) is not { } children) return null;
        if (children.Names.TryGetValue(id, out var known)) return known;
        int k = CollectionsMarshal.AsSpan(children.Ids).LastIndexOf(id);
        string? result = null;
        if (k >= 0)
        {
            ReadOnlySpan<byte> text = Utf8;
            int pos = children.Starts[k];
            ReadOnlySpan<byte> line = text[pos..LineAt(text, pos).End];
            Span<char> chars = line.Length <= 256 ? stackalloc char[256] : new char[line.Length];
            int n = Encoding.UTF8.GetChars(line, chars);
            result = ChildName(chars[..n], digits, out _, out var name) ? name.ToString() : null;
        }
        return children.Names[id] = result;
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
        try
        {
            lock (_sync)
            {
                var index = Index();
                int entry = index.LastEntry(vendor);
                return entry >= 0 ? NameOf(index, entry) : null;
            }
        }
        finally { GC.KeepAlive(this); } // a mapped file lives as long as this object: not unmapped mid-lookup
    }

    /// <summary>The device's name under <paramref name="vendor"/>, or null when the database does not have it.</summary>
    public string? Device(ushort vendor, ushort device)
    {
        try { lock (_sync) return ChildName(Index(), vendor, 4, device); }
        finally { GC.KeepAlive(this); }
    }

    /// <summary>The subclass name of a 24-bit class code, else its base-class name (pciutils' lookup order), else null.</summary>
    public string? Class(uint classCode)
    {
        try
        {
            lock (_sync)
            {
                var index = Index();
                int key = ClassKey + (byte)(classCode >> 16);
                int entry = index.LastEntry(key);
                if (entry < 0) return null;
                return ChildName(index, key, 2, (byte)(classCode >> 8)) ?? NameOf(index, entry);
            }
        }
        finally { GC.KeepAlive(this); }
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
