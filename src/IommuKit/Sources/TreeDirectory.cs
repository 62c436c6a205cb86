using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace IommuKit.Sources;

/// <summary>
/// A directory of a <see cref="FileTree"/> opened once (<see cref="FileTree.OpenDirectory"/>) to read several names in
/// it: a device's id attributes and links. Each answer is the one <see cref="FileTree"/> gives for
/// <c>path/name</c>, with the same confinement: the name is opened without following it (a symlink takes the tree's
/// component walk, which resolves it inside the root and refuses escapes, naming the path), a FIFO, socket or device
/// is refused, never read as empty. A directory on disk reads each name relative to the directory's descriptor (one
/// path component for the kernel to walk), and a short attribute is read and parsed on the stack: nothing is
/// allocated for a hex id or a link's number.
/// </summary>
// Its stack buffers (up to 4 KiB for a link, 8 KiB of chars) are read only as far as a read, readlink or decode wrote
// them: no method here zeroes them first (a load reads some 2,000 names; the zeroing was ~5 M instructions, issue 11).
[SkipLocalsInit]
internal sealed class TreeDirectory : IDisposable
{
    /// <summary>Files at least this long are read through the tree's general path (an id attribute is 7 bytes).</summary>
    private const int SmallBytes = 256;

    /// <summary>PATH_MAX: readlink never returns more for a link the kernel made.</summary>
    private const int LinkBytes = 4096;

    private readonly FileTree _tree;

    /// <summary>The directory as the caller named it (messages and the general path use it).</summary>
    public string Named { get; }

    /// <summary>The directory's canonical path in the tree.</summary>
    public string Path { get; }

    /// <summary>The tree's handle on the directory (a descriptor), or -1 when names are read by path.</summary>
    internal int Handle { get; private set; }

    /// <summary>How the tree's messages name the directory (its path on disk), when it has a handle.</summary>
    internal string? Location { get; }

    /// <summary>
    /// The directory is on a live sysfs, whose names the kernel makes (attributes, directories and links only): a name
    /// is read without a type check first (<see cref="RegularFile.TryReadNoFollowAt"/>).
    /// </summary>
    internal bool KernelMade { get; }

    internal TreeDirectory(FileTree tree, string named, string canonical, int handle, string? location, bool kernelMade = false)
    {
        _tree = tree;
        Named = named;
        Path = canonical;
        Handle = handle;
        Location = location;
        KernelMade = kernelMade;
    }

    /// <summary>Releases the handle.</summary>
    public void Dispose()
    {
        if (Handle >= 0) _tree.CloseDirectoryCore(Handle);
        Handle = -1;
    }

    private string Full(string name) => FileTree.Join(Named, name);

    /// <summary>As <see cref="FileTree.ReadText"/> of <c>Named/name</c>.</summary>
    /// <exception cref="InputException">Longer than <paramref name="maxBytes"/>, or a link escaping the root.</exception>
    /// <exception cref="FileReadException">It exists but cannot be read.</exception>
    public string? ReadText(string name, int maxBytes = SourceLimits.MaxAttributeBytes)
    {
        Span<char> chars = stackalloc char[SmallBytes];
        return ReadSmall(name, maxBytes, chars, out int length) switch
        {
            Small.Read => chars[..length].ToString(),
            Small.Absent => null,
            _ => _tree.ReadText(Full(name), maxBytes),
        };
    }

    /// <summary>
    /// A hex attribute (<c>0x8086</c>) as <see cref="FileTree.ReadText"/> then <see cref="HexText.TryParse"/> of its
    /// trimmed text: null when absent or not hex.
    /// </summary>
    /// <exception cref="InputException">Longer than the attribute cap, or a link escaping the root.</exception>
    /// <exception cref="FileReadException">It exists but cannot be read.</exception>
    public ulong? ReadHex(string name)
    {
        Span<char> chars = stackalloc char[SmallBytes];
        switch (ReadSmall(name, SourceLimits.MaxAttributeBytes, chars, out int length))
        {
            case Small.Read:
                return HexText.TryParse(chars[..length].Trim(), out var v) ? v : null;
            case Small.Absent:
                return null;
            default:
                return _tree.ReadText(Full(name)) is { } t && HexText.TryParse(t.AsSpan().Trim(), out var w) ? w : null;
        }
    }

