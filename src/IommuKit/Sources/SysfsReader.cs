using System.Globalization;
using System.Runtime.CompilerServices;
using IommuKit.Pci;

namespace IommuKit.Sources;

/// <summary>
/// Reads a machine from a sysfs/procfs tree (a live host at <c>/</c>, a directory root, or a snapshot tarball): the
/// PCI functions under <c>sys/bus/pci/devices</c> and the directories they link to, the kernel's IOMMU groups, the
/// IOMMU units of <c>sys/class/iommu</c>, physical slots, the kernel command line and release.
/// </summary>
/// <remarks>
/// Per device: <c>config</c> is decoded with <see cref="PciDeviceFacts.FromConfig"/>; ids fall back to the
/// <c>vendor</c>/<c>device</c>/<c>class</c>… attributes when <c>config</c> is missing; <c>driver</c>,
/// <c>iommu_group</c> and <c>iommu</c> are links whose last component is the name; the bridge above the device is the
/// parent directory of its realpath (the kernel names device directories after their upstream bridge chain,
/// drivers/pci/probe.c <c>pci_setup_device</c> / <c>device_add</c>). A device whose config cannot be decoded is skipped
/// with a warning naming the file, offset and rule, and the kernel's group that lists it is kept without it.
/// A file that exists but cannot be read (permission denied, a FIFO, EIO) is never read as empty or absent: a warning
/// names it and says what is unknown because of it (an unreadable <c>config</c>: the device is read from its id
/// attributes; an unreadable <c>iommu_groups</c>: the kernel's groups are unknown, not "none"). Text that must be one
/// line (kernel release, command line, names) is escaped with <see cref="TextSafety.Escape"/> as it is read.
/// </remarks>
internal static class SysfsReader
{
    /// <summary>PCI devices directory, relative to the root (<c>/sys/bus/pci/devices</c>).</summary>
    public const string DevicesDir = "sys/bus/pci/devices";
    /// <summary>IOMMU groups directory, relative to the root (<c>/sys/kernel/iommu_groups</c>).</summary>
    public const string GroupsDir = "sys/kernel/iommu_groups";
    /// <summary>IOMMU units directory, relative to the root (<c>/sys/class/iommu</c>).</summary>
    public const string IommuClassDir = "sys/class/iommu";
    /// <summary>PCI slots directory, relative to the root (<c>/sys/bus/pci/slots</c>).</summary>
    public const string SlotsDir = "sys/bus/pci/slots";
    /// <summary>Kernel command line file, relative to the root (<c>/proc/cmdline</c>).</summary>
    public const string CmdlineFile = "proc/cmdline";
    /// <summary>Kernel release file, relative to the root (<c>/proc/sys/kernel/osrelease</c>).</summary>
    public const string OsReleaseFile = "proc/sys/kernel/osrelease";

    /// <summary>Register files of an IOMMU unit, relative to its directory (drivers/iommu/intel/iommu.c, amd/init.c sysfs attributes).</summary>
    public static readonly string[] UnitRegisterFiles =
    [
        "intel-iommu/cap", "intel-iommu/ecap", "intel-iommu/version", "intel-iommu/address",
        "amd-iommu/cap", "amd-iommu/features",
    ];

    /// <summary>Reads the machine.</summary>
    /// <param name="config">
    /// <see cref="ConfigRead.Needed"/>: on a live sysfs (<see cref="FileTree.IsLiveSysfs"/>) each <c>config</c> is read
    /// sparsely (<see cref="ConfigReader"/>), elsewhere whole; <see cref="ConfigRead.Whole"/>: whole everywhere.
    /// </param>
    /// <param name="hooks">Test seams: force the sparse read, see each read.</param>
    /// <exception cref="InputException">No PCI sysfs, or no device could be read at all, or a hostile tree (link escaping the root…).</exception>
    public static Machine Read(FileTree tree, string origin, ConfigRead config = ConfigRead.Needed, ConfigReadHooks? hooks = null)
    {
        var names = tree.List(DevicesDir)
            ?? throw InputException.At(origin, $"not a machine root: there is no {DevicesDir} directory");
        // A live sysfs: the kernel makes every name in it, so its attributes need no type check (TreeDirectory.KernelMade).
        bool live = tree.IsLiveSysfs(DevicesDir);
        bool sparse = config == ConfigRead.Needed && (hooks?.ForceSparse == true || live);
        var onRead = hooks?.OnRead;
        var warnings = new LoadWarnings();
        var slots = ReadSlots(tree, warnings);
        var slotByAddress = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (slot, addr) in slots) slotByAddress.TryAdd(addr, slot);

