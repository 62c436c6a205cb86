namespace IommuKit.Sources;

/// <summary>What a name in a <see cref="FileTree"/> is, without following links (lstat).</summary>
internal enum FileNodeKind
{
    /// <summary>No such name.</summary>
    Missing,
    /// <summary>A file (anything that is not a directory or symlink).</summary>
    File,
    /// <summary>A directory.</summary>
    Directory,
    /// <summary>A symbolic link.</summary>
    Symlink,
}

/// <summary>
/// A read-only tree of files addressed by '/'-separated paths relative to its root (<c>sys/bus/pci/devices</c>), with
/// symlinks resolved component by component <em>inside</em> the tree: a directory on disk
/// (<see cref="DirectoryFileTree"/>) and a tarball held in memory (<see cref="TarFileTree"/>) read through the same code.
/// </summary>
/// <remarks>
/// Resolution follows the kernel's path walk: each component is looked up in the directory reached so far, a symlink is
/// replaced by its target (relative to the link's directory) and walked again, at most <see cref="MaxLinkHops"/> times
/// per lookup (the kernel's <c>MAXSYMLINKS</c> is 40). A <c>..</c> that would climb above the root is an error, not a
/// clamp, so a hostile tree can never name a file outside itself.
/// </remarks>
internal abstract class FileTree
{
    /// <summary>Symlinks followed in one lookup before it is called a loop (the kernel's <c>MAXSYMLINKS</c>).</summary>
    public const int MaxLinkHops = 40;

    /// <summary>Longest path accepted, in characters (names inside the tree and link targets alike).</summary>
    public const int MaxPathLength = 1024;

    /// <summary>Where the tree came from, for messages: a path or "live host".</summary>
    public string Origin { get; }

    /// <summary>Starts a tree named <paramref name="origin"/> in messages.</summary>
    protected FileTree(string origin) => Origin = origin;

    /// <summary>What <paramref name="canonicalPath"/> (no symlink in any component but maybe the last) is.</summary>
    protected abstract FileNodeKind LstatCore(string canonicalPath);

    /// <summary>
    /// The raw target text of the symlink at <paramref name="canonicalPath"/>; null when it is no longer a link (it went
    /// away after <see cref="LstatCore"/> said it was one): the walk then reads the name as missing.
    /// </summary>
    protected abstract string? ReadLinkCore(string canonicalPath);

    /// <summary>The names in the directory at <paramref name="canonicalPath"/>, sorted ordinally.</summary>
    /// <exception cref="FileReadException">The directory exists but cannot be listed (permission denied, I/O error).</exception>
    protected abstract IReadOnlyList<string> ListCore(string canonicalPath);

    /// <summary>Reads at most <paramref name="maxBytes"/> + 1 bytes of the file (so callers can tell "too long").</summary>
    /// <exception cref="FileReadException">The file exists but cannot be read (not a regular file, permission denied, I/O error).</exception>
    protected abstract byte[] ReadCore(string canonicalPath, int maxBytes);

    /// <summary>
    /// Fast path for <see cref="Resolve"/>: true when <paramref name="path"/> is known to be canonical already (it exists
    /// and no component is a symlink), so the component walk can be skipped. The default knows nothing.
    /// </summary>
    protected virtual bool IsCanonical(string path) => false;

    /// <summary>
    /// True when absolute symlink targets are read as relative to the tree's root (a directory root: chroot-like);
    /// false when they are bad input (a tarball: the oracle layout has relative links only).
    /// </summary>
    protected virtual bool AbsoluteLinksFromRoot => false;

    /// <summary>Lstat of a path whose parent components are resolved first.</summary>
    public FileNodeKind Lstat(string path)
    {
        int slash = path.LastIndexOf('/');
        if (slash < 0) return LstatCore(path);
        string? dir = Resolve(path[..slash]);
        return dir is null ? FileNodeKind.Missing : LstatCore(Join(dir, path[(slash + 1)..]));
    }