    /// <summary>
    /// As <see cref="FileTree.ReadBytes"/> of <c>Named/name</c> with a cap of <c>dest.Length - 1</c> bytes, into
    /// <paramref name="dest"/>: the number of bytes read (<c>dest.Length</c> for a file longer than the cap, whose first
    /// bytes fill it), or -1 when it does not exist. Nothing is allocated for a file read relative to the directory.
    /// </summary>
    /// <exception cref="InputException">A link escaping the root.</exception>
    /// <exception cref="FileReadException">It exists but cannot be read.</exception>
    public int ReadBytes(string name, Span<byte> dest)
    {
        switch (_tree.ReadSmallAtCore(this, name, dest, out int n))
        {
            case FileNodeKind.File:
                return n;
            case FileNodeKind.Missing or FileNodeKind.Directory:
                return -1;
            default:
                if (_tree.ReadBytes(Full(name), dest.Length - 1) is not { } bytes) return -1;
                int k = Math.Min(bytes.Length, dest.Length);
                bytes.AsSpan(0, k).CopyTo(dest);
                return k;
        }
    }

    /// <summary>
    /// The ids of the directory's <c>uevent</c> file (<see cref="PciUevent.TryParse"/>): null when it is absent or does
    /// not state all of them as the kernel prints them.
    /// </summary>
    /// <exception cref="InputException">Longer than the attribute cap, or a link escaping the root.</exception>
    /// <exception cref="FileReadException">It exists but cannot be read.</exception>
    public PciUevent? ReadPciUevent()
    {
        Span<char> chars = stackalloc char[SmallBytes];
        switch (ReadSmall(PciUevent.FileName, SourceLimits.MaxAttributeBytes, chars, out int length))
        {
            case Small.Read:
                return PciUevent.TryParse(chars[..length], out var ids) ? ids : null;
            case Small.Absent:
                return null;
            default:
                return _tree.ReadText(Full(PciUevent.FileName)) is { } t && PciUevent.TryParse(t, out var w) ? w : null;
        }
    }

    private enum Small { Read, Absent, General }

    /// <summary>
    /// Reads a short file into <paramref name="chars"/> as <see cref="FileTree.ReadText"/> decodes and trims it (the
    /// text is the first <paramref name="length"/> chars);
    /// <see cref="Small.General"/> when it must be read by path (a symlink, or as long as the stack buffer).
    /// </summary>
    private Small ReadSmall(string name, int maxBytes, Span<char> chars, out int length)
    {
        length = 0;
        Span<byte> bytes = stackalloc byte[SmallBytes];
        switch (_tree.ReadSmallAtCore(this, name, bytes, out int n))
        {
            case FileNodeKind.File when n < bytes.Length:
                if (n > maxBytes)
                    throw InputException.At(_tree.Origin, $"file is longer than the {maxBytes}-byte cap for this attribute", device: Full(name));
                // The same text as Encoding.UTF8.GetString (invalid bytes become U+FFFD), on the stack.
                int c = Encoding.UTF8.GetChars(bytes[..n], chars);
                length = ((ReadOnlySpan<char>)chars[..c]).TrimEnd("\n\r \0").Length;
                return Small.Read;
            case FileNodeKind.Missing or FileNodeKind.Directory:
                return Small.Absent;
            default:
                return Small.General;
        }
    }

    /// <summary>As <see cref="FileTree.List"/> of <c>Named/name</c>: the names in that directory, or null.</summary>
    /// <exception cref="InputException">A link on the way escapes the root, or more entries than the cap.</exception>
    /// <exception cref="FileReadException">It exists but cannot be listed: never read as empty.</exception>
    public IReadOnlyList<string>? List(string name) => _tree.ListAtCore(this, name);

    /// <summary>As <see cref="FileTree.ReadLinkName"/> of <c>Named/name</c>: the last component of a link's target, or null.</summary>
    /// <exception cref="FileReadException">Permission denied or an I/O error.</exception>
    public string? ReadLinkName(string name)
    {
        Span<char> chars = stackalloc char[LinkBytes];
        return LinkName(name, chars, out var last) ? last.ToString() : null;
    }

    /// <summary>
    /// The last component of a link's target read as a decimal number (<c>iommu_group -> ../../kernel/iommu_groups/12</c>
    /// gives 12), as <c>int.TryParse(ReadLinkName(name), NumberStyles.None)</c>: null when not a link or not a number.
    /// </summary>
    /// <exception cref="FileReadException">Permission denied or an I/O error.</exception>
    public int? ReadLinkNumber(string name)
    {
        Span<char> chars = stackalloc char[LinkBytes];
        return LinkName(name, chars, out var last) && int.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : null;
    }

    private bool LinkName(string name, Span<char> chars, out ReadOnlySpan<char> last)
    {
        last = default;
        Span<byte> bytes = stackalloc byte[LinkBytes];
        int n = _tree.ReadLinkAtCore(this, name, bytes);
        if (n < 0) return false;
        var t = chars[..Encoding.UTF8.GetChars(bytes[..n], chars)].TrimEnd('/');
        int s = t.LastIndexOf('/');
        last = s < 0 ? t : t[(s + 1)..];
        return true;
    }
}
