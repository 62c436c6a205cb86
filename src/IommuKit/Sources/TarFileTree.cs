using System.Formats.Tar;
using System.IO.Compression;

namespace IommuKit.Sources;

/// <summary>
/// A (gzip'd) tarball read entirely into memory as a <see cref="FileTree"/>, without extracting anything to disk.
/// Only directories, regular files and relative symlinks are accepted; every member name is checked (no absolute
/// names, no <c>..</c>), and the caps of <see cref="SourceLimits"/> bound what is read: the total uncompressed size is
/// counted as it is inflated, and a member whose header declares more than <see cref="SourceLimits.MaxFileBytes"/> is
/// refused before its data is read, so a gzip bomb or a 2 GB member fails fast.
/// </summary>
internal sealed class TarFileTree : FileTree
{
    private sealed class Node
    {
        public FileNodeKind Kind;
        public byte[]? Data;
        public string? Link;
        public List<string>? Children;
    }

    private readonly Dictionary<string, Node> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string[]> _listCache = new(StringComparer.Ordinal);

    private TarFileTree(string origin) : base(origin)
    {
        _nodes[""] = new Node { Kind = FileNodeKind.Directory, Children = new List<string>() };
    }

    /// <summary>Number of members kept (directories implied by names included).</summary>
    public int Count => _nodes.Count - 1;

    /// <summary>Reads a tarball from <paramref name="stream"/>; gzip is detected from the magic bytes.</summary>
    /// <param name="stream">Read to the end of the archive; not disposed.</param>
    /// <param name="origin">Name for messages (the file path).</param>
    /// <exception cref="InputException">Not a tarball, corrupt, over a cap, or holding a forbidden member.</exception>
    public static TarFileTree Read(Stream stream, string origin) => Read(stream, origin, SourceLimits.MaxTarUncompressedBytes);