    /// <summary>
    /// The canonical path of <paramref name="path"/> with every symlink resolved, or null when some component does not
    /// exist. "" is the root.
    /// </summary>
    /// <exception cref="InputException">A link escapes the root, is absolute (tarballs), or loops.</exception>
    public string? Resolve(string path)
    {
        if (IsCanonical(path)) return path;
        // A load resolves the same device directories over and over (config, driver, iommu_group... of each device):
        // the result of a path is remembered for the life of the tree, which is read-only.
        if (_resolved.TryGetValue(path, out var known)) return known;
        int hops = 0;
        string? result = ResolveFrom("", path, ref hops, path);
        if (_resolved.Count < MaxRemembered) _resolved[path] = result;
        return result;
    }

    private const int MaxRemembered = 1 << 20;
    private readonly Dictionary<string, string?> _resolved = new(StringComparer.Ordinal);

    private string? ResolveFrom(string start, string path, ref int hops, string original)
    {
        if (path.Length > MaxPathLength)
            throw InputException.At(Origin, $"path of {path.Length} characters is longer than the {MaxPathLength}-character cap", device: Trunc(original));
        string current = start;
        foreach (var part in path.Split('/'))
        {
            if (part.Length == 0 || part == ".") continue;
            if (part == "..")
            {
                if (current.Length == 0)
                    throw InputException.At(Origin, $"'{Trunc(original)}' climbs above the root with '..'");
                int s = current.LastIndexOf('/');
                current = s < 0 ? "" : current[..s];
                continue;
            }
            string next = Join(current, part);
            switch (LstatCore(next))
            {
                case FileNodeKind.Missing:
                    return null;
                case FileNodeKind.Symlink:
                    if (++hops > MaxLinkHops)
                        throw InputException.At(Origin, $"more than {MaxLinkHops} symlinks followed resolving '{Trunc(original)}' (a link loop)");
                    if (ReadLinkCore(next) is not { } target) return null;
                    if (target.Length == 0)
                        throw InputException.At(Origin, $"symlink '{next}' has an empty target");
                    if (target[0] == '/')
                    {
                        if (!AbsoluteLinksFromRoot)
                            throw InputException.At(Origin, $"symlink '{next}' has the absolute target '{Trunc(target)}' (only relative links are accepted)");
                        current = ResolveFrom("", target, ref hops, original) ?? "\0";
                    }
                    else
                    {
                        current = ResolveFrom(current, target, ref hops, original) ?? "\0";
                    }
                    if (current == "\0") return null;
                    break;
                default:
                    current = next;
                    break;
            }
        }
        return current;
    }

    /// <summary>True when <paramref name="path"/> resolves to a directory.</summary>
    public bool IsDirectory(string path) => Resolve(path) is { } p && LstatCore(p) == FileNodeKind.Directory;

    /// <summary>The names in a directory (sorted ordinally), or null when it does not exist or is not a directory.</summary>
    /// <exception cref="FileReadException">It exists but cannot be listed: never read as empty.</exception>
    public IReadOnlyList<string>? List(string path)
    {
        string? p = Resolve(path);
        if (p is null || LstatCore(p) != FileNodeKind.Directory) return null;
        return ListCore(p);
    }

