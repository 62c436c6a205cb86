using System.Formats.Tar;
using System.IO.Compression;
using IommuKit.Pci;

namespace IommuKit.Sources;

/// <summary>
/// Captures the files a machine is read from (issue 2: the PCI devices and the directories they link to, the IOMMU
/// groups, the IOMMU units with their register files, slots, <c>proc/cmdline</c>, <c>proc/sys/kernel/osrelease</c>;
/// issue 9: the firmware's DMAR/IVRS/IORT tables and each root bus's ACPI <c>firmware_node</c>)
/// from a root directory into a deterministic gzip'd tar whose member names mirror the host (<c>sys/...</c>,
/// <c>proc/...</c>) and whose symlinks are the host's relative links, as the oracle README describes: members sorted,
/// mode 0755 for directories, 0644 for <c>config</c>/<c>type</c>, 0444 for other attributes, mtime/uid/gid 0, a gzip
/// header without name or time.
/// </summary>
public static class SnapshotWriter
{
    /// <summary>Attributes copied from every device directory (byte-exact).</summary>
    public static readonly string[] DeviceFiles = ["class", "config", "device", "revision", "subsystem_device", "subsystem_vendor", "vendor"];

    /// <summary>Links copied from every device directory (the link text itself, never the target's content).</summary>
    public static readonly string[] DeviceLinks = ["driver", "iommu", "iommu_group"];

    private enum Kind { Directory, File, Symlink }

    private sealed record Member(Kind Kind, byte[]? Data = null, string? Link = null);

    /// <summary>Result of a capture: how many devices were captured, and what was left out and why.</summary>
    public sealed record Result(int Devices, int Members, IReadOnlyList<string> Warnings);

    /// <summary>
    /// Writes the snapshot of <paramref name="root"/> to <paramref name="outputPath"/>, atomically: the capture is written
    /// to a temporary file beside the target (same directory, so the same file system), flushed to disk, and renamed
    /// over the target only when complete. A failure (a full disk) leaves the target as it was (absent, or the old
    /// file) and removes the temporary file. A symlink at the target is refused unless <paramref name="overwrite"/>, and
    /// then the link itself is replaced (rename(2) replaces the name), never the file it points to.
    /// </summary>
    /// <param name="overwrite">Replace an existing file (or link); otherwise an existing name is an error.</param>
    /// <exception cref="InputException">The root has no PCI sysfs, or a link in it escapes the root.</exception>
    /// <exception cref="IOException">The output exists (without <paramref name="overwrite"/>), is a symlink (without it), or cannot be written.</exception>
    /// <exception cref="ArgumentException"><paramref name="outputPath"/> is empty.</exception>
    public static Result WriteFile(string root, string outputPath, bool overwrite) => WriteFile(root, outputPath, overwrite, null);

    /// <summary>As <see cref="WriteFile(string, string, bool)"/>; <paramref name="wrap"/> (tests) wraps the temporary file's stream to inject faults.</summary>
    internal static Result WriteFile(string root, string outputPath, bool overwrite, Func<Stream, Stream>? wrap)
    {
        ArgumentException.ThrowIfNullOrEmpty(outputPath);
        using var ms = new MemoryStream();
        var result = Capture(root, ms);
        string full = Path.GetFullPath(outputPath);
        string dir = Path.GetDirectoryName(full) ?? ".";
        var existing = new FileInfo(full);
        if (existing.LinkTarget is not null && !overwrite)
            throw new IOException($"{outputPath} is a symbolic link (to {existing.LinkTarget}); refusing to write through it (--force replaces the link itself)");
        if (existing.Exists && !overwrite)
            throw new IOException($"{outputPath} already exists");
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                var target = wrap is null ? fs : wrap(fs);
                ms.Position = 0;
                ms.CopyTo(target);
                target.Flush();
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
        return result;
    }

    /// <summary>
    /// Writes the snapshot of <paramref name="root"/> to a stream that cannot be rolled back (standard output, a pipe):
    /// captured in memory first, so a capture that fails writes nothing at all, then copied and flushed.
    /// </summary>
    /// <exception cref="InputException">The root has no PCI sysfs, or a link in it escapes the root.</exception>
    /// <exception cref="IOException">The stream cannot be written (a closed pipe).</exception>
    public static Result WriteStream(string root, Stream output)
    {
        ArgumentNullException.ThrowIfNull(output);
        using var ms = new MemoryStream();
        var result = Capture(root, ms);
        ms.Position = 0;
        ms.CopyTo(output);
        output.Flush();
        return result;
    }