        var builder = new PciTopologyBuilder { Origin = origin };
        var deviceDirs = new List<string>(names.Count);
        int headerOnly = 0, skipped = 0;
        string? firstSkip = null;
        foreach (var name in names)
        {
            if (!PciAddress.TryParse(name, out var address) || name.Length < 12)
            {
                warnings.Add($"{DevicesDir}/{name}: not a PCI address (expected dddd:bb:dd.f); entry skipped");
                continue;
            }
            string entry = $"{DevicesDir}/{name}";
            // The link resolved inside the tree and its directory opened in one step (FileTree.OpenDirectory): its
            // attributes, links and config are read relative to it, and it is named by its canonical path.
            using var d = tree.OpenDirectory(entry, kernelMade: live, namedCanonical: true);
            if (d is null)
            {
                Skip($"{entry}: the link does not lead to a device directory; device skipped");
                continue;
            }
            string dir = d.Path;
            PciDeviceFacts? facts;
            string? problem;
            try
            {
                facts = ReadDevice(tree, address, d, sparse, onRead, warnings, out problem);
            }
            catch (FileReadException ex)
            {
                facts = null;
                problem = $"{ex.Message}; device skipped";
            }
            if (facts is null)
            {
                Skip(problem!);
                continue;
            }
            if (facts.Visibility == ConfigVisibility.HeaderOnly) headerOnly++;
            deviceDirs.Add(dir);
            if (slotByAddress.TryGetValue(SlotAddress(address), out var s))
                facts = facts with { PhysicalSlot = s };
            builder.Add(facts);
        }
        if (builder.Count == 0 && names.Count > 0)
            throw InputException.At(origin, $"no PCI device could be read ({skipped} skipped; first: {firstSkip})");
        if (headerOnly > 0)
        {
            warnings.AddSummary($"{headerOnly} of {builder.Count} devices show only the 64-byte config header (an unprivileged read): " +
                         "their PCIe type, ACS and other capabilities are unknown, so groups predicted for them are a guess; " +
                         "run as root (or capture a snapshot as root) for the full config space");
        }

        var topology = builder.Build();
        var groups = ReadGroups(tree, warnings, topology);
        var units = ReadUnits(tree, warnings);
        var (firmware, hostBridges) = Acpi.FirmwareSysfs.Read(tree, deviceDirs, warnings);
        var hostUses = HostUseReader.Read(tree, a => topology.TryFind(a, out _), origin == MachineSource.LiveHostOrigin, warnings);
        return new Machine
        {
            Provenance = MachineProvenance.Sysfs,
            Topology = topology,
            Origin = origin,
            KernelRelease = TextSafety.EscapeOrNull(ReadTextTolerant(tree, OsReleaseFile, warnings, "the kernel release is unknown")),
            CommandLine = TextSafety.EscapeOrNull(ReadTextTolerant(tree, CmdlineFile, warnings, "the kernel command line is unknown")),
            IommuUnits = units,
            KernelGroups = groups,
            Slots = slots,
            Firmware = firmware,
            HostBridges = hostBridges,
            HostUses = hostUses,
            Warnings = warnings.ToList(),
        };

