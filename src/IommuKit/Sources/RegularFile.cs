using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace IommuKit.Sources;

/// <summary>
/// The one way input files are opened: only a regular file is read, never a FIFO, socket or device, and never without
/// a cap. A FIFO given as <c>config</c>, <c>--pci-ids</c> or <c>--source</c> would block <c>open(2)</c> forever
/// waiting for a writer, and <c>/dev/zero</c> never ends; both are bad input named by their path.
/// </summary>
/// <remarks>
/// On Linux the file is opened with <c>O_NONBLOCK</c> (so opening a FIFO returns at once instead of waiting for a
/// writer) and its type is checked on the open descriptor with <c>statx(fd, "", AT_EMPTY_PATH)</c>, so a name swapped
/// between a check and the open cannot slip a FIFO in. <c>struct statx</c> has the same layout on every architecture,
/// unlike <c>struct stat</c>. Elsewhere (tests and tools only; the CLI reads Linux hosts) the name is checked with
/// <see cref="FileInfo"/> before a plain open.
/// </remarks>
internal static partial class RegularFile
{
    /// <summary>What a name is when it is not a regular file, for messages ("a FIFO").</summary>
    public static string? NonRegularKind(string path)
    {
        if (!OperatingSystem.IsLinux()) return Directory.Exists(path) ? "a directory" : null;
        var buf = new byte[StatxSize];
        if (statx(AtFdCwd, path, 0, StatxType, buf) != 0) return null; // missing: the caller reports it
        return KindOf(ReadMode(buf));
    }

    /// <summary>
    /// Opens <paramref name="path"/> for reading when it is a regular file (links followed).
    /// </summary>
    /// <param name="display">How messages name the file (a path inside a tree, an option: <c>--pci-ids FILE</c>).</param>
    /// <exception cref="FileNotFoundException">It does not exist (callers decide whether that is an error).</exception>
    /// <exception cref="FileReadException">It is not a regular file, or cannot be opened (permission denied, EIO).</exception>
    public static FileStream OpenRead(string path, string display)
    {
        if (!OperatingSystem.IsLinux())
        {
            if (Directory.Exists(path)) throw new FileReadException(display, "is a directory, not a regular file");
            try { return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1); }
            catch (FileNotFoundException) { throw; }
            catch (DirectoryNotFoundException ex) { throw new FileNotFoundException(ex.Message, path); }
            catch (UnauthorizedAccessException) { throw new FileReadException(display, "permission denied"); }
            catch (IOException ex) { throw new FileReadException(display, ex.Message); }
        }
        int fd = open(path, ORdOnly | ONonBlock | ONoCtty | OCloExec);
        if (fd < 0) throw OpenError(Marshal.GetLastPInvokeError(), path, display);
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            var buf = new byte[StatxSize];
            if (statx(fd, "", AtEmptyPath, StatxType, buf) != 0)
                throw new FileReadException(display, $"cannot stat (errno {Marshal.GetLastPInvokeError()})");
            if (KindOf(ReadMode(buf)) is { } kind) throw new FileReadException(display, $"is {kind}, not a regular file");
            return new FileStream(handle, FileAccess.Read, 1);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads a regular file to its end, refusing it as soon as more than <paramref name="cap"/> bytes arrive (sysfs
    /// attributes report a size of 4096 and proc files 0, so the size is never trusted).
    /// </summary>
    /// <returns>The bytes; or, with <paramref name="allowOver"/>, at most <paramref name="cap"/> + 1 bytes so the caller can report the excess.</returns>
    /// <exception cref="FileNotFoundException">It does not exist.</exception>
    /// <exception cref="FileReadException">Not a regular file, or unreadable.</exception>
    /// <exception cref="InputException">Over the cap (without <paramref name="allowOver"/>).</exception>
    public static byte[] ReadAllCapped(string path, string display, long cap, bool allowOver = false)
    {
        if (OperatingSystem.IsLinux())
        {
            int fd = open(path, ORdOnly | ONonBlock | ONoCtty | OCloExec);
            if (fd < 0) throw OpenError(Marshal.GetLastPInvokeError(), path, display);
            try
            {
                long size = StatRegular(fd, display);
                return ReadOpen(fd, display, size, cap, allowOver);
            }
            finally { close(fd); }
        }
        using var fs = OpenRead(path, display);
        try
        {
            long size = fs.Length;
            if (size > cap && !allowOver) throw InputException.At(display, $"file of {size} bytes is larger than the {SourceLimits.Mib(cap)} cap");
            var buf = new byte[Math.Min(cap + 1, Math.Max(size + 1, 4096 + 1))];
            int total = 0;
            while (total < cap + 1)
            {
                if (total == buf.Length) Array.Resize(ref buf, (int)Math.Min((long)buf.Length * 2, cap + 1));
                int n = fs.Read(buf, total, buf.Length - total);
                if (n <= 0) break;
                total += n;
            }
            if (total > cap && !allowOver) throw InputException.At(display, $"file is larger than the {SourceLimits.Mib(cap)} cap");
            return buf.AsSpan(0, total).ToArray();
        }
        catch (IOException ex) when (ex is not FileNotFoundException)
        {
            throw new FileReadException(display, $"read error: {ex.Message}");
        }
        catch (UnauthorizedAccessException)
        {
            throw new FileReadException(display, "permission denied");
        }
    }


    /// <summary>
    /// Linux only: what the name is, without following a final symlink (one <c>statx</c> with
    /// <c>AT_SYMLINK_NOFOLLOW</c>; <c>FileSystemInfo.Attributes</c> costs an lstat, a stat of a link's target and a
    /// geteuid). Any failure (missing, permission denied on a parent) reads as <see cref="FileNodeKind.Missing"/>.
    /// A FIFO, socket or device is a <see cref="FileNodeKind.File"/> here: reading it is refused.
    /// </summary>
    [SkipLocalsInit] // the kernel fills the statx buffer: zeroing it first is wasted (issue 11)
    internal static FileNodeKind LstatKind(string path)
    {
        Span<byte> stx = stackalloc byte[StatxSize];
        if (statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType, stx) != 0) return FileNodeKind.Missing;
        return (BitConverter.ToUInt16(stx[StatxModeOffset..]) & SIfMt) switch
        {
            SIfLnk => FileNodeKind.Symlink,
            SIfDir => FileNodeKind.Directory,
            _ => FileNodeKind.File,
        };
    }

