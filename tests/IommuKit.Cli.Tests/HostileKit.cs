using System.Formats.Tar;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;
using Xunit;

namespace IommuKit.Cli.Tests;

/// <summary>Builds hostile inputs for the CLI tests: raw tar bytes, patched headers, FIFOs, temp roots.</summary>
internal static class HostileKit
{
    /// <summary>The members of a fixture tarball, in archive order.</summary>
    public static List<Member> ReadMembers(string tarGzPath) => TarMembers.Read(tarGzPath);

    /// <summary>A plain (not gzip'd) GNU tar of the members.</summary>
    public static byte[] Tar(IEnumerable<Member> members) => TarMembers.Write(members, gzip: false);

    public static byte[] Gzip(byte[] data)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(data);
        return ms.ToArray();
    }

    public static byte[] Gunzip(byte[] data)
    {
        using var gz = new GZipStream(new MemoryStream(data), CompressionMode.Decompress);
        using var ms = new MemoryStream();
        gz.CopyTo(ms);
        return ms.ToArray();
    }

    /// <summary>Offsets of the 512-byte headers of a plain tar, up to the end-of-archive block.</summary>
    public static List<int> HeaderOffsets(byte[] tar)
    {
        var list = new List<int>();
        int pos = 0;
        while (pos + 512 <= tar.Length && tar.AsSpan(pos, 512).IndexOfAnyExcept((byte)0) >= 0)
        {
            list.Add(pos);
            long size = Convert.ToInt64(Encoding.ASCII.GetString(tar, pos + 124, 12).Trim('\0', ' '), 8);
            char type = (char)tar[pos + 156];
            if (type is '2' or '5') size = 0;
            pos += 512 + (int)((size + 511) / 512 * 512);
        }
        return list;
    }

    /// <summary>Rewrites the checksum of the header at <paramref name="offset"/> after a patch.</summary>
    public static void FixChecksum(byte[] tar, int offset)
    {
        for (int i = 148; i < 156; i++) tar[offset + i] = (byte)' ';
        int sum = 0;
        for (int i = 0; i < 512; i++) sum += tar[offset + i];
        var text = Encoding.ASCII.GetBytes(Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ");
        text.CopyTo(tar, offset + 148);
    }

    /// <summary>A fresh empty temp directory; deleted by <see cref="Cleanup"/>.</summary>
    public static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "iommukit-hostile-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static void Cleanup(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Extracts an oracle machine into a fresh directory root.</summary>
    public static string ExtractOracle(string machine)
    {
        string root = TempDir();
        using var gz = new GZipStream(File.OpenRead(CliRunner.Oracle(machine)), CompressionMode.Decompress);
        TarFile.ExtractToDirectory(gz, root, overwriteFiles: false);
        return root;
    }

    /// <summary>Writes members as a directory root (links as symlinks).</summary>
    public static void WriteRoot(string root, IEnumerable<Member> members)
    {
        foreach (var m in members)
        {
            string path = Path.Combine(root, m.Name.TrimEnd('/'));
            if (UnderALink(root, path)) continue; // never write through a link the mutations made (it may lead to "/")
            if (m.IsDirectory) { Directory.CreateDirectory(path); continue; }
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            if (File.Exists(path) || new FileInfo(path).LinkTarget is not null) File.Delete(path);
            if (Directory.Exists(path)) continue;
            if (m.Link is not null) File.CreateSymbolicLink(path, m.Link);
            else File.WriteAllBytes(path, m.Data!);
        }
    }

    private static bool UnderALink(string root, string path)
    {
        for (string? d = Path.GetDirectoryName(path); d is not null && d.Length > root.Length; d = Path.GetDirectoryName(d))
        {
            if (new DirectoryInfo(d).LinkTarget is not null) return true;
        }
        return false;
    }

    /// <summary>Replaces whatever is at <paramref name="path"/> with a FIFO.</summary>
    public static void MakeFifo(string path)
    {
        if (File.Exists(path) || new FileInfo(path).LinkTarget is not null) File.Delete(path);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        Assert.Equal(0, mkfifo(path, Convert.ToUInt32("644", 8)));
    }

    /// <summary>Replaces whatever is at <paramref name="path"/> with a symlink to <paramref name="target"/>.</summary>
    public static void MakeLink(string path, string target)
    {
        if (File.Exists(path) || new FileInfo(path).LinkTarget is not null) File.Delete(path);
        else if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
        File.CreateSymbolicLink(path, target);
    }

    /// <summary>
    /// Runs the command with a watchdog: a run that blocks (on a FIFO) fails the test instead of hanging the suite;
    /// every FIFO under <paramref name="fifoDir"/> is then opened from both sides once to release the blocked reader or writer.
    /// </summary>
    public static CliRunner.Result RunBounded(string? fifoDir, params string[] args)
    {
        var task = Task.Run(() => CliRunner.Run(args));
        if (task.Wait(TimeSpan.FromSeconds(30))) return task.Result;
        if (fifoDir is not null)
        {
            // Release the blocked party, reader or writer: open each FIFO from the other side, without waiting.
            foreach (var f in Directory.EnumerateFiles(fifoDir, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint }))
            {
                _ = Task.Run(() => { try { using var w = new FileStream(f, FileMode.Open, FileAccess.Write, FileShare.ReadWrite); } catch (IOException) { } catch (UnauthorizedAccessException) { } });
                _ = Task.Run(() => { try { using var r = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.ReadWrite); r.CopyTo(Stream.Null); } catch (IOException) { } catch (UnauthorizedAccessException) { } });
            }
        }
        Assert.Fail($"iommu {string.Join(' ', args)} did not finish within 30 s (blocked on a FIFO or an endless read)");
        return null!;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int mkfifo([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mode);

    /// <summary>A console whose standard output throws, to reach the last-resort handler.</summary>
    public sealed class ThrowingWriter : TextWriter
    {
        public override Encoding Encoding => Encoding.UTF8;
        public override void Write(char value) => throw new InvalidOperationException("simulated bug\nwith a second line");
        public override void Write(string? value) => throw new InvalidOperationException("simulated bug\nwith a second line");
        public override void WriteLine(string? value) => throw new InvalidOperationException("simulated bug\nwith a second line");
    }
}
