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
public sealed class TarFileTree : FileTree
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
        try
        {
            // Streamed, never seekable: TarReader hands over each header before touching the member's data, so a member
            // that declares more than the per-member cap is refused from its header, and the counting stream enforces
            // the total cap as bytes are inflated.
            using var inflated = gzip ? new GZipStream(input, CompressionMode.Decompress, leaveOpen: true) : null;
            using var counted = new CappedReadStream(inflated ?? input, maxUncompressedBytes, origin);
            using var reader = new TarReader(counted, leaveOpen: true);
            int entries = 0;
            while (reader.GetNextEntry(copyData: false) is { } entry)
            {
                if (++entries > SourceLimits.MaxEntries)
                    throw InputException.At(origin, $"more than {SourceLimits.MaxEntries} tar members");
                tree.AddEntry(entry);
            }
        }
        catch (InvalidDataException ex)
        {
            throw InputException.At(origin, $"not a valid {(gzip ? "gzip'd " : "")}tar archive: {OneLine(ex.Message)}");
        }
        catch (FormatException ex)
        {
            throw InputException.At(origin, $"not a valid tar archive: {OneLine(ex.Message)}");
        }
        catch (EndOfStreamException)
        {
            throw InputException.At(origin, "the archive is truncated (it ends inside a member)");
        }
        catch (ArgumentException ex)
        {
            // TarReader reports some malformed header fields this way.
            throw InputException.At(origin, $"not a valid tar archive: {OneLine(ex.Message)}");
        }
        catch (OverflowException)
        {
            throw InputException.At(origin, "not a valid tar archive: a header field is out of range");
        }
        if (tree.Count == 0) throw InputException.At(origin, "the archive has no members");
        return tree;
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();

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
    protected override bool IsCanonical(string path) =>
        _nodes.TryGetValue(path, out var n) && n.Kind != FileNodeKind.Symlink;

    protected override FileNodeKind LstatCore(string canonicalPath) =>
        _nodes.TryGetValue(canonicalPath, out var n) ? n.Kind : FileNodeKind.Missing;

    protected override string ReadLinkCore(string canonicalPath) => _nodes[canonicalPath].Link ?? "";

    protected override IReadOnlyList<string> ListCore(string canonicalPath)
    {
        if (_listCache.TryGetValue(canonicalPath, out var cached)) return cached;
        var children = _nodes[canonicalPath].Children;
        var list = children is null ? [] : children.ToArray();
        Array.Sort(list, StringComparer.Ordinal);
        _listCache[canonicalPath] = list;
        return list;
    }

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