    /// <summary>Captures <paramref name="root"/> into <paramref name="output"/> (gzip'd tar).</summary>
    public static Result Capture(string root, Stream output)
    {
        var tree = new DirectoryFileTree(root, root == "/" ? MachineSource.LiveHostOrigin : root);
        var members = new SortedDictionary<string, Member>(StringComparer.Ordinal);
        var warnings = new LoadWarnings();
        var names = tree.List(SysfsReader.DevicesDir)
            ?? throw InputException.At(tree.Origin, $"nothing to capture: there is no {SysfsReader.DevicesDir} directory");

        AddFile(tree, members, SysfsReader.CmdlineFile, SourceLimits.MaxAttributeBytes, warnings);
        AddFile(tree, members, SysfsReader.OsReleaseFile, SourceLimits.MaxAttributeBytes, warnings);
        AddDirectory(members, SysfsReader.DevicesDir);

        int devices = 0;
        var deviceDirs = new List<string>();
        foreach (var name in names)
        {
            if (!PciAddress.TryParse(name, out _)) continue;
            string entry = $"{SysfsReader.DevicesDir}/{name}";
            if (!AddLink(tree, members, entry, warnings)) continue;
            string? dir = tree.Resolve(entry);
            if (dir is null || !tree.IsDirectory(dir))
            {
                warnings.Add($"{entry}: does not lead to a device directory; left out");
                continue;
            }
            devices++;
            deviceDirs.Add(dir);
            AddDirectory(members, dir);
            foreach (var f in DeviceFiles) AddFile(tree, members, $"{dir}/{f}", f == "config" ? ConfigSpace.ExtendedSize : SourceLimits.MaxAttributeBytes, warnings);
            foreach (var l in DeviceLinks) AddLink(tree, members, $"{dir}/{l}", warnings);
            // The driver's directory lists the device too (sys/bus/pci/drivers/<drv>/<BDF>), as on the host.
            if (tree.ReadLinkName($"{dir}/driver") is { } drv)
                AddLink(tree, members, $"sys/bus/pci/drivers/{drv}/{name}", warnings);
        }

        if (tree.List(SysfsReader.GroupsDir) is { } groups)
        {
            AddDirectory(members, SysfsReader.GroupsDir);
            foreach (var g in groups)
            {
                string gdir = $"{SysfsReader.GroupsDir}/{g}";
                if (!tree.IsDirectory(gdir)) continue;
                AddDirectory(members, gdir);
                AddFile(tree, members, $"{gdir}/type", SourceLimits.MaxAttributeBytes, warnings);
                AddFile(tree, members, $"{gdir}/reserved_regions", SourceLimits.MaxAttributeBytes, warnings);
                AddFile(tree, members, $"{gdir}/name", SourceLimits.MaxAttributeBytes, warnings);
                AddDirectory(members, $"{gdir}/devices");
                foreach (var d in tree.List($"{gdir}/devices") ?? [])
                {
                    if (PciAddress.TryParse(d, out _)) AddLink(tree, members, $"{gdir}/devices/{d}", warnings);
                }
            }
        }

        AddDirectory(members, SysfsReader.IommuClassDir);
        foreach (var u in tree.List(SysfsReader.IommuClassDir) ?? [])
        {
            string entry = $"{SysfsReader.IommuClassDir}/{u}";
            if (!AddLink(tree, members, entry, warnings)) continue;
            string? udir = tree.Resolve(entry);
            if (udir is null || !tree.IsDirectory(udir)) continue;
            AddDirectory(members, udir);
            foreach (var reg in SysfsReader.UnitRegisterFiles) AddFile(tree, members, $"{udir}/{reg}", SourceLimits.MaxAttributeBytes, warnings);
            AddDirectory(members, $"{udir}/devices");
            foreach (var d in tree.List($"{udir}/devices") ?? [])
            {
                if (PciAddress.TryParse(d, out _)) AddLink(tree, members, $"{udir}/devices/{d}", warnings);
            }
        }

        foreach (var s in tree.List(SysfsReader.SlotsDir) ?? [])
            AddFile(tree, members, $"{SysfsReader.SlotsDir}/{s}/address", SourceLimits.MaxAttributeBytes, warnings);

        AddFirmware(tree, members, deviceDirs, warnings);
        AddHostUses(tree, members, warnings);
        WriteTarGz(members, output);
        return new Result(devices, members.Count, warnings.ToList());
    }

