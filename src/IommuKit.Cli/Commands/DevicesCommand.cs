using System.CommandLine;
using System.Text;
using IommuKit.Cli.Rendering;
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
        var pciIds = CommonOptions.PciIds();
        var command = new Command("devices",
            "Show the PCI topology as a tree: bridges, ports and endpoints with their PCIe type, ACS state " +
            "(capability and control bits; \"ACS unknown\" when the config space was not visible) and driver.\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "ok")) + "\n" + SourceLimits.HelpText)
        {
            source, json, pciIds,
        };
        command.SetAction(parse => Run(console, parse.GetValue(source), parse.GetValue(json), parse.GetValue(pciIds)));
        return command;
    }

    internal static int Run(CliConsole console, string? source, bool json, string? pciIdsPath)
    {
        var ids = Inputs.LoadPciIds(pciIdsPath);
        var machine = SourceResolver.Resolve(source, console, loud: !json);
        if (json) WriteJson(console, machine, ids);
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
            WriteBus(console, machine, root, "");
        }
    }

    private static void WriteBus(CliConsole console, Machine machine, PciBus bus, string indent)
    {
        // A bus's children: its functions in devfn order, then buses below it that no bridge leads to (SR-IOV VFs).
        var virtualBuses = bus.Children.Where(c => c.Self is null).ToList();
        int count = bus.Devices.Count + virtualBuses.Count;
        int i = 0;
        foreach (var d in bus.Devices)
        {
            bool last = ++i == count;
            console.Out.WriteLine(indent + (last ? "└── " : "├── ") + DeviceLine(console, machine, d));
            if (d.Subordinate is { } sub) WriteBus(console, machine, sub, indent + (last ? "    " : "│   "));
        }
        foreach (var vb in virtualBuses)
        {
            bool last = ++i == count;
            console.Out.WriteLine(indent + (last ? "└── " : "├── ") + $"bus {vb} (virtual, no bridge)");
            WriteBus(console, machine, vb, indent + (last ? "    " : "│   "));
        }
    }

    /// <summary>
    /// One device line: <c>0000:00:06.0 [1b36:000c] 0604 Root Port, ACS cap SV|RR ctl none, driver pcieport, slot 2</c>
    /// (the slot a card is in or a port leads to, <see cref="PciSlots.NameOf"/>).
    /// </summary>
    internal static string DeviceLine(CliConsole console, Machine machine, PciDevice d)
    {
        var sb = new StringBuilder();
        sb.Append(Paint(console, "1", d.Address.ToString()));
        sb.Append($" [{d.VendorId:x4}:{d.DeviceId:x4}] {d.ClassCode >> 8:x4} ");
        sb.Append(TypeText(d));
        sb.Append(", ").Append(AcsText(console, d));
        sb.Append(", ").Append(d.Driver is { } drv ? $"driver {drv}" : "no driver");
        if (d.Facts.KernelGroup is { } g) sb.Append($", group {g}");
        if (PciSlots.NameOf(machine, d) is { } slot) sb.Append($", slot {slot}");
        if (d.Facts.Untrusted) sb.Append(", untrusted");
        return sb.ToString();
    }

    private static string TypeText(PciDevice d)
    {
        if (DeviceJson.TypeUnknown(d.Facts)) return "type unknown";
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
        return DeviceJson.AcsUnknown(d) ? Paint(console, "33", "ACS unknown") : "no ACS";
    }


    private static string Paint(CliConsole console, string sgr, string text) =>
        console.Color ? $"\u001b[{sgr}m{text}\u001b[0m" : text;

    // ------------------------------------------------------------------ JSON

    /// <summary>
    /// <c>devices --json</c>: the machine's keys as every report names them (<c>source</c>, <c>kernel</c>), then one
    /// object per function from the one device writer (<see cref="DeviceJson"/>) with its topology facts.
    /// </summary>
    internal static void WriteJson(CliConsole console, Machine machine, PciIds ids) => JsonOut.Write(console, w =>
    {
        w.WriteStartObject();
        w.WriteString("source", machine.Origin);
        JsonOut.NullableString(w, "kernel", machine.KernelRelease);
        w.WriteStartArray("devices");
        foreach (var d in machine.Topology.Devices) DeviceJson.Write(w, d, ids, topology: true, PciSlots.NameOf(machine, d));
        w.WriteEndArray();
        w.WriteEndObject();
    });
}