    /// <summary>
    /// Reads a file (links followed). Null when it does not exist. Longer than <paramref name="maxBytes"/>: the first
    /// <paramref name="maxBytes"/> + 1 bytes are returned, so the caller can report the excess.
    /// </summary>
    /// <exception cref="FileReadException">It exists but cannot be read (a FIFO, a socket, a device, permission denied, EIO): never read as empty.</exception>
    public byte[]? ReadBytes(string path, int maxBytes)
    {
        // Fast path: resolve the directory (remembered per tree), then let the tree read the last name without
        // following it, in one step where it can (a directory on disk: one open with O_NOFOLLOW instead of an lstat,
        // then the open). Only a last name that is a symlink takes the full walk below, which resolves it in the tree.
        int slash = path.LastIndexOf('/');
        if (path.Length <= MaxPathLength && slash < path.Length - 1 && !IsDotName(path.AsSpan(slash + 1)))
        {
            string? dir;
            // A hostile link on the way is reported by the full walk below, naming the whole path as before.
            try { dir = slash < 0 ? "" : Resolve(path[..slash]); }
            catch (InputException) { dir = "\0"; }
            if (dir is null) return null;
            if (dir != "\0")
            {
                switch (ReadNoFollowCore(Join(dir, path[(slash + 1)..]), maxBytes, out var bytes))
                {
                    case FileNodeKind.File: return bytes;
                    case FileNodeKind.Missing or FileNodeKind.Directory: return null;
                }
            }
        }
        string? p = Resolve(path);
        if (p is null || LstatCore(p) != FileNodeKind.File) return null;
        return ReadCore(p, maxBytes);
    }

    internal static bool IsDotName(ReadOnlySpan<char> name) => name is "." or "..";

    /// <summary>
    /// Reads <paramref name="dirCanonicalPath"/> (its directory canonical, its last name not followed) when it is a
    /// file: returns <see cref="FileNodeKind.File"/> with the bytes (as <see cref="ReadCore"/>), or what the name is
    /// otherwise (<see cref="FileNodeKind.Symlink"/>: not read; the caller resolves the link). The default is
    /// <see cref="LstatCore"/> then <see cref="ReadCore"/>.
    /// </summary>
    /// <exception cref="FileReadException">A file that cannot be read.</exception>
    protected virtual FileNodeKind ReadNoFollowCore(string dirCanonicalPath, int maxBytes, out byte[]? bytes)
    {
        bytes = null;
        var kind = LstatCore(dirCanonicalPath);
        if (kind == FileNodeKind.File) bytes = ReadCore(dirCanonicalPath, maxBytes);
        return kind;
    }

    /// <summary>
    /// The raw target of <paramref name="dirCanonicalPath"/> (its directory canonical) when it is a symlink, else
    /// null. The default is <see cref="LstatCore"/> then <see cref="ReadLinkCore"/>.
    /// </summary>
    protected virtual string? ReadLinkOrNullCore(string dirCanonicalPath) =>
        LstatCore(dirCanonicalPath) == FileNodeKind.Symlink ? ReadLinkCore(dirCanonicalPath) : null;

    /// <summary>A small text attribute (sysfs <c>vendor</c>, <c>type</c>…), trailing newline trimmed; null when absent.</summary>
    /// <exception cref="InputException">Longer than <paramref name="maxBytes"/>.</exception>
    public string? ReadText(string path, int maxBytes = SourceLimits.MaxAttributeBytes)
    {
        var bytes = ReadBytes(path, maxBytes);
        if (bytes is null) return null;
        if (bytes.Length > maxBytes)
            throw InputException.At(Origin, $"file is longer than the {maxBytes}-byte cap for this attribute", device: path);
        return System.Text.Encoding.UTF8.GetString(bytes).TrimEnd('\n', '\r', ' ', '\0');
    }

    /// <summary>The raw target of the symlink at <paramref name="path"/> (parents resolved), or null when it is not a link.</summary>
    public string? ReadLink(string path)
    {
        int slash = path.LastIndexOf('/');
        string? dir = slash < 0 ? "" : Resolve(path[..slash]);
        if (dir is null) return null;
        return ReadLinkOrNullCore(Join(dir, path[(slash + 1)..]));
    }

    /// <summary>The last path component of a link's target (<c>driver -> ../../bus/pci/drivers/e1000e</c> gives <c>e1000e</c>).</summary>
    public string? ReadLinkName(string path)
    {
        string? t = ReadLink(path);
        if (t is null) return null;
        t = t.TrimEnd('/');
        int s = t.LastIndexOf('/');
        return s < 0 ? t : t[(s + 1)..];
    }

