using System.Globalization;
using IommuKit.Pci;

namespace IommuKit.Sources;

/// <summary>
/// The one place a device's names are chosen: the source's own names when it has them (an <c>lspci -nn</c> dump's
/// header line, "<c>Class [cccc]: Vendor Device [vvvv:dddd]</c>", kept in <see cref="PciDeviceFacts.Description"/>,
/// also by a JSON machine exported from one), so a report names devices exactly as the user's lspci did; pci.ids
/// otherwise. lspci's own placeholders for what its database lacked ("<c>Intel Corporation Device</c>",
/// "<c>Class</c>") give way to pci.ids when it knows better.
/// </summary>
public static class DeviceNames
{
    /// <summary>"Vendor Device": the source's, else pci.ids' (or "Vendor Device" when only the vendor is known), else null.</summary>
    public static string? Name(PciDevice device, PciIds ids)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(ids);
        var fromIds = ids.Name(device.VendorId, device.DeviceId);
        var own = FromDescription(device.Facts.Description, device.VendorId, device.DeviceId).Name;
        if (own is null) return fromIds;
        // lspci prints "Vendor Device" (or "Device") for an id its database lacked: a known name is better.
        bool placeholder = own == "Device" || own.EndsWith(" Device", StringComparison.Ordinal);
        return placeholder && ids.Device(device.VendorId, device.DeviceId) is not null ? fromIds : own;
    }

    /// <summary>The class name: the source's, else pci.ids' (sub-class, else base class), else null.</summary>
    public static string? ClassName(PciDevice device, PciIds ids)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(ids);
        var own = FromDescription(device.Facts.Description, device.VendorId, device.DeviceId).ClassName;
        return own is null || own == "Class" ? ids.Class(device.ClassCode) ?? own : own;
    }

    /// <summary>
    /// Splits an <c>lspci -nn</c> header line ("<c>VGA compatible controller [0300]: NVIDIA Corporation TU116
    /// [GeForce GTX 1660] [10de:2184] (rev a1)</c>") into its class name and "Vendor Device" name; nulls when the text
    /// is not of that shape or names other ids than <paramref name="vendor"/>:<paramref name="deviceId"/> (the hex dump won).
    /// </summary>
    public static (string? ClassName, string? Name) FromDescription(string? description, ushort vendor, ushort deviceId)
    {
        if (string.IsNullOrEmpty(description)) return (null, null);
        // "[cccc]: " ends the class part; pciutils prints it once, before the names.
        int colon = description.IndexOf("]: ", StringComparison.Ordinal);
        if (colon < 6 || description[colon - 5] != '[') return (null, null);
        string className = description[..(colon - 5)].TrimEnd();
        string rest = description[(colon + 3)..];
        string ids = string.Create(CultureInfo.InvariantCulture, $" [{vendor:x4}:{deviceId:x4}]");
        int at = rest.LastIndexOf(ids, StringComparison.OrdinalIgnoreCase);
        string? name = at > 0 ? rest[..at].Trim() : null;
        return (className.Length == 0 ? null : className, string.IsNullOrEmpty(name) ? null : name);
    }
}