        void Skip(string message)
        {
            skipped++;
            firstSkip ??= message;
            warnings.Add(message);
        }
    }

    /// <summary>
    /// <see cref="FileTree.ReadText"/>, but a file that cannot be read is a warning naming it and saying what is
    /// unknown because of it (<paramref name="consequence"/>), and reads as null.
    /// </summary>
    private static string? ReadTextTolerant(FileTree tree, string path, LoadWarnings warnings, string consequence)
    {
        try { return tree.ReadText(path); }
        catch (FileReadException ex)
        {
            warnings.Add($"{ex.Message}: {consequence}");
            return null;
        }
    }

    /// <summary><see cref="ReadTextTolerant(FileTree, string, LoadWarnings, string)"/> of a name in an open directory.</summary>
    private static string? ReadTextTolerant(TreeDirectory dir, string name, LoadWarnings warnings, string consequence)
    {
        try { return dir.ReadText(name); }
        catch (FileReadException ex)
        {
            warnings.Add($"{ex.Message}: {consequence}");
            return null;
        }
    }

    [SkipLocalsInit] // the 4 KiB config buffer is read only as far as the read filled it
    private static PciDeviceFacts? ReadDevice(FileTree tree, PciAddress address, TreeDirectory d, bool sparse,
        Action<string, long, int>? onRead, LoadWarnings warnings, out string? problem)
    {
        problem = null;
        // The attributes, links and (read whole) config below are read relative to the directory, opened once.
        string dir = d.Path;
        string configPath = dir + "/config";
        PciDeviceFacts facts;
        ConfigSpace? cfg = null;
        PciUevent? uevent = null;
        try
        {
            // Room for the cap + 1 bytes, so a longer file shows as one (ConfigSpace keeps its first 4096).
            Span<byte> buffer = stackalloc byte[ConfigSpace.ExtendedSize + 1];
            int length = -1;
            if (sparse)
            {
                // A live host: only the registers the model decodes (ConfigReader; drivers/pci/pci-sysfs.c
                // pci_read_config costs a config access per dword). A file the sparse read does not fit comes back whole.
                var r = ConfigReader.ReadSparse(tree, configPath, address, onRead);
                cfg = r?.Space;
                if (r?.Whole is { } whole)
                {
                    length = Math.Min(whole.Length, buffer.Length);
                    whole.AsSpan(0, length).CopyTo(buffer);
                }
            }
            else
            {
                // Read into the stack: ConfigSpace keeps a copy up to the last non-zero byte, not 4 KiB per function.
                length = d.ReadBytes("config", buffer);
            }
            if (length >= 0)
            {
                if (length < ConfigSpace.UnprivilegedSize)
                {
                    problem = $"{configPath}: offset 0x{length:x}: {address}: config space of {length} bytes is shorter " +
                              $"than the {ConfigSpace.UnprivilegedSize}-byte header; device skipped";
                    return null;
                }
                cfg = new ConfigSpace(buffer[..length]);
            }
        }
        catch (FileReadException ex)
        {
            // Not "no capabilities": the device is read from its id attributes, as a header-only view.
            warnings.Add($"{ex.Message}: {address}: its config space is unknown, so it is read from its id attributes (PCIe type and ACS unknown)");
            cfg = null;
        }
        if (cfg is not null)
        {
            facts = PciDeviceFacts.FromConfig(address, cfg, out var error);
            if (error is not null)
            {
                problem = $"{configPath}: {address}: {error}; device skipped";
                return null;
            }
            // sysfs serves root the whole of dev->cfg_size (drivers/pci/pci-sysfs.c pci_read_config) and others only
            // 64 bytes (128 for CardBus). A 256-byte file read as root is therefore the device's entire config space:
            // the kernel found no extended space (pci_cfg_space_size(), e.g. a PCIe function behind a conventional
            // bridge, PCI_BUS_FLAGS_NO_EXTCFG), so there is no ACS to find, not an ACS we could not see.
            if (cfg.Length >= ConfigSpace.ConventionalSize) facts = facts with { Visibility = ConfigVisibility.Full };
            // The id attributes are the kernel's view and win over the raw bytes: an SR-IOV VF's config reads 0xffff
            // for vendor and device, and the kernel fills in the PF's vendor and the SR-IOV VF Device ID
            // (drivers/pci/iov.c pci_iov_add_virtfn / pci_read_vf_config_common); class quirks can rewrite the class.
            // A live host's uevent states the same fields in one file (PciUevent); a snapshot has none and reads them
            // one by one.
            uevent = d.ReadPciUevent();
            facts = uevent is { } ids
                ? facts with
                {
                    VendorId = ids.VendorId,
                    DeviceId = ids.DeviceId,
                    SubsystemVendorId = ids.SubsystemVendorId,
                    SubsystemDeviceId = ids.SubsystemDeviceId,
                    ClassCode = ids.ClassCode,
                }
                : facts with
                {
                    VendorId = (ushort)(d.ReadHex("vendor") ?? facts.VendorId),
                    DeviceId = (ushort)(d.ReadHex("device") ?? facts.DeviceId),
                    SubsystemVendorId = (ushort)(d.ReadHex("subsystem_vendor") ?? facts.SubsystemVendorId),
                    SubsystemDeviceId = (ushort)(d.ReadHex("subsystem_device") ?? facts.SubsystemDeviceId),
                    ClassCode = (uint)((d.ReadHex("class") ?? facts.ClassCode) & 0xffffff),
                };
            facts = facts with { Revision = (byte)(d.ReadHex("revision") ?? facts.Revision) };
        }
        else
        {
            // No config file: only the id attributes are known, nothing about capabilities.
            uevent = d.ReadPciUevent();
            var vendor = uevent?.VendorId ?? d.ReadHex("vendor");
            var device = uevent?.DeviceId ?? d.ReadHex("device");
            var cls = uevent?.ClassCode ?? d.ReadHex("class");
            if (vendor is null || device is null || cls is null)
            {
                problem = $"{dir}: {address}: neither config nor the vendor/device/class attributes are readable; device skipped";
                return null;
            }
            facts = new PciDeviceFacts
            {
                Address = address,
                VendorId = (ushort)vendor.Value,
                DeviceId = (ushort)device.Value,
                ClassCode = (uint)(cls.Value & 0xffffff),
                Revision = (byte)(d.ReadHex("revision") ?? 0),
                SubsystemVendorId = uevent?.SubsystemVendorId ?? (ushort)(d.ReadHex("subsystem_vendor") ?? 0),
                SubsystemDeviceId = uevent?.SubsystemDeviceId ?? (ushort)(d.ReadHex("subsystem_device") ?? 0),
                // Bridges are told by their class (0x0604 PCI-to-PCI, 0x0607 CardBus) when no header byte is visible.
                HeaderLayout = (cls.Value >> 8) == 0x0604 ? 1 : (cls.Value >> 8) == 0x0607 ? 2 : 0,
                Visibility = ConfigVisibility.HeaderOnly,
            };
        }

        // The parent directory of the realpath is the upstream bridge (or pciDDDD:BB for a root bus).
        PciAddress? parent = null;
        int slash = dir.LastIndexOf('/');
        if (slash > 0)
        {
            string up = dir[..slash];
            string upName = up[(up.LastIndexOf('/') + 1)..];
            if (PciAddress.TryParse(upName, out var p)) parent = p;
        }

        int? group = d.ReadLinkNumber("iommu_group");
        string? unit = TextSafety.EscapeOrNull(d.ReadLinkName("iommu"));
        // The uevent's DRIVER= names the bound driver as the link does (PciUevent): one readlink fewer per device.
        string? driver = uevent?.Driver ?? d.ReadLinkName("driver");
        // A driver is one directory name under sys/bus/pci/drivers; a link (or a DRIVER= line) that names none (one
        // resolving to "/", "..") is bad input here, not a crash in the model's bind.
        if (driver is not null && SourceText.DriverNameProblem(driver) is { } bad)
        {
            bool fromUevent = uevent?.Driver is not null;
            throw InputException.At(tree.Origin, $"the {(fromUevent ? "uevent's DRIVER= line" : "driver link")} does not name a driver: {bad}",
                device: dir + (fromUevent ? "/uevent" : "/driver"));
        }
        // drivers/pci/probe.c pci_set_removable(): "removable" exactly when the parent is untrusted or external-facing,
        // the same condition as pci_set_untrusted(), so the attribute carries pdev->untrusted.
        bool untrusted = ReadTextTolerant(d, "removable", warnings, $"{address}: whether it is untrusted is unknown (read as trusted)") == "removable";
        return facts with
        {
            Driver = driver,
            KernelGroup = group,
            IommuUnit = unit,
            ParentHint = parent,
            Untrusted = untrusted,
        };
    }

    /// <summary>
    /// The <c>sys/bus/pci/slots/NAME/address</c> text of the slot holding <paramref name="a"/>: <c>dddd:bb:dd</c>
    /// (drivers/pci/slot.c <c>address_read_file</c>, "%04x:%02x:%02x"), the key of <see cref="Machine.Slots"/>.
    /// </summary>
    internal static string SlotAddress(PciAddress a) =>
        string.Create(CultureInfo.InvariantCulture, $"{a.Domain:x4}:{a.Bus:x2}:{a.Device:x2}");

    // An unreadable id attribute (TreeDirectory.ReadHex) escapes as FileReadException: the device is then skipped with
    // the file named.

    private static Dictionary<string, string> ReadSlots(FileTree tree, LoadWarnings warnings)
    {
        var slots = new Dictionary<string, string>(StringComparer.Ordinal);
        IReadOnlyList<string>? names;
        try { names = tree.List(SlotsDir); }
        catch (FileReadException ex)
        {
            warnings.Add($"{ex.Message}: physical slots are unknown");
            return slots;
        }
        if (names is null) return slots;
        foreach (var name in names)
        {
            string? addr = ReadTextTolerant(tree, $"{SlotsDir}/{name}/address", warnings, "that slot is unknown");
            if (string.IsNullOrEmpty(addr)) continue; // slots without an address (empty hot-plug slots)
            slots[TextSafety.Escape(name)] = TextSafety.Escape(addr);
        }
        return slots;
    }

    /// <summary>
    /// The kernel's groups: null when the directory is absent or cannot be read (unknown, with a warning), empty when
    /// present but empty (IOMMU off). A group listing a device the topology lacks (its config could not be decoded)
    /// is kept without it, with a warning: one bad device never fails the machine.
    /// </summary>
    private static List<KernelGroup>? ReadGroups(FileTree tree, LoadWarnings warnings, PciTopology topology)
    {
        IReadOnlyList<string>? names;
        try { names = tree.List(GroupsDir); }
        catch (FileReadException ex)
        {
            warnings.Add($"{ex.Message}: the kernel's IOMMU groups are unknown (not absent): the groups shown are the model's");
            return null;
        }
        if (names is null) return null;
        bool live = tree.IsLiveSysfs(GroupsDir);
        var groups = new List<KernelGroup>(names.Count);
        foreach (var name in names)
        {
            if (!int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out int id))
            {
                warnings.Add($"{GroupsDir}/{name}: not a group number; entry skipped");
                continue;
            }
            string dir = $"{GroupsDir}/{name}";
            // Its files are read relative to the directory, opened once; a hostile link or a group that is not a
            // directory takes the path-by-path reads, which name the file as before.
            TreeDirectory? open;
            try { open = tree.OpenDirectory(dir, kernelMade: live); }
            catch (InputException) { open = null; }
            using var gd = open;
            string? GroupText(string file, string consequence) => gd is not null
                ? ReadTextTolerant(gd, file, warnings, consequence)
                : ReadTextTolerant(tree, dir + "/" + file, warnings, consequence);
            var regions = new List<ReservedRegionText>();
            if (GroupText("reserved_regions", $"group {id}'s reserved regions are unknown") is { } text)
            {
                int lineNo = 0;
                foreach (var line in text.Split('\n'))
                {
                    lineNo++;
                    if (line.Length == 0) continue;
                    if (TryParseRegion(line, out var r)) regions.Add(r);
                    else warnings.Add($"{dir}/reserved_regions:{lineNo}: '{Trunc(line)}' is not '0xSTART 0xEND type'; line skipped");
                }
            }
            var devices = new List<PciAddress>();
            IReadOnlyList<string>? members;
            try { members = gd is not null ? gd.List("devices") : tree.List(dir + "/devices"); }
            catch (FileReadException ex)
            {
                warnings.Add($"{ex.Message}: group {id}'s devices are unknown; group left out");
                continue;
            }
            foreach (var dev in members ?? [])
            {
                // Groups can hold non-PCI devices (platform devices on ARM); only PCI functions are modelled.
                if (!PciAddress.TryParse(dev, out var a)) continue;
                if (!topology.TryFind(a, out _))
                {
                    warnings.Add($"{dir}/devices/{dev}: group {id} lists {a}, which could not be read (see above); the group is kept without it");
                    continue;
                }
                devices.Add(a);
            }
            devices.Sort();
            string? type = GroupText("type", $"group {id}'s default domain type is unknown");
            string? groupName = GroupText("name", $"group {id}'s name is unknown");
            groups.Add(new KernelGroup(id, TextSafety.EscapeOrNull(type), regions, devices, TextSafety.EscapeOrNull(groupName)));
        }
        groups.Sort((a, b) => a.Id.CompareTo(b.Id));
        return groups;
    }

    /// <summary>Parses one line of <c>reserved_regions</c>: <c>0x%016llx 0x%016llx %s</c> (drivers/iommu/iommu.c iommu_group_show_resv_regions).</summary>
    private static bool TryParseRegion(string line, out ReservedRegionText region)
    {
        region = default;
        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length != 3) return false;
        if (!HexText.TryParsePrefixed(parts[0], out ulong start) || !HexText.TryParsePrefixed(parts[1], out ulong end) || end < start) return false;
        region = new ReservedRegionText(start, end, TextSafety.Escape(parts[2]));
        return true;
    }

    private static List<IommuUnit> ReadUnits(FileTree tree, LoadWarnings warnings)
    {
        var units = new List<IommuUnit>();
        IReadOnlyList<string>? unitNames;
        try { unitNames = tree.List(IommuClassDir); }
        catch (FileReadException ex)
        {
            warnings.Add($"{ex.Message}: the IOMMU units are unknown");
            return units;
        }
        foreach (var name in unitNames ?? [])
        {
            string entry = $"{IommuClassDir}/{name}";
            string? dir = tree.Resolve(entry);
            if (dir is null || !tree.IsDirectory(dir))
            {
                warnings.Add($"{entry}: the link does not lead to a unit directory; unit skipped");
                continue;
            }
            var registers = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var reg in UnitRegisterFiles)
            {
                if (ReadTextTolerant(tree, $"{dir}/{reg}", warnings, $"IOMMU unit {name}'s {reg} register is unknown") is { } v) registers[reg] = TextSafety.Escape(v);
            }
            // The kind: the driver's register directory names it (intel-iommu / amd-iommu, drivers/iommu/intel/iommu.c
            // intel_iommu_groups, amd/init.c amd_iommu_groups); virtio-iommu registers its unit under the virtio device
            // (drivers/iommu/virtio-iommu.c viommu_probe -> iommu_device_sysfs_add(&viommu->iommu, dev, ...)).
            IommuKind kind = tree.IsDirectory(dir + "/intel-iommu") ? IommuKind.Intel
                : tree.IsDirectory(dir + "/amd-iommu") ? IommuKind.Amd
                : IsUnderVirtio(dir) ? IommuKind.Virtio
                : name.StartsWith("smmu", StringComparison.Ordinal) || dir.Contains("smmu", StringComparison.Ordinal) ? IommuKind.ArmSmmu
                : name.StartsWith("dmar", StringComparison.Ordinal) ? IommuKind.Intel
                : name.StartsWith("ivhd", StringComparison.Ordinal) ? IommuKind.Amd
                : IommuKind.Unknown;
            var devices = new List<PciAddress>();
            IReadOnlyList<string>? unitDevices;
            try { unitDevices = tree.List(dir + "/devices"); }
            catch (FileReadException ex)
            {
                warnings.Add($"{ex.Message}: the devices of IOMMU unit {name} are unknown");
                unitDevices = null;
            }
            foreach (var dev in unitDevices ?? [])
            {
                if (PciAddress.TryParse(dev, out var a)) devices.Add(a);
            }
            devices.Sort();
            units.Add(new IommuUnit(TextSafety.Escape(name), kind, devices, registers));
        }
        return units;
    }

    private static bool IsUnderVirtio(string dir)
    {
        foreach (var part in dir.Split('/'))
        {
            if (part.StartsWith("virtio", StringComparison.Ordinal) && part.Length > 6 && char.IsAsciiDigit(part[6])) return true;
        }
        return false;
    }

    private static string Trunc(string s) => s.Length <= 80 ? s : s[..77] + "...";
}