    /// <summary>
    /// Opens a file (links followed) for reads at offsets; null when it does not exist (or is a directory). The default
    /// reads it whole through <see cref="ReadBytes"/> (at most <paramref name="maxBytes"/> + 1 bytes) and serves the
    /// offsets from memory; a directory on disk reads only what is asked (<see cref="DirectoryFileTree"/>).
    /// </summary>
    /// <exception cref="FileReadException">It exists but cannot be read, as for <see cref="ReadBytes"/>.</exception>
    public virtual RandomAccessFile? OpenRandomAccess(string path, int maxBytes) =>
        ReadBytes(path, maxBytes) is { } bytes ? new MemoryRandomAccessFile(bytes) : null;

    /// <summary>
    /// True when <paramref name="path"/> is a directory of a live sysfs (the kernel makes its files as they are read,
    /// so reading less of them costs less); false for a tarball, an extracted snapshot, or when unknown.
    /// </summary>
    public virtual bool IsLiveSysfs(string path) => false;

    /// <summary>
    /// Opens the directory <paramref name="path"/> (links followed, as <see cref="Resolve"/>) to read several names in
    /// it (<see cref="TreeDirectory"/>: a device's attributes and links); null when it does not exist or is not a
    /// directory. Dispose it when done.
    /// </summary>
    /// <param name="path">The directory.</param>
    /// <param name="kernelMade">
    /// The caller found it on a live sysfs (<see cref="IsLiveSysfs"/>), where the kernel makes every name: its files are
    /// read without a type check (no FIFO, socket or device can be there). False where a snapshot or a hand-made tree
    /// could hold one.
    /// </param>
    /// <param name="namedCanonical">Messages and the general path name the directory by its canonical path, not by <paramref name="path"/>.</param>
    /// <exception cref="InputException">A link on the way escapes the root, or loops.</exception>
    public TreeDirectory? OpenDirectory(string path, bool kernelMade = false, bool namedCanonical = false)
    {
        // A name the walk has not met yet may be learnt by opening it as a directory (DirectoryFileTree: the open
        // that gives the handle also says it is a directory, one system call instead of a statx and an open).
        BeginDirectoryProbe();
        try
        {
            string? canonical = Resolve(path);
            if (canonical is null || LstatCore(canonical) != FileNodeKind.Directory) return null;
            int handle = OpenDirectoryCore(canonical, out string? location);
            return new TreeDirectory(this, namedCanonical ? canonical : path, canonical, handle, location, kernelMade);
        }
        finally { EndDirectoryProbe(); }
    }

    /// <summary>
    /// <see cref="OpenDirectory"/> is about to resolve a path whose last name it will open as a directory: until
    /// <see cref="EndDirectoryProbe"/>, <see cref="LstatCore"/> may learn a name's kind by that open and keep the
    /// handle for <see cref="OpenDirectoryCore"/>. The default does nothing.
    /// </summary>
    protected virtual void BeginDirectoryProbe() { }

    /// <summary>Ends <see cref="BeginDirectoryProbe"/>, releasing a handle <see cref="OpenDirectoryCore"/> did not take.</summary>
    protected virtual void EndDirectoryProbe() { }

    /// <summary>
    /// A handle on the directory at <paramref name="canonicalPath"/> that the <c>…AtCore</c> methods read names
    /// relative to, and how messages name it (<paramref name="location"/>); -1 (the default) when this tree reads by
    /// path: the <c>…AtCore</c> defaults then go through <see cref="ReadNoFollowCore"/> and
    /// <see cref="ReadLinkOrNullCore"/>.
    /// </summary>
    protected internal virtual int OpenDirectoryCore(string canonicalPath, out string? location)
    {
        location = null;
        return -1;
    }

    /// <summary>Releases a handle from <see cref="OpenDirectoryCore"/>.</summary>
    protected internal virtual void CloseDirectoryCore(int handle) { }

