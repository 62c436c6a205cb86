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
    /// Writes the snapshot of <paramref name="root"/> to <paramref name="outputPath"/>. The file is created only after
    /// the whole capture succeeded, and only at that path.
    /// </summary>
    /// <param name="overwrite">Replace an existing file; otherwise an existing file is an error.</param>
    /// <exception cref="InputException">The root has no PCI sysfs, or a link in it escapes the root.</exception>
    /// <exception cref="IOException">The output exists (without <paramref name="overwrite"/>) or cannot be written.</exception>
    public static Result WriteFile(string root, string outputPath, bool overwrite)
    {
        using var ms = new MemoryStream();
        var result = Capture(root, ms);
        using (var fs = new FileStream(outputPath, overwrite ? FileMode.Create : FileMode.CreateNew, FileAccess.Write, FileShare.None))
        {
            ms.Position = 0;
            ms.CopyTo(fs);
        }
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

        AddFile(tree, members, SysfsReader.CmdlineFile, SourceLimits.MaxAttributeBytes);
        AddFile(tree, members, SysfsReader.OsReleaseFile, SourceLimits.MaxAttributeBytes);
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
            foreach (var f in DeviceFiles) AddFile(tree, members, $"{dir}/{f}", f == "config" ? ConfigSpace.ExtendedSize : SourceLimits.MaxAttributeBytes);
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
                AddFile(tree, members, $"{gdir}/type", SourceLimits.MaxAttributeBytes);
                AddFile(tree, members, $"{gdir}/reserved_regions", SourceLimits.MaxAttributeBytes);
                AddFile(tree, members, $"{gdir}/name", SourceLimits.MaxAttributeBytes);
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
            foreach (var reg in SysfsReader.UnitRegisterFiles) AddFile(tree, members, $"{udir}/{reg}", SourceLimits.MaxAttributeBytes);
            AddDirectory(members, $"{udir}/devices");
            foreach (var d in tree.List($"{udir}/devices") ?? [])
            {
                if (PciAddress.TryParse(d, out _)) AddLink(tree, members, $"{udir}/devices/{d}", warnings);
            }
        }

        foreach (var s in tree.List(SysfsReader.SlotsDir) ?? [])
            AddFile(tree, members, $"{SysfsReader.SlotsDir}/{s}/address", SourceLimits.MaxAttributeBytes);

        AddFirmware(tree, members, deviceDirs, warnings);
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
            var data = tree.ReadBytes(path, Acpi.AcpiTableReader.MaxTableBytes);
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
                AddFile(tree, members, $"{node}/path", SourceLimits.MaxAttributeBytes);
            }
        }
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

    private static void AddFile(FileTree tree, SortedDictionary<string, Member> members, string path, int max)
    {
        if (tree.Lstat(path) != FileNodeKind.File) return;
        var data = tree.ReadBytes(path, max);
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
