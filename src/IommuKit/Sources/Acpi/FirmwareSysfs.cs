using System.Globalization;
using IommuKit.Pci;

namespace IommuKit.Sources.Acpi;

/// <summary>
/// Where a host (or a snapshot of it) keeps the firmware facts the kernel's IOMMU setup reads: the raw ACPI tables
/// <c>sys/firmware/acpi/tables/{DMAR,IVRS,IORT}</c> (mode 0400: root only) and, per PCI root bus directory
/// (<c>sys/devices/pci0000:40</c>), the <c>firmware_node</c> link to the ACPI host bridge device
/// (<c>…/LNXSYBUS:00/PNP0A08:01</c>) whose <c>path</c> file holds its namespace path (<c>\_SB_.S0D1</c>).
/// </summary>
internal static class FirmwareSysfs
{
    public const string TablesDir = "sys/firmware/acpi/tables";

    /// <summary>The tables read, in this order.</summary>
    public static readonly string[] TableNames = ["DMAR", "IVRS", "IORT"];

    /// <summary>The root-bus directories (<c>…/pciDDDD:BB</c>) on the way to each device directory, each once, in first-seen order.</summary>
    public static List<string> RootBusDirectories(IEnumerable<string> deviceDirs)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var list = new List<string>();
        foreach (var dir in deviceDirs)
        {
            int start = 0;
            while (start < dir.Length)
            {
                int slash = dir.IndexOf('/', start);
                int end = slash < 0 ? dir.Length : slash;
                if (TryParseRootBus(dir.AsSpan(start, end - start), out _, out _) && seen.Add(dir[..end])) list.Add(dir[..end]);
                start = end + 1;
            }
        }
        return list;
    }

    /// <summary>Parses a root-bus directory name <c>pciDDDD:BB</c> (the kernel's <c>pci_create_root_bus</c> names it <c>pci%04x:%02x</c>).</summary>
    public static bool TryParseRootBus(ReadOnlySpan<char> name, out int domain, out byte bus)
    {
        domain = 0; bus = 0;
        if (!name.StartsWith("pci", StringComparison.Ordinal)) return false;
        var rest = name[3..];
        int colon = rest.IndexOf(':');
        return colon is >= 4 and <= 8 && rest.Length - colon - 1 == 2 &&
               int.TryParse(rest[..colon], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out domain) && domain >= 0 &&
               byte.TryParse(rest[(colon + 1)..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out bus);
    }

    /// <summary>
    /// Reads the tables and host bridges. A table that is present but empty (an unprivileged read of a 0400 file) or
    /// that does not decode is left out with a warning.
    /// </summary>
    public static (FirmwareTables Tables, List<HostBridgeFirmware> HostBridges) Read(FileTree tree, IEnumerable<string> deviceDirs, LoadWarnings warnings)
    {
        DmarTable? dmar = null; IvrsTable? ivrs = null; IortTable? iort = null;
        var tableWarnings = new List<string>();
        foreach (var name in TableNames)
        {
            string path = $"{TablesDir}/{name}";
            var bytes = tree.ReadBytes(path, AcpiTableReader.MaxTableBytes);
            if (bytes is null) continue;
            if (bytes.Length == 0)
            {
                warnings.Add($"{path}: empty (the table is readable by root only): the kernel's unit scopes and order are inferred instead");
                continue;
            }
            try
            {
                switch (name)
                {
                    case "DMAR": dmar = AcpiTableReader.ReadDmar(bytes, path, tableWarnings); break;
                    case "IVRS": ivrs = AcpiTableReader.ReadIvrs(bytes, path, tableWarnings); break;
                    default: iort = AcpiTableReader.ReadIort(bytes, path, tableWarnings); break;
                }
            }
            catch (InputException e)
            {
                warnings.Add($"{e.Message}; table left out");
            }
        }
        foreach (var w in tableWarnings) warnings.Add(w);
        // No table at all says nothing wrong (older snapshots, QEMU captures, Device Tree hosts); where the order then
        // rests on inference, the groups' numbers_predictable flag says so.
        var bridges = new List<HostBridgeFirmware>();
        foreach (var rb in RootBusDirectories(deviceDirs))
        {
            int slash = rb.LastIndexOf('/');
            if (!TryParseRootBus(rb.AsSpan(slash + 1), out int domain, out byte bus)) continue;
            string? node = tree.ReadLinkName($"{rb}/firmware_node");
            if (node is null) continue;
            bridges.Add(new HostBridgeFirmware(domain, bus, node, tree.ReadText($"{rb}/firmware_node/path")));
        }
        bridges.Sort(HostBridgeFirmware.NamespaceOrder);
        return (new FirmwareTables(dmar, ivrs, iort), bridges);
    }
}