    /// <summary>
    /// <see cref="ReadNoFollowCore"/> of the name <paramref name="name"/> in an open directory, into
    /// <paramref name="dest"/>: a file of at least <c>dest.Length</c> bytes fills it (the caller then reads it by
    /// path), so nothing is allocated for a short attribute.
    /// </summary>
    /// <exception cref="FileReadException">A file that cannot be read.</exception>
    protected internal virtual FileNodeKind ReadSmallAtCore(TreeDirectory dir, string name, Span<byte> dest, out int length)
    {
        length = 0;
        var kind = ReadNoFollowCore(Join(dir.Path, name), dest.Length - 1, out var bytes);
        if (kind == FileNodeKind.File)
        {
            length = Math.Min(bytes!.Length, dest.Length);
            bytes.AsSpan(0, length).CopyTo(dest);
        }
        return kind;
    }

    /// <summary>
    /// <see cref="ReadLinkOrNullCore"/> of the name <paramref name="name"/> in an open directory, as UTF-8 into
    /// <paramref name="dest"/> (4096 bytes, PATH_MAX): its length, or -1 when it is not a link.
    /// </summary>
    protected internal virtual int ReadLinkAtCore(TreeDirectory dir, string name, Span<byte> dest)
    {
        string? target = ReadLinkOrNullCore(Join(dir.Path, name));
        if (target is null) return -1;
        int n = System.Text.Encoding.UTF8.GetByteCount(target);
        if (n > dest.Length) throw new FileReadException(Join(dir.Path, name), $"link target of {n} bytes is longer than {dest.Length}");
        return System.Text.Encoding.UTF8.GetBytes(target, dest);
    }

    /// <summary>
    /// <see cref="List"/> of the name <paramref name="name"/> in an open directory. The default lists it by path.
    /// </summary>
    /// <exception cref="FileReadException">It exists but cannot be listed.</exception>
    protected internal virtual IReadOnlyList<string>? ListAtCore(TreeDirectory dir, string name) => List(Join(dir.Path, name));

    internal static string Join(string dir, string name) => dir.Length == 0 ? name : dir + "/" + name;

    private static string Trunc(string s) => s.Length <= 120 ? s : s[..117] + "...";
}

/// <summary>A directory on disk as a <see cref="FileTree"/> (the live host at <c>/</c>, or an extracted snapshot).</summary>
internal sealed class DirectoryFileTree : FileTree
{
    private readonly string _root;

    /// <param name="root">The directory that plays <c>/</c>.</param>
    /// <param name="origin">Name for messages; defaults to the root path.</param>
    public DirectoryFileTree(string root, string? origin = null) : base(origin ?? root)
    {
        _root = Path.GetFullPath(root);
    }

    // The root stands in for "/": an absolute link is read relative to it, which is what the kernel would do in a
    // chroot there, and can never reach outside it.
    /// <summary>True: an absolute link target is read relative to the root directory, chroot-like.</summary>
    protected override bool AbsoluteLinksFromRoot => true;

    private string Full(string canonicalPath) => canonicalPath.Length == 0 ? _root : Path.Combine(_root, canonicalPath);

    /// <summary>
    /// Test seam for faults a root cannot simulate (tests run as root, where <c>chmod 000</c> hides nothing): given a
    /// canonical path about to be read or listed, the reason it fails (<c>permission denied</c>), or null to go on.
    /// </summary>
    internal Func<string, string?>? Faults { get; init; }

    private void CheckFault(string canonicalPath)
    {
        if (Faults?.Invoke(canonicalPath) is { } reason) throw new FileReadException(Display(canonicalPath), reason);
    }

    /// <summary>How messages name a file of this tree: its path on disk.</summary>
    private string Display(string canonicalPath) => Full(canonicalPath);

    // One lstat per name for the life of the tree: a load walks the same directories many times.
    private readonly Dictionary<string, FileNodeKind> _kinds = new(StringComparer.Ordinal);

    // Between BeginDirectoryProbe and EndDirectoryProbe (OpenDirectory): a name not met yet is opened as a directory
    // (O_PATH | O_DIRECTORY | O_NOFOLLOW) instead of stat'ed; when that works it is a directory and the descriptor
    // waits here for OpenDirectoryCore, so a device directory reached through its sys/bus/pci/devices link costs one
    // open, not a statx and an open. When it fails (a link, a file, nothing) the statx below says what it is.
    private bool _probing;
    private int _probeFd = -1;
    private string? _probePath;