    /// <summary>As <see cref="Read(Stream, string)"/> with another cap on the uncompressed size (tests use a small one).</summary>
    internal static TarFileTree Read(Stream stream, string origin, long maxUncompressedBytes)
    {
        var tree = new TarFileTree(origin);
        Stream input = stream;
        if (!input.CanSeek)
        {
            input = new MemoryStream(SourceLimits.ReadAllCapped(input, SourceLimits.MaxInputFileBytes, origin, "tarball"), writable: false);
        }
        long start = input.Position;
        int b0 = input.ReadByte(), b1 = input.ReadByte();
        input.Position = start;
        bool gzip = b0 == 0x1f && b1 == 0x8b;
        // The archive is inflated whole first (counted against the cap as it inflates), then every header is checked
        // before TarReader sees it: TarReader takes a header whose checksum field is blank for the end of the archive
        // and would silently drop the rest of a corrupt one.
        byte[] tar;
        try
        {
            tar = Inflate(input, gzip, maxUncompressedBytes, origin);
        }
        catch (InvalidDataException ex)
        {
            throw InputException.At(origin, $"not a valid gzip stream: {OneLine(ex.Message)}");
        }
        CheckHeaders(tar, origin);
        string? current = null;
        try
        {
            using var reader = new TarReader(new MemoryStream(tar, writable: false), leaveOpen: false);
            int entries = 0;
            while (reader.GetNextEntry(copyData: false) is { } entry)
            {
                current = entry.Name;
                if (++entries > SourceLimits.MaxEntries)
                    throw InputException.At(origin, $"more than {SourceLimits.MaxEntries} tar members");
                tree.AddEntry(entry);
            }
        }
        catch (InvalidDataException ex)
        {
            throw InputException.At(origin, $"not a valid tar archive{After(current)}: {OneLine(ex.Message)}");
        }
        catch (FormatException ex)
        {
            throw InputException.At(origin, $"not a valid tar archive{After(current)}: {OneLine(ex.Message)}");
        }
        catch (EndOfStreamException)
        {
            throw InputException.At(origin, $"the archive is truncated (it ends inside a member{After(current)})");
        }
        catch (NotSupportedException ex)
        {
            // TarReader refuses some member kinds itself (GNU sparse 'S', multi-volume 'M'): bad input, not a crash.
            throw InputException.At(origin, $"a member{After(current)} is of a kind that is not accepted ({OneLine(ex.Message)}); only directories, regular files and symlinks are");
        }
        catch (ArgumentException ex)
        {
            // TarReader reports some malformed header fields this way.
            throw InputException.At(origin, $"not a valid tar archive{After(current)}: {OneLine(ex.Message)}");
        }
        catch (OverflowException)
        {
            throw InputException.At(origin, $"not a valid tar archive{After(current)}: a header field is out of range");
        }
        if (tree.Count == 0) throw InputException.At(origin, "the archive has no members");
        return tree;
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();

    private static string After(string? member) => member is null ? "" : $" (after member '{member}')";

    /// <summary>
    /// The whole uncompressed archive, refused once it passes <paramref name="cap"/>. A gzip stream must end with its
    /// trailer intact: .NET's inflater accepts a stream cut inside the 8-byte trailer (CRC-32, ISIZE), so ISIZE (RFC
    /// 1952 section 2.3.1, the length modulo 2^32) is checked against what was inflated. One gzip member is accepted, as
    /// <c>iommu snapshot</c> and <c>tar czf</c> write.
    /// </summary>
    private static byte[] Inflate(Stream input, bool gzip, long cap, string origin)
    {
        long start = input.Position;
        using var ms = new MemoryStream();
        using (var inflated = gzip ? new GZipStream(input, CompressionMode.Decompress, leaveOpen: true) : null)
        using (var counted = new CappedReadStream(inflated ?? input, cap, origin))
        {
            counted.CopyTo(ms);
        }
        if (gzip)
        {
            long end = input.Length;
            if (end - start < 18) throw InputException.At(origin, "the gzip stream is truncated (shorter than its header and trailer)");
            input.Position = end - 4;
            Span<byte> isize = stackalloc byte[4];
            input.ReadExactly(isize);
            if (System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(isize) != (uint)ms.Length)
                throw InputException.At(origin, "the gzip stream is truncated or corrupt: its trailer does not match the data (cut inside the trailer, or several gzip streams concatenated)");
        }
        return ms.ToArray();
    }

    /// <summary>
    /// Walks the 512-byte headers of <paramref name="tar"/> up to the end-of-archive block and checks each checksum
    /// (POSIX ustar: the sum of the header's bytes with the checksum field read as spaces, unsigned or, as old tars
    /// wrote it, signed). A corrupt header anywhere is bad input naming the member before it, and a corrupt first
    /// header says the file is no tar archive at all.
    /// </summary>
    private static void CheckHeaders(byte[] tar, string origin)
    {
        const int Block = 512;
        long pos = 0;
        string? previous = null;
        int index = 0;
        if (tar.Length == 0) throw InputException.At(origin, "the archive is empty (no tar header)");
        while (pos + Block <= tar.Length)
        {
            var h = tar.AsSpan((int)pos, Block);
            if (h.IndexOfAnyExcept((byte)0) < 0) return; // end-of-archive block
            if (!ChecksumMatches(h))
            {
                if (index == 0) throw InputException.At(origin, "not a tar archive: the first header's checksum does not match (a corrupt or foreign file)", offset: pos);
                throw InputException.At(origin, $"tar header {index + 1} (after member '{previous}') is corrupt: its checksum does not match", offset: pos);
            }
            string name = CString(h[..100]);
            char type = (char)h[156];
            if (type is not ('L' or 'K' or 'x' or 'g')) previous = name;
            if (!TryParseSize(h.Slice(124, 12), out long size) || size < 0)
                throw InputException.At(origin, $"tar header of member '{name}' has an unreadable size field", offset: pos);
            // Hard links, symlinks and directories carry no data whatever the size field says (POSIX).
            if (type is '1' or '2' or '3' or '4' or '5' or '6') size = 0;
            if (type is '0' or '\0' or '7' && size > SourceLimits.MaxFileBytes)
                throw InputException.At(origin, $"member declares {size} bytes, over the {SourceLimits.MaxFileBytes}-byte cap per member", device: name);
            long next = pos + Block + (size + Block - 1) / Block * Block;
            if (next < pos || next > tar.Length)
                throw InputException.At(origin, $"the archive is truncated (it ends inside member '{name}')", offset: pos);
            pos = next;
            index++;
        }
        if (pos < tar.Length) throw InputException.At(origin, $"the archive is truncated (it ends inside a header after member '{previous}')", offset: pos);
        if (index == 0) throw InputException.At(origin, "not a tar archive: no header");
        // Ending without the two zero blocks is tolerated, as GNU tar does (with a warning there).
    }

    private static bool ChecksumMatches(ReadOnlySpan<byte> h)
    {
        if (!TryParseOctal(h.Slice(148, 8), out long stored)) return false;
        long unsigned = 0, signed = 0;
        for (int i = 0; i < h.Length; i++)
        {
            byte b = i is >= 148 and < 156 ? (byte)' ' : h[i];
            unsigned += b;
            signed += (sbyte)b;
        }
        return stored == unsigned || stored == signed;
    }

    private static bool TryParseSize(ReadOnlySpan<byte> field, out long size)
    {
        size = 0;
        if ((field[0] & 0x80) != 0)
        {
            // GNU base-256: big-endian two's complement in the remaining bytes.
            if ((field[0] & 0x40) != 0) return false; // negative
            long v = field[0] & 0x3f;
            for (int i = 1; i < field.Length; i++)
            {
                if (v > (long.MaxValue >> 8)) return false;
                v = (v << 8) | field[i];
            }
            size = v;
            return true;
        }
        return TryParseOctal(field, out size);
    }

    private static bool TryParseOctal(ReadOnlySpan<byte> field, out long value)
    {
        value = 0;
        int i = 0;
        while (i < field.Length && field[i] == ' ') i++;
        int digits = 0;
        for (; i < field.Length && field[i] is >= (byte)'0' and <= (byte)'7'; i++, digits++)
        {
            if (value > (long.MaxValue >> 3)) return false;
            value = (value << 3) | (long)(field[i] - '0');
        }
        for (; i < field.Length; i++) if (field[i] is not (0 or (byte)' ')) return false;
        return digits > 0;
    }

    private static string CString(ReadOnlySpan<byte> field)
    {
        int n = field.IndexOf((byte)0);
        return System.Text.Encoding.UTF8.GetString(n < 0 ? field : field[..n]);
    }

    private void AddEntry(TarEntry entry)
    {
        string raw = entry.Name;
        if (entry.EntryType == TarEntryType.GlobalExtendedAttributes) return; // pax global header: metadata only
        if (raw.Length > MaxPathLength)
            throw InputException.At(Origin, $"member name of {raw.Length} characters is longer than the {MaxPathLength}-character cap");
        if (raw.StartsWith('/'))
            throw InputException.At(Origin, $"member '{raw}' has an absolute name (only names relative to / are accepted)");
        if (raw.Contains('\0'))
            throw InputException.At(Origin, "a member name contains a NUL character");
        string name = Normalize(raw);
        if (name.Length == 0) return; // "./" itself
        int depth = 0;
        foreach (char ch in name) if (ch == '/') depth++;

        Node node;
        switch (entry.EntryType)
        {
            case TarEntryType.Directory:
                node = new Node { Kind = FileNodeKind.Directory, Children = new List<string>() };
                break;
            case TarEntryType.RegularFile:
            case TarEntryType.V7RegularFile:
            case TarEntryType.ContiguousFile:
                if (entry.Length > SourceLimits.MaxFileBytes || entry.Length < 0)
                    throw InputException.At(Origin, $"member declares {entry.Length} bytes, over the {SourceLimits.MaxFileBytes}-byte cap per member", device: name);
                var data = new byte[entry.Length];
                if (entry.DataStream is { } ds) ds.ReadExactly(data);
                node = new Node { Kind = FileNodeKind.File, Data = data };
                break;
            case TarEntryType.SymbolicLink:
                string target = entry.LinkName;
                if (target.Length == 0) throw InputException.At(Origin, "symlink has an empty target", device: name);
                if (target.Length > MaxPathLength)
                    throw InputException.At(Origin, $"symlink target of {target.Length} characters is longer than the {MaxPathLength}-character cap", device: name);
                if (target.StartsWith('/'))
                    throw InputException.At(Origin, $"symlink has the absolute target '{target}' (only relative links are accepted)", device: name);
                // A relative target may climb with '..' but never above the root of the archive (checked now, once,
                // so a later lookup cannot be steered outside).
                foreach (var p in target.Split('/'))
                {
                    if (p.Length == 0 || p == ".") continue;
                    depth += p == ".." ? -1 : 1;
                    if (depth < 0) throw InputException.At(Origin, $"symlink target '{target}' climbs above the root of the archive", device: name);
                }
                node = new Node { Kind = FileNodeKind.Symlink, Link = target };
                break;
            default:
                throw InputException.At(Origin, $"member is a {entry.EntryType} entry; only directories, regular files and symlinks are accepted", device: name);
        }

        // Parents are implied by the name even when the archive has no entry for them.
        int slash = name.LastIndexOf('/');
        string parent = slash < 0 ? "" : name[..slash];
        EnsureDirectory(parent, name);
        if (_nodes.TryGetValue(name, out var existing))
        {
            if (existing.Kind == FileNodeKind.Directory && node.Kind == FileNodeKind.Directory) return;
            throw InputException.At(Origin, "the archive holds this member twice", device: name);
        }
        _nodes[name] = node;
        _nodes[parent].Children!.Add(name[(slash + 1)..]);
    }

    private void EnsureDirectory(string dir, string member)
    {
        if (_nodes.TryGetValue(dir, out var d))
        {
            if (d.Kind != FileNodeKind.Directory)
                throw InputException.At(Origin, $"'{dir}' is both a {d.Kind.ToString().ToLowerInvariant()} and a directory", device: member);
            return;
        }
        int slash = dir.LastIndexOf('/');
        string parent = slash < 0 ? "" : dir[..slash];
        EnsureDirectory(parent, member);
        _nodes[dir] = new Node { Kind = FileNodeKind.Directory, Children = new List<string>() };
        _nodes[parent].Children!.Add(dir[(slash + 1)..]);
    }

    /// <summary>The member name without "./", empty components or a trailing '/'; '..' anywhere is bad input.</summary>
    private string Normalize(string raw)
    {
        // Fast path: names as tar writes them ("sys/bus/pci/devices/0000:00:00.0", "sys/" for a directory).
        bool clean = raw.Length > 0 && raw[0] != '.';
        for (int i = 0; clean && i < raw.Length; i++)
        {
            if (raw[i] == '/' && (i + 1 < raw.Length && (raw[i + 1] == '/' || raw[i + 1] == '.'))) clean = false;
        }
        if (clean) return raw.EndsWith('/') ? raw[..^1] : raw;
        var parts = new List<string>();
        foreach (var p in raw.Split('/'))
        {
            if (p.Length == 0 || p == ".") continue;
            if (p == "..") throw InputException.At(Origin, $"member '{raw}' contains '..' (it would escape the root)");
            parts.Add(p);
        }
        return string.Join('/', parts);
    }

    // A name in the map is canonical: a member under a symlinked directory is refused when the archive is read.
    /// <summary>True for a name in the archive that is not a symlink (members under symlinked directories are refused on load).</summary>
    protected override bool IsCanonical(string path) =>
        _nodes.TryGetValue(path, out var n) && n.Kind != FileNodeKind.Symlink;

    /// <inheritdoc/>
    protected override FileNodeKind LstatCore(string canonicalPath) =>
        _nodes.TryGetValue(canonicalPath, out var n) ? n.Kind : FileNodeKind.Missing;

    /// <inheritdoc/>
    protected override string ReadLinkCore(string canonicalPath) => _nodes[canonicalPath].Link ?? "";

    /// <inheritdoc/>
    protected override IReadOnlyList<string> ListCore(string canonicalPath)
    {
        if (_listCache.TryGetValue(canonicalPath, out var cached)) return cached;
        var children = _nodes[canonicalPath].Children;
        var list = children is null ? [] : children.ToArray();
        Array.Sort(list, StringComparer.Ordinal);
        _listCache[canonicalPath] = list;
        return list;
    }

    /// <inheritdoc/>
    protected override byte[] ReadCore(string canonicalPath, int maxBytes)
    {
        var data = _nodes[canonicalPath].Data ?? [];
        return data.Length <= maxBytes + 1 ? data : data[..(maxBytes + 1)];
    }

    /// <summary>A read-only stream wrapper that throws <see cref="InputException"/> once more than a cap was read.</summary>
    private sealed class CappedReadStream(Stream inner, long cap, string origin) : Stream
    {
        private long _read;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int n = inner.Read(buffer);
            _read += n;
            if (_read > cap)
                throw InputException.At(origin, $"the archive inflates to more than the {cap}-byte cap (a gzip bomb, or not a snapshot)");
            return n;
        }
    }
}
