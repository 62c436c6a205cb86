using System.Globalization;
using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>
/// Physical slot names: the one way every answer asks "what slot is this device in, or which slot does this port lead
/// to". Names come from <see cref="Machine.Slots"/> (sysfs <c>bus/pci/slots/NAME/address</c>, lspci's
/// <c>Physical Slot:</c>, a JSON machine's <c>slots</c>); a port whose slot has no recorded name is named <c>#N</c> by its
/// Physical Slot Number (Slot Capabilities bits 31:19, PCIe r6.0 §7.5.3.9, lspci's <c>Slot #N</c>): the number pciehp
/// names a slot by (pciehp_core.c <c>init_slot</c>), marked because firmware's names (ACPI <c>_SUN</c>) can differ.
/// </summary>
public static class PciSlots
{
    /// <summary>
    /// The slot name of <paramref name="device"/>: the slot it sits in (a slot's address names its bus and device number,
    /// drivers/pci/slot.c <c>address_read_file</c>), else, for a bridge or port, the slot on its secondary bus; without a
    /// recorded name, <c>#N</c> from the Physical Slot Number of the slot port above it, else of itself; null when none
    /// of these is known.
    /// </summary>
    public static string? NameOf(Machine machine, PciDevice device)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(device);
        var a = device.Address;
        string? below = null;
        int? secondary = device.IsBridge ? device.Subordinate?.Number ?? device.Facts.BridgeBuses?.Secondary : null;
        foreach (var (name, text) in machine.Slots.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (!TryParseAddress(text, out int domain, out int bus, out int? dev) || domain != a.Domain) continue;
            if (bus == a.Bus && (dev is null || dev == a.Device)) return name;
            if (below is null && secondary == bus) below = name;
        }
        if (below is not null) return below;
        // No recorded name: the Physical Slot Number of the port above a card in its slot, else of the port itself.
        if (device.Parent is { } parent && parent.Subordinate == device.Bus && Psn(parent) is { } up) return up;
        return Psn(device);
    }

    /// <summary><c>#N</c> for a slot port with a non-zero Physical Slot Number, else null.</summary>
    private static string? Psn(PciDevice port) =>
        SlotPort(port) && port.Facts.Pcie!.PhysicalSlot != 0 ? "#" + port.Facts.Pcie.PhysicalSlot.ToString(CultureInfo.InvariantCulture) : null;

    /// <summary>
    /// A PCIe root or downstream port whose Slot Implemented bit is set (its link leads to a slot, not to a device
    /// soldered to the board; PCIe r6.0 §7.5.3.2), or that is hot-plug capable.
    /// </summary>
    public static bool SlotPort(PciDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return device.PcieType is PcieType.RootPort or PcieType.Downstream
            && device.Facts.Pcie is { } p && (p.SlotImplemented || p.HotPlugCapable);
    }

    /// <summary>A port's slot is hot-plug capable (Slot Capabilities bit 6).</summary>
    public static bool HotPlug(PciDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return device.Facts.Pcie is { HotPlugCapable: true };
    }

    /// <summary>
    /// A slot's address text: <c>dddd:bb:dd</c>, or <c>dddd:bb</c> for a slot that covers every device of its bus
    /// (<c>address_read_file</c> prints no device number then).
    /// </summary>
    internal static bool TryParseAddress(string text, out int domain, out int bus, out int? device)
    {
        domain = bus = 0;
        device = null;
        var parts = text.Trim().Split(':');
        if (parts.Length is not (2 or 3)) return false;
        if (!int.TryParse(parts[0], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out domain)
            || !int.TryParse(parts[1], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out bus)) return false;
        if (parts.Length == 2) return true;
        if (!int.TryParse(parts[2], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int d)) return false;
        device = d;
        return true;
    }
}
