using System.Text.Json;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Rendering;

/// <summary>
/// The one writer of a device object in every JSON report (docs/json.md, "device object"): the same keys with the
/// same meaning in <c>groups</c>, <c>explain</c>, <c>vfio-check</c>, <c>whatif</c> and <c>devices</c>; <c>devices</c>
/// adds the topology facts. (The JSON machine of <c>export</c> is an input format with its own schema, docs/machine-json.md.)
/// </summary>
internal static class DeviceJson
{
    /// <summary>
    /// Writes one device: address, ids, class, revision, driver, names, physical slot (<paramref name="slot"/>, from
    /// <see cref="Host.PciSlots.NameOf"/>; null when unknown); with
    /// <paramref name="topology"/> also header type, multifunction, PCIe type, parent, bus, bridge buses, ACS,
    /// the kernel's group, IOMMU unit, untrusted and config-space visibility.
    /// </summary>
    public static void Write(Utf8JsonWriter w, PciDevice d, PciIds ids, bool topology, string? slot)
    {
        w.WriteStartObject();
        w.WriteString("address", d.Address.ToString());
        w.WriteString("vendor", DeviceText.Hex4(d.VendorId));
        w.WriteString("device", DeviceText.Hex4(d.DeviceId));
        w.WriteString("class", DeviceText.Hex6(d.ClassCode));
        w.WriteString("revision", $"0x{d.Facts.Revision:x2}");
        JsonOut.NullableString(w, "driver", d.Driver);
        JsonOut.StringArray(w, "kernel_modules", d.Facts.KernelModules);
        JsonOut.NullableString(w, "name", DeviceText.Name(d, ids));
        JsonOut.NullableString(w, "class_name", DeviceNames.ClassName(d, ids));
        JsonOut.NullableString(w, "slot", slot);
        if (topology) WriteTopology(w, d);
        w.WriteEndObject();
    }

    private static void WriteTopology(Utf8JsonWriter w, PciDevice d)
    {
        var f = d.Facts;
        w.WriteNumber("header_type", f.HeaderLayout);
        w.WriteBoolean("multifunction", d.IsMultifunction);
        if (TypeUnknown(f)) w.WriteNull("pcie_type"); else w.WriteString("pcie_type", d.PcieType.ToJsonName());
        JsonOut.NullableString(w, "parent", d.Parent?.Address.ToString());
        w.WriteString("bus", d.Bus.ToString());
        MachineJson.WriteBridgeBuses(w, f.BridgeBuses);
        w.WriteStartObject("acs");
        if (AcsUnknown(d)) w.WriteNull("present"); else w.WriteBoolean("present", d.Acs is not null);
        WriteNames(w, "capability", d.Acs?.Capability);
        WriteNames(w, "control", d.Acs?.Control);
        w.WriteEndObject();
        if (f.KernelGroup is { } g) w.WriteNumber("kernel_group", g); else w.WriteNull("kernel_group");
        JsonOut.NullableString(w, "iommu_unit", f.IommuUnit);
        w.WriteBoolean("untrusted", f.Untrusted);
        w.WriteString("visibility", MachineJson.VisibilityName(f.Visibility));
    }

    private static void WriteNames(Utf8JsonWriter w, string name, AcsFlags? flags)
    {
        if (flags is not { } f) { w.WriteNull(name); return; }
        w.WriteStartArray(name);
        foreach (var n in f.ToNames()) w.WriteStringValue(n);
        w.WriteEndArray();
    }

    /// <summary>The PCIe capability was not visible: only the 64-byte header was (an unprivileged read).</summary>
    public static bool TypeUnknown(PciDeviceFacts f) => f.Pcie is null && f.Visibility == ConfigVisibility.HeaderOnly;

    /// <summary>
    /// No ACS capability was found, but the source could not have shown one: ACS is an extended capability (PCIe r6.0
    /// §7.7.8), so a PCIe function needs its 4 KiB config space visible; for a conventional function only a header-only
    /// read leaves it unknown.
    /// </summary>
    public static bool AcsUnknown(PciDevice d) =>
        d.Acs is null && (d.Facts.Visibility == ConfigVisibility.HeaderOnly || (d.IsPcie && d.Facts.Visibility == ConfigVisibility.NoExtended));
}