    /// <summary>
    /// The firmware facts the kernel's IOMMU setup reads: the DMAR/IVRS/IORT tables (root only: an unreadable one is
    /// left out with a note) and each root bus's <c>firmware_node</c> link with the ACPI device's <c>path</c>.
    /// </summary>
    private static void AddFirmware(FileTree tree, SortedDictionary<string, Member> members, List<string> deviceDirs, LoadWarnings warnings)
    {
        int captured = 0, unreadable = 0;
        foreach (var name in Acpi.FirmwareSysfs.TableNames)
        {
            string path = $"{Acpi.FirmwareSysfs.TablesDir}/{name}";
            if (tree.Lstat(path) != FileNodeKind.File) continue;
            byte[]? data;
            try { data = tree.ReadBytes(path, Acpi.AcpiTableReader.MaxTableBytes); }
            catch (FileReadException) { unreadable++; continue; } // mode 0400: root only
            if (data is null || data.Length == 0) { unreadable++; continue; }
            if (data.Length > Acpi.AcpiTableReader.MaxTableBytes)
            {
                warnings.Add($"{path}: larger than the {Acpi.AcpiTableReader.MaxTableBytes}-byte cap; left out");
                continue;
            }
            AddParent(members, path);
            members[path] = new Member(Kind.File, data);
            captured++;
        }
        if (unreadable > 0)
            warnings.AddSummary($"{Acpi.FirmwareSysfs.TablesDir}: {unreadable} IOMMU table(s) readable by root only were left out; capture as root so the unit scopes and order come from the firmware");
        else if (captured == 0 && tree.IsDirectory("sys/firmware"))
            warnings.AddSummary($"{Acpi.FirmwareSysfs.TablesDir}: no DMAR, IVRS or IORT table on this host");
        foreach (var rb in Acpi.FirmwareSysfs.RootBusDirectories(deviceDirs))
        {
            if (!AddLink(tree, members, $"{rb}/firmware_node", warnings)) continue;
            if (tree.Resolve($"{rb}/firmware_node") is { } node && tree.IsDirectory(node))
            {
                AddDirectory(members, node);
                AddFile(tree, members, $"{node}/path", SourceLimits.MaxAttributeBytes, warnings);
            }
        }
    }

    /// <summary>
    /// The files <see cref="HostUseReader"/> reads (issue 10: mount and swap tables, default routes, the block, network
    /// and input devices they lead to, <c>boot_vga</c>, <c>fb0</c>): the reader runs over a <see cref="RecordingFileTree"/>
    /// and everything it looked at is stored, so the snapshot answers exactly as the host did. Of the mount table only
    /// the lines of <c>/</c>, <c>/boot</c>, <c>/boot/efi</c> and swap files' file systems are kept, of the route tables
    /// only the default routes: the rest says nothing about the devices and much about the host.
    /// </summary>
    private static void AddHostUses(DirectoryFileTree tree, SortedDictionary<string, Member> members, LoadWarnings warnings)
    {
        var rec = new RecordingFileTree(tree, absoluteLinksFromRoot: true);
        if (HostUseReader.Read(rec, _ => true, live: false, warnings) is null) return;
        string? swaps = rec.Seen.FirstOrDefault(kv => kv.Key.EndsWith("/swaps", StringComparison.Ordinal) && kv.Value is not null).Value is { } sw
            ? System.Text.Encoding.UTF8.GetString(sw) : null;
        foreach (var (seen, data) in rec.Seen)
        {
            string path = SelfNotPid(seen);
            if (data is null) { AddDirectory(members, path); continue; }
            byte[] kept = data;
            string text() => System.Text.Encoding.UTF8.GetString(data);
            if (path.EndsWith("/mountinfo", StringComparison.Ordinal)) kept = System.Text.Encoding.UTF8.GetBytes(HostUseReader.KeepMountLines(text(), swaps));
            else if (path.EndsWith("/net/route", StringComparison.Ordinal)) kept = System.Text.Encoding.UTF8.GetBytes(HostUseReader.KeepRouteLines(text(), v6: false));
            else if (path.EndsWith("/net/ipv6_route", StringComparison.Ordinal)) kept = System.Text.Encoding.UTF8.GetBytes(HostUseReader.KeepRouteLines(text(), v6: true));
            AddParent(members, path);
            members[path] = new Member(Kind.File, kept);
        }
        foreach (var link in rec.Links)
        {
            // proc/self is stored as the directory it leads to (below), so two snapshots of one host do not differ by a pid.
            if (link == "proc/self") continue;
            string name = SelfNotPid(link);
            if (name == link) AddLink(tree, members, link, warnings);
            else if (tree.ReadLink(link) is { } t && !t.StartsWith('/') && !t.Contains("..", StringComparison.Ordinal))
            {
                AddParent(members, name);
                members[name] = new Member(Kind.Symlink, Link: t);
            }
        }
    }

