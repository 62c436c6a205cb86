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
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is ENOENT or ENOTDIR) throw new FileNotFoundException($"{display}: no such file", path);
            throw new FileReadException(display, errno switch
            {
                EACCES or EPERM => "permission denied",
                ENXIO => "is a socket, not a regular file",
                ELOOP => "is a symlink loop",
                _ => $"cannot open (errno {errno})",
            });
        }
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
    private const uint StatxType = 0x1; // STATX_TYPE
    private const int AtFdCwd = -100;
    private const int AtEmptyPath = 0x1000;
    private const int ORdOnly = 0, ONoCtty = 0x100, ONonBlock = 0x800, OCloExec = 0x80000; // asm-generic/fcntl.h (x86-64, arm64)
    private const int SIfMt = 0xf000, SIfSock = 0xc000, SIfReg = 0x8000, SIfBlk = 0x6000, SIfDir = 0x4000, SIfChr = 0x2000, SIfIfo = 0x1000;
    private const int EPERM = 1, ENOENT = 2, ENXIO = 6, EACCES = 13, ENOTDIR = 20, ELOOP = 40;

    /// <summary>
    /// glibc by its soname: "libc" would make the runtime probe for liblibc.so and libc.so (a linker script that only
    /// libc6-dev installs), which the native binary must not depend on (issue 11: nothing but the C library).
    /// </summary>
    internal const string LibC = "libc.so.6";

    [LibraryImport(LibC, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport(LibC, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx(int dirfd, string path, int flags, uint mask, [Out] byte[] buf);
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
