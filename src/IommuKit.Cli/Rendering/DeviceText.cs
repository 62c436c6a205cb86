using System.Globalization;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Rendering;

/// <summary>Device descriptions in the shapes users know from pciutils.</summary>
internal static class DeviceText
{
    /// <summary>
    /// The body of an <c>lspci -nns ADDR</c> line after the address, as pciutils' <c>show_terse</c> prints it with
    /// <c>PCI_LOOKUP_MIXED</c> names: <c>PCI bridge [0604]: Intel Corporation Device [8086:1901] (rev 07)</c>. Unknown names
    /// fall back like lib/names.c: <c>Class [cccc]</c>, <c>Device [vvvv:dddd]</c>, <c>Vendor Device [vvvv:dddd]</c>.
    /// The revision is printed only when non-zero; the prog-if only with -v, so never here.
    /// </summary>
    public static string LspciNns(PciDevice d, PciIds ids)
    {
        var cls = (ushort)(d.ClassCode >> 8);
        var className = ids.Class(d.ClassCode);
        var vendor = ids.Vendor(d.VendorId);
        var device = ids.Device(d.VendorId, d.DeviceId);
        string idPair = string.Create(CultureInfo.InvariantCulture, $"{d.VendorId:x4}:{d.DeviceId:x4}");
        string name = vendor is not null && device is not null ? $"{vendor} {device} [{idPair}]"
            : vendor is not null ? $"{vendor} Device [{idPair}]"
            : $"Device [{idPair}]";
        string text = string.Create(CultureInfo.InvariantCulture, $"{className ?? "Class"} [{cls:x4}]: {name}");
        byte rev = d.Facts.Revision;
        return rev != 0 ? string.Create(CultureInfo.InvariantCulture, $"{text} (rev {rev:x2})") : text;
    }

    /// <summary>The full <c>lspci -nns</c> line: the address as lspci prints it (domain only when non-zero), then the body.</summary>
    public static string LspciNnsLine(PciDevice d, PciIds ids) => $"{d.Address.ToShortString()} {LspciNns(d, ids)}";

    /// <summary><c>0x10de</c>-style hex used in JSON, matching the sysfs files.</summary>
    public static string Hex4(ushort v) => string.Create(CultureInfo.InvariantCulture, $"0x{v:x4}");

    /// <summary><c>0x030000</c>: the sysfs <c>class</c> file's text.</summary>
    public static string Hex6(uint v) => string.Create(CultureInfo.InvariantCulture, $"0x{v:x6}");

    /// <summary>"Vendor Device" from pci.ids, or the source's own description, or null.</summary>
    public static string? Name(PciDevice d, PciIds ids)
    {
        var v = ids.Vendor(d.VendorId);
        var n = ids.Device(d.VendorId, d.DeviceId);
        if (v is not null && n is not null) return $"{v} {n}";
        return d.Facts.Description ?? (v is not null ? $"{v} Device" : null);
    }
}
