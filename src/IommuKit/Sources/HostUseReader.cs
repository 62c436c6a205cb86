using System.Globalization;
using IommuKit.Pci;

namespace IommuKit.Sources;

/// <summary>
/// Reads what a running host uses its PCI functions for (<see cref="HostUseFacts"/>) from a root: the block devices
/// under <c>/</c>, <c>/boot</c>, <c>/boot/efi</c> and swap, the NIC of the default route, <c>boot_vga</c>, the console
/// framebuffer and the controllers of keyboards. Every path goes through the <see cref="FileTree"/>, so a live host, a
/// directory root and a snapshot are read by the same code (a snapshot records exactly the files this reads).
/// </summary>
/// <remarks>
/// Each use ends at a sysfs device directory whose canonical path names the PCI function above it: the kernel names a
/// device's directory under its parent's (drivers/base/core.c <c>device_add</c>), so the last <c>dddd:bb:dd.f</c>
/// component of <c>/sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1/nvme0n1p2</c> is the
/// function that carries it (NVMe, virtio, AHCI/SCSI hosts, USB mass storage and HID all sit below their controller).
/// Stacked block devices (device-mapper, md) list what they are built on in <c>slaves/</c>; stacked network devices
/// (bridges, bonds, VLANs) in <c>lower_*</c> links (net/core/dev.c <c>netdev_adjacent_sysfs_add</c>). Both walks are
/// capped at <see cref="MaxDepth"/> levels and <see cref="MaxFanOut"/> entries per level.
/// </remarks>
internal static class HostUseReader
{
    /// <summary>The mount table of the reading process (<c>proc/self/mountinfo</c>, proc(5)); its presence says the source carries host uses.</summary>
    public const string MountInfoFile = "proc/self/mountinfo";
    /// <summary>Active swap areas (<c>proc/swaps</c>).</summary>
    public const string SwapsFile = "proc/swaps";
    /// <summary>IPv4 routes (<c>proc/net/route</c>).</summary>
    public const string RouteFile = "proc/net/route";
    /// <summary>IPv6 routes (<c>proc/net/ipv6_route</c>).</summary>
    public const string Route6File = "proc/net/ipv6_route";
    /// <summary>Block devices by name (<c>sys/class/block</c>).</summary>
    public const string BlockClassDir = "sys/class/block";
    /// <summary>Block devices by number (<c>sys/dev/block/MAJ:MIN</c>).</summary>
    public const string BlockByNumberDir = "sys/dev/block";
    /// <summary>Network interfaces (<c>sys/class/net</c>).</summary>
    public const string NetClassDir = "sys/class/net";
    /// <summary>Input devices (<c>sys/class/input</c>).</summary>
    public const string InputClassDir = "sys/class/input";
    /// <summary>The console's framebuffer device link.</summary>
    public const string ConsoleFbDevice = "sys/class/graphics/fb0/device";
    /// <summary>Mount points whose devices are the host's root and boot filesystems.</summary>
    public static readonly string[] MountPoints = ["/", "/boot", "/boot/efi"];
    /// <summary>Levels of stacked devices followed (dm on md on partitions; a VLAN on a bond on a bridge port).</summary>
    public const int MaxDepth = 8;
    /// <summary>Entries of one <c>slaves/</c> or <c>lower_*</c> level, and input devices, read at most.</summary>
    public const int MaxFanOut = 4096;
    /// <summary>Largest mount table or route table read (a container host can mount thousands of file systems).</summary>
    public const int MaxTableBytes = SourceLimits.MaxFileBytes;