    /// <inheritdoc/>
    protected override void BeginDirectoryProbe() => _probing = OperatingSystem.IsLinux();

    /// <inheritdoc/>
    protected override void EndDirectoryProbe()
    {
        _probing = false;
        ReleaseProbe();
    }

    private void ReleaseProbe()
    {
        if (_probeFd >= 0) RegularFile.CloseDescriptor(_probeFd);
        _probeFd = -1;
        _probePath = null;
    }

    /// <inheritdoc/>
    protected override FileNodeKind LstatCore(string canonicalPath)
    {
        if (_kinds.TryGetValue(canonicalPath, out var known)) return known;
        FileNodeKind kind;
        if (_probing && RegularFile.OpenDirectoryPath(Full(canonicalPath)) is var fd and >= 0)
        {
            ReleaseProbe();
            (_probeFd, _probePath) = (fd, canonicalPath);
            kind = FileNodeKind.Directory;
        }
        else if (OperatingSystem.IsLinux()) kind = RegularFile.LstatKind(Full(canonicalPath));
        else try
        {
            // FileSystemInfo.Attributes is an lstat on Unix: a symlink shows ReparsePoint, a missing name -1. A FIFO,
            // socket or device shows as a file here; reading it is refused by RegularFile.
            var attrs = new FileInfo(Full(canonicalPath)).Attributes;
            kind = (int)attrs == -1 ? FileNodeKind.Missing
                : (attrs & FileAttributes.ReparsePoint) != 0 ? FileNodeKind.Symlink
                : (attrs & FileAttributes.Directory) != 0 ? FileNodeKind.Directory
                : FileNodeKind.File;
        }
        catch (IOException) { kind = FileNodeKind.Missing; }
        catch (UnauthorizedAccessException) { kind = FileNodeKind.Missing; }
        if (_kinds.Count < 1 << 20) _kinds[canonicalPath] = kind;
        return kind;
    }

    /// <inheritdoc/>
    protected override string? ReadLinkCore(string canonicalPath)
    {
        // Null: no longer a link (removed since its kind was learned, a device unplugged meanwhile): read as missing.
        if (OperatingSystem.IsLinux()) return RegularFile.ReadLinkOrNull(Full(canonicalPath), Display(canonicalPath));
        try { return new FileInfo(Full(canonicalPath)).LinkTarget ?? ""; }
        catch (UnauthorizedAccessException) { throw new FileReadException(Display(canonicalPath), "permission denied"); }
        catch (IOException ex) { throw new FileReadException(Display(canonicalPath), $"cannot read the link: {ex.Message}"); }
    }

    /// <inheritdoc/>
    protected override string? ReadLinkOrNullCore(string dirCanonicalPath)
    {
        // One readlink: EINVAL says "not a link" as well as an lstat would.
        if (!OperatingSystem.IsLinux() || _kinds.ContainsKey(dirCanonicalPath)) return base.ReadLinkOrNullCore(dirCanonicalPath);
        return RegularFile.ReadLinkOrNull(Full(dirCanonicalPath), Display(dirCanonicalPath));
    }

    /// <inheritdoc/>
    protected override FileNodeKind ReadNoFollowCore(string dirCanonicalPath, int maxBytes, out byte[]? bytes)
    {
        if (!OperatingSystem.IsLinux() || _kinds.ContainsKey(dirCanonicalPath))
            return base.ReadNoFollowCore(dirCanonicalPath, maxBytes, out bytes);
        // One open with O_NOFOLLOW: a FIFO, socket or device is refused on the descriptor (never read as empty).
        return RegularFile.TryReadNoFollow(Full(dirCanonicalPath), Display(dirCanonicalPath), maxBytes,
                Faults is null ? null : () => CheckFault(dirCanonicalPath), out bytes) switch
        {
            RegularFile.NoFollowOutcome.Read => FileNodeKind.File,
            RegularFile.NoFollowOutcome.Directory => FileNodeKind.Directory,
            RegularFile.NoFollowOutcome.Symlink => FileNodeKind.Symlink,
            _ => FileNodeKind.Missing,
        };
    }

