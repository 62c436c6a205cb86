using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace IommuKit.Sources;

/// <summary>
/// Writes sysfs attributes (a group's <c>type</c>, a driver's <c>bind</c>/<c>unbind</c>) under a root directory that
/// plays <c>/</c> (the live host, or a directory root given with <c>--source</c>), confined to that root: a path is
/// resolved exactly as <see cref="DirectoryFileTree"/> resolves it for reading (symlinks followed component by
/// component inside the root, an absolute link read from the root, a <c>..</c> above the root refused), so a write
/// can never land outside the root, whatever links the tree holds. Only an existing regular file is written (sysfs
/// attributes exist before anyone writes them; a missing one is created only when its directory resolves inside the
/// root, which a live sysfs refuses by itself), and a FIFO or device is refused without blocking.
/// </summary>
/// <remarks>
/// The path is resolved afresh for every call (an unbind changes the tree's links), and the final component is
/// opened with <c>O_NOFOLLOW</c>, so a link swapped in after the resolution is refused rather than followed.
/// </remarks>
public sealed partial class SysfsWriter
{
    private readonly string _root;

    /// <param name="root">The directory that plays <c>/</c>.</param>
    public SysfsWriter(string root)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        _root = Path.GetFullPath(root);
    }

    /// <summary>The root, as a full path.</summary>
    public string Root => _root;

    /// <summary>How the host would name <paramref name="relativePath"/>: <c>/sys/kernel/iommu_groups/7/type</c>.</summary>
    public static string Display(string relativePath) => "/" + relativePath.TrimStart('/');

    /// <summary>
    /// Writes <paramref name="text"/> to the regular file <paramref name="relativePath"/> resolves to inside the root, as
    /// one <c>write(2)</c> (a sysfs store reads one buffer).
    /// </summary>
    /// <exception cref="IOException">The path does not resolve to an existing regular file inside the root (the message
    /// says why), or the write fails (the kernel's errno, e.g. EBUSY).</exception>
    public void Write(string relativePath, string text)
    {
        string full = Resolve(relativePath, out bool create);
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(text);
        if (!OperatingSystem.IsLinux())
        {
            using var plain = new FileStream(full, create ? FileMode.CreateNew : FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1);
            plain.SetLength(0);
            plain.Write(bytes);
            return;
        }
        // O_TRUNC as echo's '>' does (a no-op on sysfs, needed on a directory root of plain files); a new file only with
        // O_EXCL, so nothing that appeared meanwhile (a link) is followed.
        int fd = create
            ? open(full, OWrOnly | OCreat | OExcl | ONoFollow | ONonBlock | ONoCtty | OCloExec, Convert.ToInt32("644", 8))
            : open(full, OWrOnly | OTrunc | ONoFollow | ONonBlock | ONoCtty | OCloExec, 0);
        if (fd < 0)
            throw new IOException($"{Display(relativePath)}: cannot open for writing (errno {Marshal.GetLastPInvokeError()})");
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (RegularFile.NonRegularKind("/proc/self/fd/" + fd) is { } kind)
            throw new IOException($"{Display(relativePath)}: is {kind}, not a regular file; refusing to write");
        using var fs = new FileStream(handle, FileAccess.Write, 1);
        fs.Write(bytes);
        fs.Flush();
    }

    /// <summary>
    /// Reads the small attribute <paramref name="relativePath"/> resolves to inside the root, at most
    /// <paramref name="maxBytes"/>, trailing newline trimmed; null when it does not exist.
    /// </summary>
    /// <exception cref="InputException">Unreadable (<see cref="FileReadException"/>: a FIFO, permission denied), longer than the cap, or a link leaving the root.</exception>
    public string? ReadCapped(string relativePath, int maxBytes = SourceLimits.MaxAttributeBytes) =>
        Tree().ReadText(relativePath, maxBytes);

    /// <summary>The root is the live host's <c>/</c> (writes take effect in the kernel; <c>driver</c> links follow binds).</summary>
    public bool Live => _root == "/";

    /// <summary>
    /// The attribute's text (as <see cref="ReadCapped"/>), or null when it is missing or cannot be read: for callers that
    /// verify a write and treat "cannot say" like "not as expected".
    /// </summary>
    public string? Read(string relativePath)
    {
        try { return ReadCapped(relativePath); }
        catch (InputException) { return null; }
    }

    /// <summary>
    /// The driver <paramref name="device"/> is bound to: the last component of its <c>driver</c> link, else the driver
    /// directory under <c>sys/bus/pci/drivers</c> that lists it (how an extracted snapshot records binding); null for none.
    /// Links are resolved inside the root, as for reads.
    /// </summary>
    public string? DriverOf(IommuKit.Pci.PciAddress device)
    {
        try
        {
            var tree = Tree();
            if (tree.ReadLinkName($"sys/bus/pci/devices/{device}/driver") is { } name) return name;
            foreach (var d in tree.List("sys/bus/pci/drivers") ?? [])
                if (tree.ReadLink($"sys/bus/pci/drivers/{d}/{device}") is not null) return d;
            return null;
        }
        catch (InputException)
        {
            return null;
        }
    }

    private DirectoryFileTree Tree() => new(_root);

    /// <summary>
    /// The full path <paramref name="relativePath"/> names inside the root, resolved as the reader resolves it;
    /// <paramref name="create"/> when the last component does not exist yet (its directory does, inside the root).
    /// </summary>
    private string Resolve(string relativePath, out bool create)
    {
        string rel = relativePath.TrimStart('/');
        create = false;
        string canonical;
        try
        {
            var tree = Tree();
            int slash = rel.LastIndexOf('/');
            string? dir = slash < 0 ? "" : tree.Resolve(rel[..slash]);
            if (dir is null || tree.Lstat(dir) != FileNodeKind.Directory && dir.Length > 0)
                throw new IOException($"{Display(relativePath)}: its directory does not exist inside the root; refusing to write");
            canonical = FileTree.Join(dir, rel[(slash + 1)..]);
            switch (tree.Lstat(canonical))
            {
                case FileNodeKind.Symlink:
                    // Followed as a read follows it (inside the root); never created through.
                    canonical = tree.Resolve(canonical)
                        ?? throw new IOException($"{Display(relativePath)}: a link that leads nowhere inside the root; refusing to write");
                    if (tree.Lstat(canonical) != FileNodeKind.File)
                        throw new IOException($"{Display(relativePath)}: a link to something that is not a file; refusing to write");
                    break;
                case FileNodeKind.Missing:
                    // A directory root standing in for sysfs may lack bind/unbind files; the live sysfs refuses creation itself.
                    create = true;
                    break;
                case FileNodeKind.Directory:
                    throw new IOException($"{Display(relativePath)}: is a directory, not a file; refusing to write");
            }
        }
        catch (InputException ex)
        {
            // A link that climbs above the root or loops: the same refusal a read gives, as a failed write.
            throw new IOException($"{Display(relativePath)}: refusing to write: {ex.Message}");
        }
        string full = Path.GetFullPath(Path.Combine(_root, canonical));
        // Belt and braces: the resolution above never leaves the root; check the final path says so too.
        string rootWithSlash = _root.EndsWith('/') ? _root : _root + "/";
        if (!full.StartsWith(rootWithSlash, StringComparison.Ordinal))
            throw new IOException($"{Display(relativePath)}: resolves outside the root {_root}; refusing to write");
        return full;
    }

    // asm-generic/fcntl.h values, shared by x86-64 and arm64 except O_NOFOLLOW (arch/arm64/include/uapi/asm/fcntl.h).
    private const int OWrOnly = 1, OCreat = 0x40, OExcl = 0x80, OTrunc = 0x200, ONoCtty = 0x100, ONonBlock = 0x800, OCloExec = 0x80000;
    private static readonly int ONoFollow = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 0x8000 : 0x20000;

    /// <summary>glibc by its soname (<see cref="RegularFile.LibC"/>).</summary>
    private const string LibC = RegularFile.LibC;

    [LibraryImport(LibC, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags, int mode);
}