    /// <summary>
    /// The host uses <paramref name="tree"/> shows for the functions <paramref name="known"/> accepts, or null when the
    /// source does not carry them (no <see cref="MountInfoFile"/>: an older snapshot).
    /// </summary>
    internal static HostUseFacts? Read(FileTree tree, Func<PciAddress, bool> known, bool live, LoadWarnings warnings)
    {
        string? mountinfo = ReadTable(tree, MountInfoFile, warnings);
        if (mountinfo is null) return null;
        var uses = new List<HostUse>();
        var mounts = ParseMountInfo(mountinfo);
        foreach (var point in MountPoints)
        {
            // The last line for a mount point is the mount on top (an overlay over rootfs, a bind over a mount).
            var m = mounts.LastOrDefault(x => x.MountPoint == point);
            if (m is null) continue;
            var kind = point == "/" ? HostUseKind.RootFs : HostUseKind.BootFs;
            AddBlock(tree, uses, kind, m.Source, BlockDirOf(tree, m), warnings);
        }
        if (ReadTable(tree, SwapsFile, warnings) is { } swaps)
        {
            foreach (var (name, isFile) in ParseSwaps(swaps))
            {
                // A swap file lives on the file system mounted at the longest mount point that is a prefix of its path.
                string? dir = isFile
                    ? mounts.Where(x => IsUnder(name, x.MountPoint)).OrderBy(x => x.MountPoint.Length).LastOrDefault() is { } fs ? BlockDirOf(tree, fs) : null
                    : BlockDirOfDevName(tree, name);
                AddBlock(tree, uses, HostUseKind.Swap, name, dir, warnings);
            }
        }
        foreach (var iface in DefaultRouteInterfaces(tree, warnings))
            AddNet(tree, uses, iface, iface, null, 0);
        ReadVga(tree, uses, warnings);
        if (PciFunctionOf(tree.Resolve(ConsoleFbDevice)) is { } fb) uses.Add(new HostUse(fb, HostUseKind.ConsoleFb, "fb0"));
        ReadKeyboards(tree, uses, warnings);

        var kept = uses.Where(u => known(u.Device)).Distinct()
            .OrderBy(u => u.Kind).ThenBy(u => u.Device).ThenBy(u => u.Detail, StringComparer.Ordinal).ToList();
        return new HostUseFacts(kept, live);
    }

    /// <summary>One line of <c>mountinfo</c>: the block device number, mount point and source (unescaped).</summary>
    internal sealed record Mount(int Major, int Minor, string MountPoint, string Source);

    /// <summary>
    /// Parses <c>mountinfo</c> (proc(5): <c>id parent MAJ:MIN root mountpoint options [optional...] - fstype source superoptions</c>);
    /// lines that do not have that shape are skipped.
    /// </summary>
    internal static List<Mount> ParseMountInfo(string text)
    {
        var mounts = new List<Mount>();
        foreach (var line in text.Split('\n'))
        {
            var f = line.Split(' ');
            if (f.Length < 10) continue;
            int dash = Array.IndexOf(f, "-", 6);
            if (dash < 0 || dash + 2 >= f.Length) continue;
            var mm = f[2].Split(':');
            if (mm.Length != 2 || !int.TryParse(mm[0], NumberStyles.None, CultureInfo.InvariantCulture, out int major)
                || !int.TryParse(mm[1], NumberStyles.None, CultureInfo.InvariantCulture, out int minor)) continue;
            mounts.Add(new Mount(major, minor, Unescape(f[4]), Unescape(f[dash + 2])));
        }
        return mounts;
    }

    /// <summary>The lines of <c>mountinfo</c> a snapshot keeps: those of <see cref="MountPoints"/> and of the file systems holding swap files.</summary>
    internal static string KeepMountLines(string mountinfo, string? swaps)
    {
        var files = swaps is null ? [] : ParseSwaps(swaps).Where(s => s.IsFile).Select(s => s.Name).ToList();
        var kept = new List<string>();
        foreach (var line in mountinfo.Split('\n'))
        {
            var m = ParseMountInfo(line);
            if (m.Count == 1 && (MountPoints.Contains(m[0].MountPoint) || files.Any(f => IsUnder(f, m[0].MountPoint)))) kept.Add(line);
        }
        return kept.Count == 0 ? "" : string.Join('\n', kept) + "\n";
    }

