using System.Text;
using IommuKit.Host;
using IommuKit.Passthrough;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Rendering;

/// <summary>
/// <c>iommu devices</c> as a tree: root buses, bridges and ports, endpoints, each with ids, class, PCIe type, ACS and
/// driver; with a filter, the kept devices and the bridges above them; with <c>-k</c>, lspci -k's kernel lines.
/// </summary>
internal static class DeviceTree
{
    public static void Write(CliConsole console, Machine machine, DeviceFilter filter, bool kernel)
    {
        var topo = machine.Topology;
        // Kept: the devices the filter keeps and every bridge above them, so the tree keeps its shape.
        var kept = filter.Any
            ? topo.Devices.Where(filter.Keeps).SelectMany(d => PciTopology.Ancestors(d).Prepend(d)).Select(d => d.Address).ToHashSet()
            : null;
        var view = new View(console, machine, kept, kernel);
        var o = console.Out;
        o.WriteLine($"{machine.Origin}: {topo.Count} PCI functions" +
                    (machine.KernelRelease is { } k ? $", kernel {k}" : "") +
                    (machine.IommuUnits.Count > 0 ? $", IOMMU {string.Join(", ", machine.IommuUnits.Select(u => $"{u.Name} ({MachineJson.KindName(u.Kind)})"))}" : ", no IOMMU unit"));
        foreach (var root in topo.RootBuses)
        {
            if (kept is not null && !Below(root).Any(kept.Contains)) continue;
            o.WriteLine($"pci{root.Domain:x4}:{root.Number:x2}");
            WriteBus(view, root, "");
        }
        if (kept is not null) o.WriteLine($"Showing {topo.Devices.Count(filter.Keeps)} of them ({filter.Describe()}) and the bridges above them.");
    }

    private sealed record View(CliConsole Console, Machine Machine, HashSet<PciAddress>? Kept, bool Kernel)
    {
        public bool Shows(PciDevice d) => Kept is null || Kept.Contains(d.Address);
        public bool Shows(PciBus b) => Kept is null || Below(b).Any(Kept.Contains);
    }

    private static IEnumerable<PciAddress> Below(PciBus bus) =>
        bus.Devices.Select(d => d.Address).Concat(bus.Children.SelectMany(Below));

    private static void WriteBus(View view, PciBus bus, string indent)
    {
        var console = view.Console;
        // A bus's children: its functions in devfn order, then buses below it that no bridge leads to (SR-IOV VFs).
        var devices = bus.Devices.Where(view.Shows).ToList();
        var virtualBuses = bus.Children.Where(c => c.Self is null && view.Shows(c)).ToList();
        int count = devices.Count + virtualBuses.Count;
        int i = 0;
        foreach (var d in devices)
        {
            bool last = ++i == count;
            string below = indent + (last ? "    " : "│   ");
            console.Out.WriteLine(indent + (last ? "└── " : "├── ") + DeviceLine(console, view.Machine, d));
            if (view.Kernel) DeviceText.WriteKernelLines(console.Out, Style.For(console), d, below + (d.Subordinate is not null ? "│   " : "    "));
            if (d.Subordinate is { } sub) WriteBus(view, sub, below);
        }
        foreach (var vb in virtualBuses)
        {
            bool last = ++i == count;
            console.Out.WriteLine(indent + (last ? "└── " : "├── ") + $"bus {vb} (virtual, no bridge)");
            WriteBus(view, vb, indent + (last ? "    " : "│   "));
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
}
