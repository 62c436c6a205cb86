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
    /// fall back like lib/names.c; an lspci dump's own names come first (<see cref="DeviceNames"/>): <c>Class [cccc]</c>, <c>Device [vvvv:dddd]</c>, <c>Vendor Device [vvvv:dddd]</c>.
    /// The revision is printed only when non-zero; the prog-if only with -v, so never here.
    /// </summary>
    public static string LspciNns(PciDevice d, PciIds ids)
    {
        var cls = (ushort)(d.ClassCode >> 8);
        var className = DeviceNames.ClassName(d, ids);
        string idPair = string.Create(CultureInfo.InvariantCulture, $"{d.VendorId:x4}:{d.DeviceId:x4}");
        string name = DeviceNames.Name(d, ids) is { } n ? $"{n} [{idPair}]" : $"Device [{idPair}]";
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

    /// <summary>"Vendor Device": the lspci dump's own name, else pci.ids' (<see cref="DeviceNames.Name"/>), or null.</summary>
    public static string? Name(PciDevice d, PciIds ids) => DeviceNames.Name(d, ids);

    /// <summary>
    /// The lines <c>lspci -k</c> prints below a device: <c>Kernel driver in use: X</c> (when bound) and
    /// <c>Kernel modules: a, b</c> (when the source lists them).
    /// </summary>
    public static void WriteKernelLines(TextWriter w, Style s, PciDevice d, string indent)
    {
        if (d.Driver is not null) w.WriteLine($"{indent}Kernel driver in use: {s.Good(d.Driver)}");
        if (d.Facts.KernelModules.Count > 0) w.WriteLine($"{indent}Kernel modules: {string.Join(", ", d.Facts.KernelModules)}");
    }
}