    /// <summary>The lines of a route table a snapshot keeps: the header and the default routes.</summary>
    internal static string KeepRouteLines(string table, bool v6)
    {
        var lines = table.Split('\n');
        var kept = new List<string>();
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            if ((!v6 && i == 0) || DefaultRouteInterface(lines[i], v6) is not null) kept.Add(lines[i]);
        }
        return kept.Count == 0 ? "" : string.Join('\n', kept) + "\n";
    }

    private static bool IsUnder(string path, string mountPoint) =>
        mountPoint == "/" ? path.StartsWith('/') : path == mountPoint || path.StartsWith(mountPoint + "/", StringComparison.Ordinal);

    /// <summary>mountinfo and swaps escape space, tab, newline and backslash as <c>\ooo</c> (fs/proc_namespace.c <c>mangle</c>).</summary>
    private static string Unescape(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new System.Text.StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && IsOctal(s, i + 1))
            {
                sb.Append((char)Convert.ToInt32(s.Substring(i + 1, 3), 8));
                i += 3;
            }
            else sb.Append(s[i]);
        }
        return sb.ToString();

        static bool IsOctal(string s, int at) => at + 3 <= s.Length && s[at] is >= '0' and <= '3' && s[at + 1] is >= '0' and <= '7' && s[at + 2] is >= '0' and <= '7';
    }

    /// <summary><c>/proc/swaps</c>: <c>Filename Type Size Used Priority</c> after a header line.</summary>
    private static List<(string Name, bool IsFile)> ParseSwaps(string text)
    {
        var list = new List<(string, bool)>();
        var lines = text.Split('\n');
        for (int i = 1; i < lines.Length; i++)
        {
            var f = lines[i].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 2) continue;
            list.Add((Unescape(f[0]), f[1] == "file"));
        }
        return list;
    }

    /// <summary>The device directory of a mount: by number when it has a real one (major not 0), else by the source's name.</summary>
    private static string? BlockDirOf(FileTree tree, Mount m)
    {
        if (m.Major != 0 && tree.Resolve($"{BlockByNumberDir}/{m.Major}:{m.Minor}") is { } byNumber) return byNumber;
        // btrfs and other file systems with anonymous device numbers: the source names the device.
        return BlockDirOfDevName(tree, m.Source);
    }

    /// <summary><c>/dev/NAME</c> or <c>/dev/mapper/NAME</c> to its directory in <see cref="BlockClassDir"/>; null for anything else.</summary>
    private static string? BlockDirOfDevName(FileTree tree, string source)
    {
        if (!source.StartsWith("/dev/", StringComparison.Ordinal)) return null;
        string name = source[5..];
        if (name.StartsWith("mapper/", StringComparison.Ordinal))
        {
            // A device-mapper name: the dm-N whose dm/name is it (drivers/md/dm-sysfs.c).
            string want = name[7..];
            foreach (var dev in List(tree, BlockClassDir).Where(n => n.StartsWith("dm-", StringComparison.Ordinal)).Take(MaxFanOut))
                if (tree.ReadText($"{BlockClassDir}/{dev}/dm/name") == want) return tree.Resolve($"{BlockClassDir}/{dev}");
            return null;
        }
        if (name.Contains('/') || name.Length == 0 || name == "." || name == "..") return null;
        return tree.Resolve($"{BlockClassDir}/{name}");
    }

    /// <summary>Adds a use for every PCI function under the block device at <paramref name="dir"/>, through dm/md slaves.</summary>
    private static void AddBlock(FileTree tree, List<HostUse> uses, HostUseKind kind, string detail, string? dir, LoadWarnings warnings)
    {
        if (dir is null) return;
        Walk(dir, null, 0);

        void Walk(string d, string? via, int depth)
        {
            string name = d[(d.LastIndexOf('/') + 1)..];
            IReadOnlyList<string> slaves;
            try { slaves = depth < MaxDepth ? tree.List(d + "/slaves") ?? [] : []; }
            catch (FileReadException ex) { warnings.Add($"{ex.Message}: what {detail} is built on is unknown"); return; }
            if (slaves.Count == 0)
            {
                if (PciFunctionOf(d) is { } f) uses.Add(new HostUse(f, kind, detail, via));
                return;
            }
            foreach (var s in slaves.Take(MaxFanOut))
                if (tree.Resolve($"{d}/slaves/{s}") is { } sd) Walk(sd, (via ?? name) + " -> " + s, depth + 1);
        }
    }

    /// <summary>Interfaces of the default routes (IPv4 and IPv6), in table order, each once.</summary>
    private static List<string> DefaultRouteInterfaces(FileTree tree, LoadWarnings warnings)
    {
        var result = new List<string>();
        foreach (var (file, v6) in new[] { (RouteFile, false), (Route6File, true) })
        {
            if (ReadTable(tree, file, warnings) is not { } table) continue;
            foreach (var line in table.Split('\n'))
                if (DefaultRouteInterface(line, v6) is { } i && !result.Contains(i)) result.Add(i);
        }
        return result;
    }

    /// <summary>
    /// The interface of a default route line, or null: IPv4 (net/ipv4/fib_trie.c <c>fib_route_seq_show</c>) destination
    /// and mask 00000000 with RTF_UP; IPv6 (net/ipv6/route.c <c>rt6_info_seq_show</c>) destination ::/0 with RTF_UP,
    /// not on <c>lo</c> (the kernel's unreachable default lives there).
    /// </summary>
    private static string? DefaultRouteInterface(string line, bool v6)
    {
        var f = line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        if (!v6)
        {
            if (f.Length < 8 || f[1] != "00000000" || f[7] != "00000000") return null;
            if (!uint.TryParse(f[3], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint flags) || (flags & 1) == 0) return null;
            return SafeName(f[0]);
        }
        if (f.Length < 10 || f[0] != new string('0', 32) || f[1] != "00") return null;
        if (!uint.TryParse(f[8], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint fl) || (fl & 1) == 0) return null;
        return f[9] == "lo" ? null : SafeName(f[9]);
    }

    private static string? SafeName(string name) => name.Length is > 0 and <= 64 && !name.Contains('/') && name is not "." and not ".." ? name : null;

    /// <summary>The PCI functions under an interface: its <c>device</c>, else each <c>lower_*</c> interface's.</summary>
    private static void AddNet(FileTree tree, List<HostUse> uses, string detail, string iface, string? via, int depth)
    {
        string dir = $"{NetClassDir}/{iface}";
        if (PciFunctionOf(tree.Resolve(dir + "/device")) is { } f)
        {
            uses.Add(new HostUse(f, HostUseKind.DefaultRoute, detail, via));
            return;
        }
        if (depth >= MaxDepth) return;
        IReadOnlyList<string> names;
        try { names = tree.List(dir) ?? []; }
        catch (FileReadException) { return; }
        foreach (var n in names.Where(n => n.StartsWith("lower_", StringComparison.Ordinal)).Take(MaxFanOut))
        {
            string lower = n[6..];
            if (SafeName(lower) is null || tree.ReadLink($"{dir}/{n}") is null) continue;
            AddNet(tree, uses, detail, lower, (via ?? iface) + " -> " + lower, depth + 1);
        }
    }

    /// <summary>Each VGA function's <c>boot_vga</c> (drivers/pci/pci-sysfs.c <c>boot_vga_show</c>: the VGA arbiter's default device).</summary>
    private static void ReadVga(FileTree tree, List<HostUse> uses, LoadWarnings warnings)
    {
        foreach (var name in List(tree, SysfsReader.DevicesDir))
        {
            if (name.Length != 12 || !PciAddress.TryParse(name, out var a)) continue;
            string dir = $"{SysfsReader.DevicesDir}/{name}";
            try
            {
                // Class 0x0300xx: a VGA-compatible controller, the only class with the attribute (pci_dev_vga_attrs_are_visible).
                if (!(tree.ReadText(dir + "/class") is { } cls && cls.StartsWith("0x0300", StringComparison.Ordinal))) continue;
                if (tree.ReadText(dir + "/boot_vga") == "1") uses.Add(new HostUse(a, HostUseKind.BootVga, "boot_vga"));
            }
            catch (FileReadException ex) { warnings.Add($"{ex.Message}: whether {a} is the boot VGA device is unknown"); }
        }
    }

    /// <summary>
    /// Keyboards: input devices with EV_KEY whose key bitmap has ESC, the digits and Q to D (the first 32 key codes but
    /// KEY_RESERVED), udev's test for a full keyboard (src/udev/udev-builtin-input_id.c <c>test_key</c>).
    /// </summary>
    private static void ReadKeyboards(FileTree tree, List<HostUse> uses, LoadWarnings warnings)
    {
        IReadOnlyList<string> names;
        try { names = tree.List(InputClassDir) ?? []; }
        catch (FileReadException ex) { warnings.Add($"{ex.Message}: which controllers hold a keyboard is unknown"); return; }
        foreach (var n in names.Where(n => n.StartsWith("input", StringComparison.Ordinal)).Take(MaxFanOut))
        {
            string dir = $"{InputClassDir}/{n}";
            try
            {
                if (LowWord(tree.ReadText(dir + "/capabilities/ev")) is not { } ev || (ev & (1UL << 1)) == 0) continue;
                if (LowWord(tree.ReadText(dir + "/capabilities/key")) is not { } key || (key & 0xFFFFFFFEUL) != 0xFFFFFFFEUL) continue;
                if (PciFunctionOf(tree.Resolve(dir)) is not { } f) continue; // a PS/2 keyboard (i8042) sits on no PCI function
                string name = TextSafety.Escape(tree.ReadText(dir + "/name") ?? n);
                uses.Add(new HostUse(f, HostUseKind.Keyboard, name.Length > 80 ? name[..80] : name));
            }
            catch (FileReadException ex) { warnings.Add($"{ex.Message}: whether {n} is a keyboard is unknown"); }
        }
    }

    /// <summary>The lowest word of a sysfs bitmap (space-separated hex words, most significant first; drivers/input/input.c <c>input_print_bitmap</c>).</summary>
    private static ulong? LowWord(string? bitmap)
    {
        if (bitmap is null) return null;
        var words = bitmap.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return words.Length > 0 && ulong.TryParse(words[^1], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var w) ? w : null;
    }

    /// <summary>The last <c>dddd:bb:dd.f</c> component of a canonical sysfs path: the PCI function the device sits under.</summary>
    internal static PciAddress? PciFunctionOf(string? canonicalPath)
    {
        if (canonicalPath is null) return null;
        PciAddress? found = null;
        foreach (var part in canonicalPath.Split('/'))
            if (part.Length == 12 && PciAddress.TryParse(part, out var a)) found = a;
        return found;
    }

    private static IReadOnlyList<string> List(FileTree tree, string dir)
    {
        try { return tree.List(dir) ?? []; }
        catch (FileReadException) { return []; }
    }

    private static string? ReadTable(FileTree tree, string path, LoadWarnings warnings)
    {
        byte[]? bytes;
        try { bytes = tree.ReadBytes(path, MaxTableBytes); }
        catch (FileReadException ex) { warnings.Add($"{ex.Message}: what the host uses its devices for is partly unknown"); return null; }
        if (bytes is null) return null;
        if (bytes.Length > MaxTableBytes)
        {
            warnings.Add($"{path}: longer than the {MaxTableBytes}-byte cap; what the host uses its devices for is partly unknown");
            return null;
        }
        return System.Text.Encoding.UTF8.GetString(bytes);
    }
}