    /// <inheritdoc/>
    protected internal override int OpenDirectoryCore(string canonicalPath, out string? location)
    {
        location = Full(canonicalPath);
        // The walk's own open of the last name, when it learnt the name that way (LstatCore).
        if (_probeFd >= 0 && _probePath == canonicalPath)
        {
            int fd = _probeFd;
            _probeFd = -1;
            _probePath = null;
            return fd;
        }
        // After the confinement walk resolved it, the directory is opened once (O_PATH, its last name not followed)
        // and its names are opened relative to it: a one-component walk in the kernel instead of the whole path.
        return OperatingSystem.IsLinux() ? RegularFile.OpenDirectoryPath(location) : -1;
    }

    /// <inheritdoc/>
    protected internal override void CloseDirectoryCore(int handle) => RegularFile.CloseDescriptor(handle);

    /// <inheritdoc/>
    protected internal override FileNodeKind ReadSmallAtCore(TreeDirectory dir, string name, Span<byte> dest, out int length)
    {
        if (dir.Handle < 0) return base.ReadSmallAtCore(dir, name, dest, out length);
        return RegularFile.TryReadNoFollowAt(dir.Handle, name, dir.Location!, dest,
                Faults is null ? null : () => CheckFault(Join(dir.Path, name)), out length, dir.KernelMade) switch
        {
            RegularFile.NoFollowOutcome.Read => FileNodeKind.File,
            RegularFile.NoFollowOutcome.Directory => FileNodeKind.Directory,
            RegularFile.NoFollowOutcome.Symlink => FileNodeKind.Symlink,
            _ => FileNodeKind.Missing,
        };
    }

    /// <inheritdoc/>
    protected internal override int ReadLinkAtCore(TreeDirectory dir, string name, Span<byte> dest) =>
        dir.Handle < 0 ? base.ReadLinkAtCore(dir, name, dest) : RegularFile.ReadLinkAt(dir.Handle, name, dir.Location!, dest);

    /// <inheritdoc/>
    protected override IReadOnlyList<string> ListCore(string canonicalPath)
    {
        CheckFault(canonicalPath);
        if (OperatingSystem.IsLinux())
        {
            var kinds = new List<FileNodeKind?>();
            var list = RegularFile.ListDirectory(Full(canonicalPath), Display(canonicalPath), SourceLimits.MaxEntries, kinds);
            return Listed(canonicalPath, list ?? [], kinds); // none: removed since the lstat (a device unplugged meanwhile)
        }
        try
        {
            var names = new List<string>();
            foreach (var e in Directory.EnumerateFileSystemEntries(Full(canonicalPath)))
            {
                names.Add(Path.GetFileName(e));
                if (names.Count > SourceLimits.MaxEntries)
                    throw InputException.At(Origin, $"more than {SourceLimits.MaxEntries} entries in one directory", device: canonicalPath);
            }
            names.Sort(StringComparer.Ordinal);
            return names;
        }
        catch (DirectoryNotFoundException) { return []; } // removed since the lstat (a device unplugged meanwhile)
        catch (IOException ex) { throw new FileReadException(Display(canonicalPath), $"cannot list: {ex.Message}"); }
        catch (UnauthorizedAccessException) { throw new FileReadException(Display(canonicalPath), "permission denied"); }
    }

