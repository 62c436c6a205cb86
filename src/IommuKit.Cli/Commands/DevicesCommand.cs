using System.CommandLine;
using System.Text;
using System.Text.Json;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu devices</c>: the PCI topology as a tree (root buses, bridges and ports, endpoints) with each function's
/// ids, class, PCIe type, ACS capability/control and driver; or JSON with one object per function.
/// </summary>
internal static class DevicesCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var json = CommonOptions.Json();
        var command = new Command("devices",
            "Show the PCI topology as a tree: bridges, ports and endpoints with their PCIe type, ACS state " +
            "(capability and control bits; \"ACS unknown\" when the config space was not visible) and driver.\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "ok")) + "\n" + SourceLimits.HelpText)
        {
            source, json,
        };
        command.SetAction(parse => Run(console, parse.GetValue(source), parse.GetValue(json)));
        return command;
    }

    internal static int Run(CliConsole console, string? source, bool json)
    {
        var machine = SourceResolver.Resolve(source, console);
        if (json) WriteJson(console.Out, machine);
        else WriteTree(console, machine);
        return (int)ExitCode.Ok;
    }

    // ------------------------------------------------------------------ text

    internal static void WriteTree(CliConsole console, Machine machine)
    {
        var topo = machine.Topology;
        var o = console.Out;
        o.WriteLine($"{machine.Origin}: {topo.Count} PCI functions" +
                    (machine.KernelRelease is { } k ? $", kernel {k}" : "") +
                    (machine.IommuUnits.Count > 0 ? $", IOMMU {string.Join(", ", machine.IommuUnits.Select(u => $"{u.Name} ({MachineJson.KindName(u.Kind)})"))}" : ", no IOMMU unit"));
        foreach (var root in topo.RootBuses)
        {
            o.WriteLine($"pci{root.Domain:x4}:{root.Number:x2}");
            WriteBus(console, root, "");
        }
    }

    private static void WriteBus(CliConsole console, PciBus bus, string indent)
    {
        // A bus's children: its functions in devfn order, then buses below it that no bridge leads to (SR-IOV VFs).
        var virtualBuses = bus.Children.Where(c => c.Self is null).ToList();
        int count = bus.Devices.Count + virtualBuses.Count;
        int i = 0;
        foreach (var d in bus.Devices)
        {
            bool last = ++i == count;
            console.Out.WriteLine(indent + (last ? "└── " : "├── ") + DeviceLine(console, d));
            if (d.Subordinate is { } sub) WriteBus(console, sub, indent + (last ? "    " : "│   "));
        }
        foreach (var vb in virtualBuses)
        {
            bool last = ++i == count;
            console.Out.WriteLine(indent + (last ? "└── " : "├── ") + $"bus {vb} (virtual, no bridge)");
            WriteBus(console, vb, indent + (last ? "    " : "│   "));
        }
    }

    /// <summary>One device line: <c>0000:00:06.0 [1b36:000c] 0604 Root Port, ACS cap SV|RR ctl none, driver pcieport</c>.</summary>
    internal static string DeviceLine(CliConsole console, PciDevice d)
    {
        var sb = new StringBuilder();
        sb.Append(Paint(console, "1", d.Address.ToString()));
        sb.Append($" [{d.VendorId:x4}:{d.DeviceId:x4}] {d.ClassCode >> 8:x4} ");
        sb.Append(TypeText(d));
        sb.Append(", ").Append(AcsText(console, d));
        sb.Append(", ").Append(d.Driver is { } drv ? $"driver {drv}" : "no driver");
        if (d.Facts.KernelGroup is { } g) sb.Append($", group {g}");
        if (d.Facts.Untrusted) sb.Append(", untrusted");
        return sb.ToString();
    }

    private static string TypeText(PciDevice d)
    {
        if (TypeUnknown(d.Facts)) return "type unknown";
        string t = d.PcieType == PcieType.None ? (d.IsBridge ? "PCI bridge" : "PCI") : d.PcieType.ToDisplayName();
        if (d.Facts.BridgeBuses is { } b) t += $" (buses {b.Secondary:x2}-{b.Subordinate:x2})";
        return t;
    }

    private static string AcsText(CliConsole console, PciDevice d)
    {
        if (d.Acs is { } acs)
        {
            string text = $"ACS cap {acs.Capability.ToShortString()} ctl {acs.Control.ToShortString()}";
            // Green when every bit the IOMMU core requires (REQ_ACS_FLAGS) that the port has is enabled.
            bool enabled = (acs.Control & acs.Capability & AcsFlags.Required) == (acs.Capability & AcsFlags.Required);
            return Paint(console, enabled ? "32" : "33", text);
        }
        return AcsUnknown(d) ? Paint(console, "33", "ACS unknown") : "no ACS";
    }

    /// <summary>The PCIe capability was not visible: only the 64-byte header was (an unprivileged read).</summary>
    private static bool TypeUnknown(PciDeviceFacts f) => f.Pcie is null && f.Visibility == ConfigVisibility.HeaderOnly;

    /// <summary>
    /// No ACS capability was found, but the source could not have shown one: ACS is an extended capability (PCIe r6.0
    /// §7.7.8), so a PCIe function needs its 4 KiB config space visible; for a conventional function only a header-only
    /// read leaves it unknown.
    /// </summary>
    private static bool AcsUnknown(PciDevice d) =>
        d.Acs is null && (d.Facts.Visibility == ConfigVisibility.HeaderOnly || (d.IsPcie && d.Facts.Visibility == ConfigVisibility.NoExtended));

    private static string Paint(CliConsole console, string sgr, string text) =>
        console.Color ? $"\u001b[{sgr}m{text}\u001b[0m" : text;

    // ------------------------------------------------------------------ JSON

    internal static void WriteJson(TextWriter output, Machine machine)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("origin", machine.Origin);
            if (machine.KernelRelease is { } k) w.WriteString("kernel_release", k); else w.WriteNull("kernel_release");
            w.WriteStartArray("devices");
            foreach (var d in machine.Topology.Devices)
            {
                var f = d.Facts;
                w.WriteStartObject();
                w.WriteString("address", d.Address.ToString());
                w.WriteString("vendor", $"0x{d.VendorId:x4}");
                w.WriteString("device", $"0x{d.DeviceId:x4}");
                w.WriteString("class", $"0x{d.ClassCode:x6}");
                w.WriteNumber("header_type", f.HeaderLayout);
                w.WriteBoolean("multifunction", d.IsMultifunction);
                if (TypeUnknown(f)) w.WriteNull("pcie_type");
                else w.WriteString("pcie_type", d.PcieType.ToJsonName());
                if (d.Driver is { } drv) w.WriteString("driver", drv); else w.WriteNull("driver");
                if (d.Parent is { } p) w.WriteString("parent", p.Address.ToString()); else w.WriteNull("parent");
                w.WriteString("bus", d.Bus.ToString());
                if (f.BridgeBuses is { } b)
                {
                    w.WriteStartObject("bridge_buses");
                    w.WriteNumber("primary", b.Primary);
                    w.WriteNumber("secondary", b.Secondary);
                    w.WriteNumber("subordinate", b.Subordinate);
                    w.WriteEndObject();
                }
                else w.WriteNull("bridge_buses");
                w.WriteStartObject("acs");
                if (AcsUnknown(d)) w.WriteNull("present"); else w.WriteBoolean("present", d.Acs is not null);
                WriteNames(w, "capability", d.Acs?.Capability);
                WriteNames(w, "control", d.Acs?.Control);
                w.WriteEndObject();
                if (f.KernelGroup is { } g) w.WriteNumber("kernel_group", g); else w.WriteNull("kernel_group");
                if (f.IommuUnit is { } u) w.WriteString("iommu_unit", u); else w.WriteNull("iommu_unit");
                w.WriteBoolean("untrusted", f.Untrusted);
                w.WriteString("visibility", MachineJson.VisibilityName(f.Visibility));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        output.WriteLine(Encoding.UTF8.GetString(ms.ToArray()));
    }

    private static void WriteNames(Utf8JsonWriter w, string name, AcsFlags? flags)
    {
        if (flags is not { } f) { w.WriteNull(name); return; }
        w.WriteStartArray(name);
        foreach (var n in f.ToNames()) w.WriteStringValue(n);
        w.WriteEndArray();
    }
}