    /// <summary>
    /// Linux only: the raw target of the symlink at <paramref name="path"/> (one <c>readlink</c>), or null when the
    /// name is missing or not a symlink.
    /// </summary>
    /// <exception cref="FileReadException">Permission denied or an I/O error.</exception>
    [SkipLocalsInit] // only the n bytes readlink wrote are read: zeroing 4 KiB first is wasted (issue 11)
    internal static unsafe string? ReadLinkOrNull(string path, string display)
    {
        const int max = 4096; // PATH_MAX: readlink never returns more for a link the kernel made
        byte* buf = stackalloc byte[max];
        nint n = readlink(path, buf, max);
        if (n < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is ENOENT or ENOTDIR or EINVAL) return null;
            if (errno is EACCES or EPERM) throw new FileReadException(display, "permission denied");
            throw new FileReadException(display, $"cannot read the link: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        return System.Text.Encoding.UTF8.GetString(buf, (int)n);
    }

    /// <summary>
    /// Linux only: the names in a directory (not "." and ".."), unsorted, at most <paramref name="max"/> + 1 of them;
    /// null when it does not exist. One <c>open</c>, <c>getdents64</c> calls and a <c>close</c>: no stat of the
    /// directory (glibc's <c>opendir</c> makes one) nor of any entry (<see cref="Directory.EnumerateFileSystemEntries(string)"/>
    /// stats every symlink to see whether it leads to a directory, two calls per device in <c>sys/bus/pci/devices</c>).
    /// </summary>
    /// <param name="kinds">When given, what each name is by its entry's <c>d_type</c> (<see cref="KindOfDirent"/>), in the order of the names.</param>
    /// <exception cref="FileReadException">Permission denied or an I/O error: never read as empty.</exception>
    internal static List<string>? ListDirectory(string path, string display, int max, List<FileNodeKind?>? kinds = null)
    {
        int fd = open(path, ORdOnly | ODirectory | OCloExec);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is ENOENT or ENOTDIR) return null;
            throw ListError(errno, display);
        }
        try { return ReadEntries(fd, path, display, max, kinds); }
        finally { close(fd); }
    }

    /// <summary>
    /// <see cref="ListDirectory"/> of the name <paramref name="name"/> (one component, not followed: <c>O_NOFOLLOW</c>)
    /// in the directory open as <paramref name="dirFd"/> at <paramref name="dirPath"/>: null when it is missing, and
    /// with <paramref name="symlink"/> set when it is a link or not a directory (the caller resolves it in its tree).
    /// </summary>
    /// <exception cref="FileReadException">Permission denied or an I/O error: never read as empty.</exception>
    internal static List<string>? ListDirectoryAt(int dirFd, string dirPath, string name, int max, List<FileNodeKind?>? kinds, out bool symlink)
    {
        symlink = false;
        int fd = openat(dirFd, name, ORdOnly | ODirectory | ONoFollow | OCloExec);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == ENOENT) return null;
            // O_DIRECTORY is checked before O_NOFOLLOW (fs/namei.c do_open, then may_open's ELOOP): a link fails with
            // ENOTDIR like a file does, so either is left to the caller's walk.
            symlink = errno is ENOTDIR or ELOOP;
            if (symlink) return null;
            throw ListError(errno, Path.Combine(dirPath, name));
        }
        try { return ReadEntries(fd, Path.Combine(dirPath, name), Path.Combine(dirPath, name), max, kinds); }
        finally { close(fd); }
    }

    private static FileReadException ListError(int errno, string display) => errno is EACCES or EPERM
        ? new FileReadException(display, "permission denied")
        : new FileReadException(display, $"cannot list: {Marshal.GetPInvokeErrorMessage(errno)}");

    // Set once getdents64 is known to be missing (glibc before 2.30 has no wrapper): listings then use opendir/readdir.
    private static bool s_noGetdents;

    /// <summary>Test seam: list through opendir/readdir, as on a C library without <c>getdents64</c>.</summary>
    internal static bool ForceReaddir { get; set; }

    /// <summary>The entries of the directory open as <paramref name="fd"/> (at <paramref name="path"/>), as <see cref="ListDirectory"/> gives them.</summary>
    [SkipLocalsInit] // only the bytes getdents64 wrote are read: zeroing 8 KiB first is wasted (issue 11)
    private static unsafe List<string> ReadEntries(int fd, string path, string display, int max, List<FileNodeKind?>? kinds)
    {
        var names = new List<string>();
        if (!s_noGetdents && !ForceReaddir)
        {
            const int BufferBytes = 8192;
            byte* buf = stackalloc byte[BufferBytes];
            try
            {
                while (names.Count <= max)
                {
                    nint n = getdents64(fd, buf, BufferBytes);
                    if (n < 0)
                    {
                        int errno = Marshal.GetLastPInvokeError();
                        if (errno == EINTR) continue;
                        throw ListError(errno, display);
                    }
                    if (n == 0) break;
                    // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name: the layout glibc's
                    // struct dirent has on 64-bit Linux, so one set of offsets serves both paths.
                    for (nint off = 0; off < n && names.Count <= max;)
                    {
                        byte* entry = buf + off;
                        Add(entry);
                        off += *(ushort*)(entry + DirentReclenOffset);
                    }
                }
                return names;
            }
            catch (EntryPointNotFoundException)
            {
                s_noGetdents = true;
                names.Clear();
                kinds?.Clear();
            }
        }
        nint dir = opendir(path);
        if (dir == 0) throw ListError(Marshal.GetLastPInvokeError(), display);
        try
        {
            while (names.Count <= max)
            {
                byte* entry = readdir(dir);
                if (entry == null)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno != 0) throw ListError(errno, display);
                    break;
                }
                Add(entry);
            }
            return names;
        }
        finally { closedir(dir); }

        void Add(byte* entry)
        {
            var name = MemoryMarshal.CreateReadOnlySpanFromNullTerminated(entry + DirentNameOffset);
            if (name.SequenceEqual("."u8) || name.SequenceEqual(".."u8)) return;
            names.Add(System.Text.Encoding.UTF8.GetString(name));
            kinds?.Add(KindOfDirent(entry[DirentTypeOffset]));
        }
    }

    private const int DirentReclenOffset = 16;
    private const int DirentTypeOffset = 18;
    private const int DirentNameOffset = 19;

    /// <summary>
    /// What a directory entry's <c>d_type</c> says the name is, as <see cref="LstatKind"/> would (a FIFO, socket or
    /// device is a <see cref="FileNodeKind.File"/>): null for <c>DT_UNKNOWN</c>, which file systems without types in
    /// their directories give (the caller then asks the name itself).
    /// </summary>
    private static FileNodeKind? KindOfDirent(byte type) => type switch
    {
        0 => null,                        // DT_UNKNOWN
        4 => FileNodeKind.Directory,      // DT_DIR
        10 => FileNodeKind.Symlink,       // DT_LNK
        _ => FileNodeKind.File,           // DT_REG, DT_FIFO, DT_CHR, DT_BLK, DT_SOCK
    };

    /// <summary>What <see cref="TryReadNoFollow"/> found at the name.</summary>
    internal enum NoFollowOutcome
    {
        /// <summary>A regular file, read.</summary>
        Read,
        /// <summary>No such name (or a parent is not a directory).</summary>
        Missing,
        /// <summary>A directory: not read.</summary>
        Directory,
        /// <summary>A symbolic link: not followed, not read (the caller resolves it).</summary>
        Symlink,
    }

    /// <summary>
    /// Linux only: reads the regular file at <paramref name="path"/> whose last component is not followed if it is a
    /// symlink (<c>O_NOFOLLOW</c>), with one <c>open</c>, one <c>statx</c> on the descriptor, the reads and a
    /// <c>close</c>: no <c>lstat</c> first, and no window between a type check by name and the open. The parents of
    /// the last component must already be resolved by the caller.
    /// </summary>
    /// <param name="beforeRead">Called once the name is known to exist and not to be a directory or link (a test seam for faults).</param>
    /// <exception cref="FileReadException">A FIFO, socket or device, permission denied, EIO: never read as empty.</exception>
    internal static NoFollowOutcome TryReadNoFollow(string path, string display, int cap, Action? beforeRead, out byte[]? bytes)
    {
        bytes = null;
        int fd = open(path, ORdOnly | ONonBlock | ONoCtty | OCloExec | ONoFollow);
        if (fd < 0) return OpenFailure(Marshal.GetLastPInvokeError(), path, display, null, beforeRead);
        try
        {
            var outcome = CheckOpened(fd, display, null, beforeRead, out long size);
            if (outcome == NoFollowOutcome.Read) bytes = ReadOpen(fd, display, size, cap, allowOver: true);
            return outcome;
        }
        finally { close(fd); }
    }

    /// <summary>
    /// What a failed <c>O_NOFOLLOW</c> open means: <see cref="NoFollowOutcome.Missing"/>,
    /// <see cref="NoFollowOutcome.Symlink"/> (the last component is a link), or bad input naming the file (permission
    /// denied, EIO…). The file is <paramref name="display"/>, or <paramref name="name"/> in it when given (built only
    /// for the message, so a read relative to a directory allocates nothing).
    /// </summary>
    /// <exception cref="FileReadException">Any other error.</exception>
    private static NoFollowOutcome OpenFailure(int errno, string path, string display, string? name, Action? beforeRead)
    {
        if (errno is ENOENT or ENOTDIR) return NoFollowOutcome.Missing;
        if (errno == ELOOP) return NoFollowOutcome.Symlink; // O_NOFOLLOW on a link
        beforeRead?.Invoke();
        if (name is not null) path = display = Path.Combine(display, name);
        throw OpenError(errno, path, display);
    }

    /// <summary>
    /// The type check of a descriptor opened with <c>O_NOFOLLOW</c>, made on the descriptor itself (no race with the
    /// name): <see cref="NoFollowOutcome.Read"/> for a regular file (<paramref name="size"/> is the size it states),
    /// <see cref="NoFollowOutcome.Directory"/>; a FIFO, socket or device is refused, never read as empty. Messages
    /// name the file as <see cref="OpenFailure"/> does.
    /// </summary>
    /// <exception cref="FileReadException">Not a regular file or directory, or the stat failed.</exception>
    [SkipLocalsInit] // the kernel fills the statx buffer
    private static NoFollowOutcome CheckOpened(int fd, string display, string? name, Action? beforeRead, out long size)
    {
        size = 0;
        Span<byte> stx = stackalloc byte[StatxSize];
        if (statx(fd, "", AtEmptyPath, StatxType | StatxSize_, stx) != 0)
            throw new FileReadException(Named(display, name), $"cannot stat (errno {Marshal.GetLastPInvokeError()})");
        int mode = BitConverter.ToUInt16(stx[StatxModeOffset..]);
        if ((mode & SIfMt) == SIfDir) return NoFollowOutcome.Directory;
        beforeRead?.Invoke();
        if (KindOf(mode) is { } kind) throw new FileReadException(Named(display, name), $"is {kind}, not a regular file");
        size = (long)BitConverter.ToUInt64(stx[StatxSizeOffset..]);
        return NoFollowOutcome.Read;
    }

    private static string Named(string display, string? name) => name is null ? display : Path.Combine(display, name);

    /// <summary>
    /// Linux only: opens the regular file at <paramref name="path"/> for positional reads, its last component not
    /// followed (<c>O_NOFOLLOW</c>) and its type checked on the descriptor, as <see cref="TryReadNoFollow"/> does; the
    /// caller reads it with <see cref="ReadAt"/> and closes it with <see cref="Close"/>.
    /// </summary>
    /// <param name="fd">The open descriptor when the outcome is <see cref="NoFollowOutcome.Read"/>, else -1.</param>
    /// <param name="size">The size the file states (sysfs: the attribute's size, <c>config</c> 256 or 4096).</param>
    /// <exception cref="FileReadException">A FIFO, socket or device, permission denied, EIO: never read as empty.</exception>
    internal static NoFollowOutcome TryOpenNoFollow(string path, string display, Action? beforeRead, out int fd, out long size)
    {
        size = 0;
        fd = open(path, ORdOnly | ONonBlock | ONoCtty | OCloExec | ONoFollow);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            fd = -1;
            return OpenFailure(errno, path, display, null, beforeRead);
        }
        bool keep = false;
        try
        {
            var outcome = CheckOpened(fd, display, null, beforeRead, out size);
            keep = outcome == NoFollowOutcome.Read;
            return outcome;
        }
        finally
        {
            if (!keep)
            {
                close(fd);
                fd = -1;
            }
        }
    }

    /// <summary>
    /// Linux only: one <c>pread(2)</c> of the open file at <paramref name="offset"/> (again on EINTR): the bytes read,
    /// fewer than asked at the end of the file, 0 past it.
    /// </summary>
    /// <exception cref="FileReadException">An I/O error.</exception>
    internal static unsafe int ReadAt(int fd, long offset, Span<byte> buffer, string display)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                nint n = pread64(fd, p, buffer.Length, offset);
                if (n >= 0) return (int)n;
                int errno = Marshal.GetLastPInvokeError();
                if (errno != EINTR) throw new FileReadException(display, $"read error at offset 0x{offset:x}: {Marshal.GetPInvokeErrorMessage(errno)}");
            }
        }
    }

    /// <summary>Closes a descriptor from <see cref="TryOpenNoFollow"/>.</summary>
    internal static void Close(int fd) => close(fd);

    /// <summary>
    /// Linux only: true when <paramref name="path"/> lies on a sysfs mount (<c>statfs</c> f_type <c>SYSFS_MAGIC</c>,
    /// include/uapi/linux/magic.h): its files are made by the kernel as they are read (a live host), not stored.
    /// </summary>
    internal static bool IsOnSysfs(string path)
    {
        // struct statfs: f_type is the first field (a long on 64-bit, an int on 32-bit; little-endian either way for
        // the low 32 bits, which hold the magic). 120 bytes on x86-64 and arm64: 256 is room enough.
        Span<byte> buf = stackalloc byte[256];
        if (statfs(path, buf) != 0) return false;
        return BitConverter.ToUInt32(buf) == SysfsMagic;
    }

    private const uint SysfsMagic = 0x62656572; // SYSFS_MAGIC

    /// <summary>
    /// Linux only: a descriptor for the directory at <paramref name="path"/> to read names relative to
    /// (<c>O_PATH | O_DIRECTORY | O_NOFOLLOW</c>: nothing is read, a last component that is a symlink or not a directory
    /// is refused), or -1 when it cannot be opened that way (the caller then reads by path, as before).
    /// </summary>
    internal static int OpenDirectoryPath(string path)
    {
        int fd = open(path, OPath | ODirectory | ONoFollow | OCloExec);
        return fd < 0 ? -1 : fd;
    }

    /// <summary>Closes a descriptor from <see cref="OpenDirectoryPath"/>.</summary>
    internal static void CloseDescriptor(int fd) => close(fd);

    /// <summary>
    /// <see cref="TryReadNoFollow"/> for the name <paramref name="name"/> (one component) in the directory open as
    /// <paramref name="dirFd"/>: <c>openat</c> walks one component instead of the whole path, and the bytes go into
    /// <paramref name="dest"/> (at most its length; a file at least that long fills it, and the caller takes the
    /// general path). Nothing is allocated unless an error is reported.
    /// </summary>
    /// <param name="dirDisplay">How messages name the directory; the file is <c>dirDisplay/name</c>.</param>
    /// <param name="beforeRead">As for <see cref="TryReadNoFollow"/>: a test seam for faults, null in use.</param>
    /// <param name="kernelMade">
    /// The directory is on a live sysfs (kernfs), whose names are only directories, attributes and symlinks
    /// (include/linux/kernfs.h <c>KERNFS_DIR</c>, <c>KERNFS_FILE</c>, <c>KERNFS_LINK</c>): no FIFO, socket or device can
    /// be there, so the file's type is not checked with a <c>statx</c> first (a directory shows as <c>EISDIR</c> on the
    /// read), and an attribute is known to be whole once a read returns less than it asked within a page
    /// (fs/kernfs/file.c <c>kernfs_fop_read_iter</c>: an attribute is shown through <c>seq_read_iter</c>, one record
    /// copied as far as the read asks; a binary attribute through <c>kernfs_file_read_iter</c>, at most a page per
    /// read): on a live host each attribute is an open, one read and a close instead of five calls. The
    /// <paramref name="beforeRead"/> seam is then called before the read, which is what tells a directory.
    /// </param>
    /// <exception cref="FileReadException">A FIFO, socket or device, permission denied, EIO: never read as empty.</exception>
    internal static NoFollowOutcome TryReadNoFollowAt(int dirFd, string name, string dirDisplay, Span<byte> dest, Action? beforeRead, out int length,
        bool kernelMade = false)
    {
        length = 0;
        int fd = openat(dirFd, name, ORdOnly | ONonBlock | ONoCtty | OCloExec | ONoFollow);
        if (fd < 0) return OpenFailure(Marshal.GetLastPInvokeError(), dirDisplay, dirDisplay, name, beforeRead);
        try
        {
            long size = -1;
            if (kernelMade) beforeRead?.Invoke();
            else
            {
                var outcome = CheckOpened(fd, dirDisplay, name, beforeRead, out size);
                if (outcome != NoFollowOutcome.Read) return outcome;
            }
            // As ReadOpen: to the end or to the stated size, whichever comes first; here also to the end of dest.
            int total = 0;
            int page = Environment.SystemPageSize;
            while (total < dest.Length)
            {
                int n, asked = dest.Length - total;
                unsafe
                {
                    fixed (byte* p = &dest[total]) n = ReadSomeAt(fd, p, asked, dirDisplay, name, directoryIsNotAnError: kernelMade && total == 0);
                }
                if (n < 0) return NoFollowOutcome.Directory;
                if (n == 0) break;
                total += n;
                if (total == size) break;
                if (kernelMade && n < Math.Min(asked, page)) break;
            }
            length = total;
            return NoFollowOutcome.Read;
        }
        finally { close(fd); }
    }

    /// <summary>One <c>read(2)</c> (again on EINTR): the bytes read, 0 at the end, -1 for <c>EISDIR</c> when <paramref name="directoryIsNotAnError"/>.</summary>
    private static unsafe int ReadSomeAt(int fd, byte* p, int count, string dirDisplay, string name, bool directoryIsNotAnError = false)
    {
        while (true)
        {
            nint n = read(fd, p, count);
            if (n >= 0) return (int)n;
            int errno = Marshal.GetLastPInvokeError();
            if (errno == EISDIR && directoryIsNotAnError) return -1;
            if (errno != EINTR) throw new FileReadException(Path.Combine(dirDisplay, name), $"read error: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
    }

    /// <summary>
    /// Linux only: the raw target of the symlink <paramref name="name"/> in the directory open as
    /// <paramref name="dirFd"/> (one <c>readlinkat</c>) into <paramref name="dest"/>: its length in bytes, or -1 when
    /// the name is missing or not a symlink. <paramref name="dest"/> holds PATH_MAX (4096) bytes.
    /// </summary>
    /// <exception cref="FileReadException">Permission denied or an I/O error.</exception>
    internal static unsafe int ReadLinkAt(int dirFd, string name, string dirDisplay, Span<byte> dest)
    {
        nint n;
        fixed (byte* p = dest) n = readlinkat(dirFd, name, p, dest.Length);
        if (n >= 0) return (int)n;
        int errno = Marshal.GetLastPInvokeError();
        if (errno is ENOENT or ENOTDIR or EINVAL) return -1;
        if (errno is EACCES or EPERM) throw new FileReadException(Path.Combine(dirDisplay, name), "permission denied");
        throw new FileReadException(Path.Combine(dirDisplay, name), $"cannot read the link: {Marshal.GetPInvokeErrorMessage(errno)}");
    }

    /// <summary>
    /// Linux only: the regular file at <paramref name="path"/> mapped read-only (<c>mmap</c>, <c>MAP_PRIVATE</c>):
    /// its pages come from the page cache as they are touched, with no copy and no zeroed managed array. Null when it
    /// is not worth or not possible to map (empty, a size the file system does not state, over the cap, mmap refused):
    /// the caller then reads it with <see cref="ReadAllCapped"/>, which gives the answer and the messages. Only for
    /// files the system installs and replaces whole (a package's pci.ids): a file truncated while mapped would fault.
    /// </summary>
    /// <exception cref="FileNotFoundException">It does not exist.</exception>
    /// <exception cref="FileReadException">Not a regular file, or unreadable.</exception>
    internal static unsafe MappedFile? MapReadOnly(string path, string display, long cap)
    {
        if (!OperatingSystem.IsLinux()) return null;
        int fd = open(path, ORdOnly | ONonBlock | ONoCtty | OCloExec);
        if (fd < 0) throw OpenError(Marshal.GetLastPInvokeError(), path, display);
        try
        {
            long size = StatRegular(fd, display);
            if (size <= 0 || size > cap || size > int.MaxValue) return null;
            void* p = mmap(null, (nuint)size, ProtRead, MapPrivate, fd, 0);
            return p == (void*)-1 ? null : new MappedFile((byte*)p, (int)size);
        }
        finally { close(fd); }
    }

    /// <summary>
    /// A file mapped by <see cref="MapReadOnly"/>. Its owner unmaps it (<see cref="Unmap"/>) when no span of it can be
    /// in use any more (<see cref="PciIds"/>: from its finalizer, each lookup keeping the owner alive to its end).
    /// </summary>
    internal sealed unsafe class MappedFile
    {
        private byte* _pointer;
        private readonly int _length;

        internal MappedFile(byte* pointer, int length)
        {
            _pointer = pointer;
            _length = length;
        }

        /// <summary>The file's bytes.</summary>
        public ReadOnlySpan<byte> Span => _pointer is null ? throw new ObjectDisposedException(nameof(MappedFile)) : new(_pointer, _length);

        /// <summary>Unmaps the file (once).</summary>
        public void Unmap()
        {
            if (_pointer is null) return;
            munmap(_pointer, (nuint)_length);
            _pointer = null;
        }
    }

    /// <summary>The size of the open file when it is a regular file; else why not, as bad input.</summary>
    [SkipLocalsInit] // the kernel fills the statx buffer
    private static long StatRegular(int fd, string display)
    {
        Span<byte> stx = stackalloc byte[StatxSize];
        if (statx(fd, "", AtEmptyPath, StatxType | StatxSize_, stx) != 0)
            throw new FileReadException(display, $"cannot stat (errno {Marshal.GetLastPInvokeError()})");
        if (KindOf(BitConverter.ToUInt16(stx[StatxModeOffset..])) is { } kind) throw new FileReadException(display, $"is {kind}, not a regular file");
        return (long)BitConverter.ToUInt64(stx[StatxSizeOffset..]);
    }

    /// <summary>
    /// Scratch for small files (sysfs attributes, a 4 KiB config space): a load reads thousands of them, and a fresh
    /// 4 KiB buffer for each is most of its allocation (and of its page faults). One per thread; the bytes handed
    /// back are always a copy of exactly what was read.
    /// </summary>
    [ThreadStatic] private static byte[]? t_scratch;
    private const int ScratchBytes = 16 * 1024;

    /// <summary>
    /// Reads the open regular file with <c>read(2)</c> to its end or to its stated <paramref name="size"/> (from statx),
    /// whichever comes first, at most <paramref name="cap"/> + 1 bytes; the size is never trusted to be the end (sysfs
    /// says 4096 for every attribute, proc 0), only to be enough.
    /// </summary>
    private static unsafe byte[] ReadOpen(int fd, string display, long size, long cap, bool allowOver)
    {
        if (size > cap && !allowOver) throw InputException.At(display, $"file of {size} bytes is larger than the {SourceLimits.Mib(cap)} cap");
        int capPlus = (int)Math.Min(cap + 1, Array.MaxLength);
        // A small file goes through the scratch buffer; a larger one into an array of exactly its stated size, which
        // is returned as it is when the size was right (pci.ids: no second 1.4 MB copy).
        bool scratch = Math.Max(size, 0) < ScratchBytes;
        byte[] buf = scratch ? t_scratch ??= new byte[ScratchBytes] : GC.AllocateUninitializedArray<byte>((int)Math.Min(size, capPlus));
        int limit = scratch ? Math.Min(capPlus, ScratchBytes) : buf.Length;
        int total = 0;
        while (true)
        {
            if (total == limit)
            {
                if (limit >= capPlus) break; // cap + 1 bytes: the caller reports the excess
                // Full: one more byte tells the end of the file from a file larger than it said.
                byte probe;
                if (ReadSome(fd, &probe, 1, display) == 0) break;
                int grown = (int)Math.Min(Math.Max((long)limit * 2, 4096 + 1), capPlus);
                var bigger = GC.AllocateUninitializedArray<byte>(grown);
                buf.AsSpan(0, total).CopyTo(bigger);
                bigger[total++] = probe;
                buf = bigger;
                limit = grown;
                scratch = false;
                continue;
            }
            int n;
            fixed (byte* p = &buf[total]) n = ReadSome(fd, p, limit - total, display);
            if (n == 0) break;
            total += n;
            // A file that said its size and gave exactly that much is read (an extracted snapshot's files): no read
            // for the end. Sysfs attributes say 4096 whatever they hold, and proc files 0, so those read to the end.
            if (total == size) break;
        }
        if (total > cap && !allowOver) throw InputException.At(display, $"file is larger than the {SourceLimits.Mib(cap)} cap");
        if (!scratch && total == buf.Length) return buf;
        var result = GC.AllocateUninitializedArray<byte>(total);
        buf.AsSpan(0, total).CopyTo(result);
        return result;
    }

    /// <summary>One <c>read(2)</c> (again on EINTR): the bytes read, 0 at the end of the file.</summary>
    private static unsafe int ReadSome(int fd, byte* p, int count, string display)
    {
        while (true)
        {
            nint n = read(fd, p, count);
            if (n >= 0) return (int)n;
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) throw new FileReadException(display, $"read error: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
    }

    private static Exception OpenError(int errno, string path, string display)
    {
        if (errno is ENOENT or ENOTDIR) return new FileNotFoundException($"{display}: no such file", path);
        return new FileReadException(display, errno switch
        {
            EACCES or EPERM => "permission denied",
            ENXIO => "is a socket, not a regular file",
            ELOOP => "is a symlink loop",
            _ => $"cannot open (errno {errno})",
        });
    }

    private static string? KindOf(int mode) => (mode & SIfMt) switch
    {
        SIfReg => null,
        SIfDir => "a directory",
        SIfIfo => "a FIFO",
        SIfSock => "a socket",
        SIfChr => "a character device",
        SIfBlk => "a block device",
        _ => "not a regular file",
    };

    private static int ReadMode(byte[] statxBuf) => BitConverter.ToUInt16(statxBuf, StatxModeOffset);

    // <linux/stat.h>: struct statx is 256 bytes on every architecture; stx_mode (__u16) sits at offset 28.
    private const int StatxSize = 256;
    private const int StatxModeOffset = 28;
    private const uint StatxType = 0x1, StatxSize_ = 0x200; // STATX_TYPE, STATX_SIZE
    private const int StatxSizeOffset = 40; // stx_size (__u64)
    private const int AtFdCwd = -100;
    private const int AtEmptyPath = 0x1000, AtSymlinkNoFollow = 0x100;
    private const int ORdOnly = 0, ONoCtty = 0x100, ONonBlock = 0x800, OCloExec = 0x80000; // asm-generic/fcntl.h (x86-64, arm64)
    // O_PATH is 0x200000 on both; O_DIRECTORY is 0x10000 on x86-64 but 0x4000 on arm64 (arch/arm64/include/uapi/asm/fcntl.h).
    private const int OPath = 0x200000;
    private const int ProtRead = 0x1, MapPrivate = 0x2; // asm-generic/mman-common.h, the same on x86-64 and arm64
    private static int ODirectory => RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x4000 : 0x10000;
    // O_NOFOLLOW is 0x20000 on x86-64 (asm-generic) but 0x8000 on arm64 (arch/arm64/include/uapi/asm/fcntl.h).
    private static int ONoFollow => RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x8000 : 0x20000;
    private const int SIfMt = 0xf000, SIfLnk = 0xa000, SIfSock = 0xc000, SIfReg = 0x8000, SIfBlk = 0x6000, SIfDir = 0x4000, SIfChr = 0x2000, SIfIfo = 0x1000;
    private const int EPERM = 1, ENOENT = 2, EINTR = 4, ENXIO = 6, EACCES = 13, ENOTDIR = 20, EISDIR = 21, EINVAL = 22, ELOOP = 40;

    /// <summary>
    /// glibc by its soname: "libc" would make the runtime probe for liblibc.so and libc.so (a linker script that only
    /// libc6-dev installs), which the native binary must not depend on (issue 11: nothing but the C library).
    /// </summary>
    internal const string LibC = "libc.so.6";

    [LibraryImport(LibC, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport(LibC, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx(int dirfd, string path, int flags, uint mask, [Out] byte[] buf);

    [LibraryImport(LibC, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int statx(int dirfd, string path, int flags, uint mask, Span<byte> buf);

    [LibraryImport(LibC, EntryPoint = "read", SetLastError = true)]
    private static unsafe partial nint read(int fd, byte* buf, nint count);

    [LibraryImport(LibC, EntryPoint = "readlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial nint readlink(string path, byte* buf, nint size);

    [LibraryImport(LibC, EntryPoint = "openat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int openat(int dirfd, string path, int flags);

    [LibraryImport(LibC, EntryPoint = "readlinkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial nint readlinkat(int dirfd, string path, byte* buf, nint size);

    [LibraryImport(LibC, EntryPoint = "mmap", SetLastError = true)]
    private static unsafe partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport(LibC, EntryPoint = "munmap")]
    private static unsafe partial int munmap(void* addr, nuint length);

    [LibraryImport(LibC, EntryPoint = "opendir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint opendir(string path);

    [LibraryImport(LibC, EntryPoint = "readdir", SetLastError = true)]
    private static unsafe partial byte* readdir(nint dir);

    [LibraryImport(LibC, EntryPoint = "getdents64", SetLastError = true)]
    private static unsafe partial nint getdents64(int fd, byte* buf, nuint count);

    [LibraryImport(LibC, EntryPoint = "closedir")]
    private static partial int closedir(nint dir);

    [LibraryImport(LibC, EntryPoint = "pread64", SetLastError = true)]
    private static unsafe partial nint pread64(int fd, byte* buf, nint count, long offset);

    [LibraryImport(LibC, EntryPoint = "statfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statfs(string path, Span<byte> buf);

    [LibraryImport(LibC, EntryPoint = "close")]
    private static partial int close(int fd);
}

/// <summary>
/// An input file that exists but could not be read as one: not a regular file (a FIFO, a socket, a device), permission
/// denied, an I/O error. Bad input like any other (exit 3 when it escapes), and a reader that can go on without the
/// file catches it and says what it could not see.
/// </summary>
public sealed class FileReadException : InputException
{
    /// <summary>The file as messages name it.</summary>
    public string File { get; }

    /// <summary>What went wrong, without the file: <c>permission denied</c>, <c>is a FIFO, not a regular file</c>.</summary>
    public string Reason { get; }

    /// <summary>A failure to read <paramref name="file"/>; the message is <c>file: reason</c>.</summary>
    public FileReadException(string file, string reason) : base($"{file}: {reason}")
    {
        File = file;
        Reason = reason;
    }
}
