using System.Globalization;

namespace IommuKit.Sources;

/// <summary>
/// The ids a PCI function's sysfs <c>uevent</c> file states: drivers/pci/pci-driver.c <c>pci_uevent</c> prints
/// <c>PCI_CLASS=%04X</c>, <c>PCI_ID=%04X:%04X</c> and <c>PCI_SUBSYS_ID=%04X:%04X</c> from the same <c>struct pci_dev</c>
/// fields (<c>class</c>, <c>vendor</c>, <c>device</c>, <c>subsystem_vendor</c>, <c>subsystem_device</c>) that the
/// <c>class</c>, <c>vendor</c>, <c>device</c> and <c>subsystem_*</c> attributes print (drivers/pci/pci-sysfs.c), so one
/// file answers for five: on a live host each is an open, a read and a close.
/// </summary>
/// <remarks>
/// The revision is not in it (the <c>revision</c> attribute stays the source). The bound driver is: drivers/base/core.c
/// <c>dev_uevent</c> prints <c>DRIVER=%s</c> from <c>dev->driver->name</c> whenever a driver is bound, and the
/// <c>driver</c> link (drivers/base/dd.c <c>driver_sysfs_add</c>) points at the driver's directory, which
/// drivers/base/bus.c <c>bus_add_driver</c> names with the same <c>drv->name</c>. A <c>uevent</c> with no
/// <c>DRIVER=</c> line says nothing here (<see cref="Driver"/> is null) and the caller reads the link, as for a tree
/// whose <c>uevent</c> files were written without that line.
/// </remarks>
internal readonly record struct PciUevent(ushort VendorId, ushort DeviceId, ushort SubsystemVendorId, ushort SubsystemDeviceId, uint ClassCode,
    string? Driver = null)
{
    /// <summary>The name of the file in a device directory.</summary>
    public const string FileName = "uevent";

    /// <summary>
    /// Reads the three PCI lines of a <c>uevent</c> text and its <c>DRIVER=</c> line if any (other lines are
    /// ignored): false when any PCI line is missing, any of the four is given twice, or a PCI line is not what
    /// <c>pci_uevent</c> prints (hex, <c>XXXX:XXXX</c> for the pairs, a class of at most 24 bits), so a file that is
    /// not the kernel's leaves the caller reading the attributes one by one. The driver name is taken as written; the
    /// caller checks it names a driver.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<char> text, out PciUevent ids)
    {
        ids = default;
        uint? cls = null;
        (ushort, ushort)? id = null, subsys = null;
        ReadOnlySpan<char> driver = default;
        bool hasDriver = false;
        foreach (var raw in text.EnumerateLines())
        {
            var line = raw.TrimEnd('\r');
            int eq = line.IndexOf('=');
            if (eq < 0) continue;
            var key = line[..eq];
            var value = line[(eq + 1)..];
            if (key.SequenceEqual("PCI_CLASS"))
            {
                if (cls is not null || !TryHex(value, 6, out uint c)) return false;
                cls = c;
            }
            else if (key.SequenceEqual("PCI_ID"))
            {
                if (id is not null || !TryPair(value, out var p)) return false;
                id = p;
            }
            else if (key.SequenceEqual("PCI_SUBSYS_ID"))
            {
                if (subsys is not null || !TryPair(value, out var p)) return false;
                subsys = p;
            }
            else if (key.SequenceEqual("DRIVER"))
            {
                if (hasDriver) return false;
                hasDriver = true;
                driver = value;
            }
        }
        if (cls is null || id is null || subsys is null) return false;
        ids = new PciUevent(id.Value.Item1, id.Value.Item2, subsys.Value.Item1, subsys.Value.Item2, cls.Value,
            hasDriver ? driver.ToString() : null);
        return true;
    }

    private static bool TryPair(ReadOnlySpan<char> value, out (ushort, ushort) pair)
    {
        pair = default;
        if (value.Length != 9 || value[4] != ':') return false;
        if (!TryHex(value[..4], 4, out uint a) || !TryHex(value[5..], 4, out uint b)) return false;
        pair = ((ushort)a, (ushort)b);
        return true;
    }

    // Hex digits only (no sign, prefix or blanks: uint.TryParse with AllowHexSpecifier takes none of them), 1 to
    // maxDigits of them.
    private static bool TryHex(ReadOnlySpan<char> s, int maxDigits, out uint value)
    {
        value = 0;
        return s.Length > 0 && s.Length <= maxDigits
            && uint.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}