    /// <summary>
    /// A listing as <see cref="FileTree.List"/> gives it (capped, sorted), each name's kind by its <c>d_type</c>
    /// remembered as an lstat of it would be: walking through the names (every device link in
    /// <c>sys/bus/pci/devices</c>, every group) then costs no statx each.
    /// </summary>
    private List<string> Listed(string canonicalPath, List<string> list, List<FileNodeKind?> kinds)
    {
        if (list.Count > SourceLimits.MaxEntries)
            throw InputException.At(Origin, $"more than {SourceLimits.MaxEntries} entries in one directory", device: canonicalPath);
        for (int i = 0; i < list.Count && i < kinds.Count && _kinds.Count < 1 << 20; i++)
            if (kinds[i] is { } kind) _kinds.TryAdd(Join(canonicalPath, list[i]), kind);
        list.Sort(StringComparer.Ordinal);
        return list;
    }

    /// <inheritdoc/>
    /// <remarks>Linux: opened relative to the directory's descriptor with <c>O_NOFOLLOW</c> (a link takes the tree's walk).</remarks>
    protected internal override IReadOnlyList<string>? ListAtCore(TreeDirectory dir, string name)
    {
        if (dir.Handle < 0 || IsDotName(name) || name.Contains('/')) return base.ListAtCore(dir, name);
        string canonical = Join(dir.Path, name);
        CheckFault(canonical);
        var kinds = new List<FileNodeKind?>();
        var list = RegularFile.ListDirectoryAt(dir.Handle, dir.Location!, name, SourceLimits.MaxEntries, kinds, out bool symlink);
        if (symlink) return base.ListAtCore(dir, name);
        return list is null ? null : Listed(canonical, list, kinds);
    }

    /// <inheritdoc/>
    protected override byte[] ReadCore(string canonicalPath, int maxBytes)
    {
        // Only a regular file is opened (a FIFO would block the open forever, /dev/zero never ends), and never more than
        // the cap + 1 bytes are read: sysfs reports 4096 as the size of every attribute and proc files 0.
        CheckFault(canonicalPath);
        try
        {
            return RegularFile.ReadAllCapped(Full(canonicalPath), Display(canonicalPath), maxBytes, allowOver: true);
        }
        catch (FileNotFoundException)
        {
            throw new FileReadException(Display(canonicalPath), "disappeared while being read");
        }
    }
    /// <inheritdoc/>
    public override bool IsLiveSysfs(string path) =>
        OperatingSystem.IsLinux() && Resolve(path) is { } p && RegularFile.IsOnSysfs(Full(p));

    /// <inheritdoc/>
    /// <remarks>
    /// Linux: the directory is resolved inside the tree and the last name opened with <c>O_NOFOLLOW</c> (a link there
    /// is resolved inside the tree and its canonical path opened), so the same root confinement holds as for
    /// <see cref="FileTree.ReadBytes"/>; a FIFO, socket or device is refused on the descriptor.
    /// </remarks>
    public override RandomAccessFile? OpenRandomAccess(string path, int maxBytes)
    {
        int slash = path.LastIndexOf('/');
        string name = path[(slash + 1)..];
        if (!OperatingSystem.IsLinux() || path.Length > MaxPathLength || name.Length == 0 || name is "." or "..")
            return base.OpenRandomAccess(path, maxBytes);
        string? dir = slash < 0 ? "" : Resolve(path[..slash]);
        if (dir is null) return null;
        string canonical = Join(dir, name);
        for (int attempt = 0; attempt < 2; attempt++)
        {
            if (_kinds.TryGetValue(canonical, out var kind) && kind != FileNodeKind.File && kind != FileNodeKind.Symlink) return null;
            switch (RegularFile.TryOpenNoFollow(Full(canonical), Display(canonical), Faults is null ? null : () => CheckFault(canonical), out int fd, out long size))
            {
                case RegularFile.NoFollowOutcome.Read:
                    return new DescriptorRandomAccessFile(fd, size, Display(canonical));
                case RegularFile.NoFollowOutcome.Symlink when attempt == 0:
                    // The last name is a link: resolve it inside the tree, then open what it leads to (no link left).
                    if (Resolve(path) is not { } target) return null;
                    canonical = target;
                    continue;
                default:
                    return null;
            }
        }
        return null;
    }
}