    /// <summary><c>proc/PID/...</c> (where <c>proc/self</c> led the reader) as <c>proc/self/...</c>.</summary>
    private static string SelfNotPid(string path)
    {
        if (!path.StartsWith("proc/", StringComparison.Ordinal)) return path;
        int end = path.IndexOf('/', 5);
        string pid = end < 0 ? path[5..] : path[5..end];
        if (pid.Length == 0 || !pid.All(char.IsAsciiDigit)) return path;
        return "proc/self" + (end < 0 ? "" : path[end..]);
    }

    private static void AddDirectory(SortedDictionary<string, Member> members, string path)
    {
        // Every ancestor is a directory member too, so the archive extracts and reads without implied directories.
        int i = 0;
        while (true)
        {
            int slash = path.IndexOf('/', i);
            string dir = slash < 0 ? path : path[..slash];
            if (!members.ContainsKey(dir)) members[dir] = new Member(Kind.Directory);
            if (slash < 0) break;
            i = slash + 1;
        }
    }

    private static void AddParent(SortedDictionary<string, Member> members, string path)
    {
        int slash = path.LastIndexOf('/');
        if (slash > 0) AddDirectory(members, path[..slash]);
    }

    private static void AddFile(FileTree tree, SortedDictionary<string, Member> members, string path, int max, LoadWarnings warnings)
    {
        if (tree.Lstat(path) != FileNodeKind.File) return;
        byte[]? data;
        try { data = tree.ReadBytes(path, max); }
        catch (FileReadException ex)
        {
            // A FIFO, a socket or an unreadable file is left out of the capture and said so; never read as empty.
            warnings.Add($"{ex.Message}; left out");
            return;
        }
        if (data is null) return;
        if (data.Length > max) data = data[..max];
        AddParent(members, path);
        members[path] = new Member(Kind.File, data);
    }

    /// <summary>Copies a symlink's text when it is relative and stays inside the root; false when not a link.</summary>
    private static bool AddLink(FileTree tree, SortedDictionary<string, Member> members, string path, LoadWarnings warnings)
    {
        string? target = tree.ReadLink(path);
        if (target is null) return false;
        int depth = 0;
        foreach (char c in path) if (c == '/') depth++;
        bool ok = target.Length > 0 && target[0] != '/';
        if (ok)
        {
            foreach (var part in target.Split('/'))
            {
                if (part.Length == 0 || part == ".") continue;
                depth += part == ".." ? -1 : 1;
                if (depth < 0) { ok = false; break; }
            }
        }
        if (!ok)
        {
            warnings.Add($"{path}: link to '{target}' is absolute or leaves the root; left out");
            return false;
        }
        AddParent(members, path);
        members[path] = new Member(Kind.Symlink, Link: target);
        return true;
    }

    private static void WriteTarGz(SortedDictionary<string, Member> members, Stream output)
    {
        // Determinism: no names or times in the gzip header (GZipStream writes MTIME 0 and no FNAME), sorted members,
        // fixed modes, times 0, uid/gid 0 (oracle README "Snapshot layout").
        using var gz = new GZipStream(output, CompressionLevel.SmallestSize, leaveOpen: true);
        using var tar = new TarWriter(gz, TarEntryFormat.Gnu, leaveOpen: true);
        foreach (var (name, m) in members)
        {
            GnuTarEntry e;
            switch (m.Kind)
            {
                case Kind.Directory:
                    e = new GnuTarEntry(TarEntryType.Directory, name + "/") { Mode = (UnixFileMode)0b111_101_101 };
                    break;
                case Kind.Symlink:
                    e = new GnuTarEntry(TarEntryType.SymbolicLink, name) { LinkName = m.Link!, Mode = (UnixFileMode)0b111_111_111 };
                    break;
                default:
                    string leaf = name[(name.LastIndexOf('/') + 1)..];
                    e = new GnuTarEntry(TarEntryType.RegularFile, name)
                    {
                        Mode = leaf is "config" or "type" ? (UnixFileMode)0b110_100_100 : (UnixFileMode)0b100_100_100,
                        DataStream = new MemoryStream(m.Data!, writable: false),
                    };
                    break;
            }
            e.ModificationTime = DateTimeOffset.UnixEpoch;
            e.AccessTime = DateTimeOffset.UnixEpoch;
            e.ChangeTime = DateTimeOffset.UnixEpoch;
            e.Uid = 0;
            e.Gid = 0;
            e.UserName = "root";
            e.GroupName = "root";
            tar.WriteEntry(e);
        }
    }
}
