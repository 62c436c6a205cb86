using System.Globalization;
using System.Text;
using IommuKit.Passthrough;
using IommuKit.Pci;

namespace IommuKit.Host.Picture;

/// <summary>What a box in the picture stands for.</summary>
public enum PictureNodeKind
{
    /// <summary>A root bus (a host bridge's bus): the start of a tree.</summary>
    RootBus,
    /// <summary>A PCIe root port.</summary>
    RootPort,
    /// <summary>A switch's upstream port.</summary>
    SwitchUpstream,
    /// <summary>A switch's downstream port.</summary>
    SwitchDownstream,
    /// <summary>A PCIe-to-PCI bridge, a PCI-to-PCI bridge, a CardBus bridge: anything with a bus below that is not a PCIe port.</summary>
    Bridge,
    /// <summary>Anything else: an endpoint or root-complex integrated endpoint.</summary>
    Endpoint,
}

/// <summary>
/// One box of the picture: a root bus or a PCI function, with the lines written in it (already made printable:
/// control characters shown as <c>\xNN</c>, lines capped at <see cref="PictureMetrics.MaxLineChars"/>).
/// </summary>
/// <param name="Id">Unique within the picture: <c>bus-DDDD-BB</c> or <c>dev-DDDD-BB-DD-F</c>.</param>
/// <param name="Parent">The id of the box it hangs from; null for a root bus.</param>
/// <param name="Device">The function; null for a root bus.</param>
/// <param name="Group">The shown group (kernel's when the source has them) holding it; null when in no group (greyed).</param>
/// <param name="ModelGroup">The model's group number for it, or null.</param>
/// <param name="Disagrees">The kernel's group and the model's differ about this device.</param>
/// <param name="Acs">The ACS mark of a port or multifunction device ("no ACS", "ACS cap … ctl …"); null when ACS is not asked of it.</param>
/// <param name="Slot">The physical slot name, or null.</param>
/// <param name="Explain">Why it is in its group: the model's steps, then the disagreements about it.</param>
/// <param name="Search">Lower-case text the search box matches: addresses, vendor:device id, name, driver, slot.</param>
public sealed record PictureNode(string Id, string? Parent, PictureNodeKind Kind, PciDevice? Device, IReadOnlyList<string> Lines,
    int? Group, int? ModelGroup, bool Disagrees, string? Acs, string? Slot, IReadOnlyList<string> Explain, string Search, Box Box);

/// <summary>One IOMMU group of the picture: its colour, its verdict, and the regions boxing its members.</summary>
/// <param name="Colour">Index of the group in the picture (0, 1, …): the renderer turns it into a hue.</param>
/// <param name="Verdict">The class of <c>vfio-check --group</c> for the group (<see cref="VfioReport.Class"/>).</param>
/// <param name="Problems">What stands in the way (group-wide blockers and blocking members), one line each.</param>
/// <param name="HostLosses">What the host would lose when the group goes to a VM, one line each.</param>
/// <param name="Split">The what-if that would split the group and vfio-check's own ways to split it, as text; null when there is none.</param>
/// <param name="Disagreements">The model/kernel disagreements about its members.</param>
/// <param name="Regions">Boxes around runs of members that sit next to each other in one column.</param>
public sealed record PictureGroup(int Id, GroupOrigin Origin, int Colour, IReadOnlyList<PciAddress> Devices, VerdictClass Verdict,
    IReadOnlyList<string> Problems, IReadOnlyList<string> HostLosses, string? Split, IReadOnlyList<string> Disagreements,
    IReadOnlyList<Box> Regions);

/// <summary>The sizes the layout assumes, which the renderer must use: a monospace font of <see cref="FontSize"/> pixels.</summary>
public static class PictureMetrics
{
    /// <summary>Font size of the box text, in CSS pixels.</summary>
    public const double FontSize = 11;
    /// <summary>
    /// The advance of one character assumed at <see cref="FontSize"/>: common monospace fonts advance 0.6 em
    /// (DejaVu Sans Mono 0.602, Liberation Mono 0.600, Menlo 0.602); 0.64 em leaves room for a wider fallback.
    /// </summary>
    public const double CharWidth = FontSize * 0.64;
    /// <summary>Distance between two text lines of a box, in CSS pixels.</summary>
    public const double LineHeight = 14;
    /// <summary>Space between a box's left and right edges and its text.</summary>
    public const double PadX = 8;
    /// <summary>Space between a box's top and bottom edges and its text.</summary>
    public const double PadY = 6;
    /// <summary>Longest line written in a box; longer text is cut with an ellipsis (the full text is in the details).</summary>
    public const int MaxLineChars = 48;
    /// <summary>Padding of a group region around its members (less than half of <see cref="TreeLayout.RowGap"/>).</summary>
    public const double RegionPad = 5;

    /// <summary>The width a line takes: characters from U+1100 on (wide scripts, symbols) count twice.</summary>
    public static double TextWidth(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        double w = 0;
        foreach (var c in line) w += c >= '\u1100' && !char.IsLowSurrogate(c) ? 2 * CharWidth : char.IsLowSurrogate(c) ? 0 : CharWidth;
        return w;
    }
}

/// <summary>
/// The machine as a picture: the PCIe tree from root buses through ports, switches and bridges to endpoints, laid out
/// by <see cref="TreeLayout"/>, each IOMMU group with its colour, verdict, host losses and the what-if that would split
/// it. Built by <see cref="Draw"/>; the CLI renders it (<c>iommu report</c>).
/// </summary>
public sealed class MachinePicture
{
    /// <summary>The analysis the picture draws.</summary>
    public required HostReport Report { get; init; }
    /// <summary>Every box: root buses and functions, parents before children.</summary>
    public required IReadOnlyList<PictureNode> Nodes { get; init; }
    /// <summary>The shown groups, in the report's order.</summary>
    public required IReadOnlyList<PictureGroup> Groups { get; init; }
    /// <summary>Width of the picture, in CSS pixels.</summary>
    public required double Width { get; init; }
    /// <summary>Height of the picture, in CSS pixels.</summary>
    public required double Height { get; init; }

    /// <summary>The kernel command line whose split the picture proposes for groups holding several cards.</summary>
    public const string SplitCommandLine = "pcie_acs_override=downstream,multifunction";

    /// <summary>
    /// The picture of an analysed machine. <paramref name="name"/> names a device ("Vendor Device") or returns null
    /// (the library does not read pci.ids; the caller does).
    /// </summary>
    public static MachinePicture Draw(HostReport report, Func<PciDevice, string?> name)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(name);
        var machine = report.Machine;
        var groupOf = new Dictionary<PciAddress, GroupReport>();
        foreach (var g in report.Groups) foreach (var d in g.Devices) groupOf[d.Address] = g;
        var modelOf = new Dictionary<PciAddress, GroupReport>();
        foreach (var g in report.ModelGroups) foreach (var d in g.Devices) modelOf[d.Address] = g;
        string? SlotOf(PciDevice d) => PciSlots.NameOf(machine, d);

        // The tree: root buses, then each function's subordinate bus. Functions no walk reaches hang from a last box.
        var items = new List<(string Id, string? Parent, PictureNodeKind Kind, PciDevice? Device, List<string> Lines, TreeLayout.Node Node)>();
        var roots = new List<TreeLayout.Node>();
        var placed = new HashSet<PciAddress>();
        TreeLayout.Node Add(string id, string? parent, PictureNodeKind kind, PciDevice? device, List<string> lines, TreeLayout.Node? under)
        {
            double w = 0;
            foreach (var l in lines) w = Math.Max(w, PictureMetrics.TextWidth(l));
            var node = new TreeLayout.Node(Math.Ceiling(w + 2 * PictureMetrics.PadX), lines.Count * PictureMetrics.LineHeight + 2 * PictureMetrics.PadY);
            if (under is null) roots.Add(node); else under.Children.Add(node);
            items.Add((id, parent, kind, device, lines, node));
            return node;
        }
        void AddBus(PciBus bus, string? parentId, TreeLayout.Node? parentNode)
        {
            foreach (var d in bus.Devices.OrderBy(d => d.Address))
            {
                if (!placed.Add(d.Address)) continue;
                var id = DeviceId(d.Address);
                var node = Add(id, parentId, KindOf(d), d, DeviceLines(d, groupOf, modelOf, SlotOf, name, report), parentNode);
                if (d.Subordinate is { } sub) AddBus(sub, id, node);
            }
        }
        foreach (var bus in machine.Topology.RootBuses.OrderBy(b => b.Domain).ThenBy(b => b.Number))
        {
            var id = $"bus-{bus.Domain:x4}-{bus.Number:x2}";
            var node = Add(id, null, PictureNodeKind.RootBus, null, [$"PCI bus {bus.Domain:x4}:{bus.Number:x2}", "root bus"], null);
            AddBus(bus, id, node);
        }
        var stray = machine.Topology.Devices.Where(d => !placed.Contains(d.Address)).OrderBy(d => d.Address).ToList();
        if (stray.Count > 0)
        {
            var node = Add("bus-unplaced", null, PictureNodeKind.RootBus, null, ["not on a known bus", "(the source shows no path)"], null);
            foreach (var d in stray)
                if (placed.Add(d.Address))
                    Add(DeviceId(d.Address), "bus-unplaced", KindOf(d), d, DeviceLines(d, groupOf, modelOf, SlotOf, name, report), node);
        }
        var (width, height) = TreeLayout.Arrange(roots);

        var nodes = new List<PictureNode>(items.Count);
        foreach (var (id, parent, kind, device, lines, node) in items)
        {
            if (device is null)
            {
                nodes.Add(new PictureNode(id, parent, kind, null, lines, null, null, false, null, null, [], lines[0].ToLowerInvariant(), node.Box));
                continue;
            }
            var a = device.Address;
            var g = groupOf.GetValueOrDefault(a);
            var m = modelOf.GetValueOrDefault(a);
            var about = report.DisagreementsAbout(a);
            var explain = new List<string>();
            foreach (var s in report.Model.Explain(a)) explain.Add(PictureText.Visible(s.Text));
            foreach (var dis in about) explain.Add(PictureText.Visible("disagreement: " + dis.Text));
            nodes.Add(new PictureNode(id, parent, kind, device, lines, g?.Id, m?.Id, about.Count > 0, AcsMark(device),
                SlotOf(device), explain, SearchText(device, name, SlotOf(device)), node.Box));
        }

        var groups = new List<PictureGroup>(report.Groups.Count);
        WhatIfReport? split = null;
        bool splitTried = false;
        for (int i = 0; i < report.Groups.Count; i++)
        {
            var g = report.Groups[i];
            var vfio = HostAnalysis.VfioCheck(report, null, g.Id);
            var cls = vfio.Class;
            var problems = new List<string>();
            foreach (var p in vfio.Problems) problems.Add(PictureText.Visible(p));
            foreach (var p in vfio.Reasons) if (!vfio.Problems.Contains(p)) problems.Add(PictureText.Visible(p));
            foreach (var dv in vfio.Verdict?.Devices ?? [])
                if (!dv.Ok) problems.Add(PictureText.Visible($"{dv.Address.ToShortString()}: {dv.Reason}"));
            var losses = vfio.HostLosses.Select(l => PictureText.Visible($"{l.Address.ToShortString()}: {l.What}")).ToList();
            string? splitText = null;
            if (Cards(g) > 1)
            {
                if (!splitTried)
                {
                    splitTried = true;
                    split = TrySplit(machine);
                }
                splitText = SplitText(g, split);
            }
            if (vfio.Splits.Count > 0)
                splitText = string.Join(" ", (splitText is null ? [] : new[] { splitText }).Concat(vfio.Splits.Select(PictureText.Visible)));
            var dis = report.Disagreements.Where(d => g.Devices.Any(x => d.Devices.Contains(x.Address)))
                .Select(d => PictureText.Visible(d.Text)).ToList();
            groups.Add(new PictureGroup(g.Id, g.Origin, i, g.Devices.Select(d => d.Address).ToList(), cls, problems, losses, splitText, dis,
                Regions(g, nodes)));
        }
        return new MachinePicture { Report = report, Nodes = nodes, Groups = groups, Width = width, Height = height };
    }

    /// <summary>The element id of a device's box: <c>dev-DDDD-BB-DD-F</c>.</summary>
    public static string DeviceId(PciAddress a) =>
        string.Create(CultureInfo.InvariantCulture, $"dev-{a.Domain:x4}-{a.Bus:x2}-{a.Device:x2}-{a.Function:x}");

    private static PictureNodeKind KindOf(PciDevice d) => d.PcieType switch
    {
        PcieType.RootPort => PictureNodeKind.RootPort,
        PcieType.Upstream => PictureNodeKind.SwitchUpstream,
        PcieType.Downstream => PictureNodeKind.SwitchDownstream,
        _ when d.IsBridge || d.Subordinate is not null => PictureNodeKind.Bridge,
        _ => PictureNodeKind.Endpoint,
    };

    private static string KindWord(PictureNodeKind k) => k switch
    {
        PictureNodeKind.RootPort => "root port",
        PictureNodeKind.SwitchUpstream => "switch up",
        PictureNodeKind.SwitchDownstream => "switch down",
        PictureNodeKind.Bridge => "bridge",
        _ => "",
    };

    private static List<string> DeviceLines(PciDevice d, Dictionary<PciAddress, GroupReport> groupOf, Dictionary<PciAddress, GroupReport> modelOf,
        Func<PciDevice, string?> slotOf, Func<PciDevice, string?> name, HostReport report)
    {
        var a = d.Address;
        var kind = KindWord(KindOf(d));
        var g = groupOf.GetValueOrDefault(a);
        var lines = new List<string>(6)
        {
            $"{a.ToShortString()}{(kind.Length > 0 ? " " + kind : "")} · {(g is null ? "no group" : $"group {g.Id}")}",
            Cap(PictureText.Visible(name(d) ?? ClassWord(d))),
            Cap(PictureText.Visible(string.Create(CultureInfo.InvariantCulture, $"[{d.VendorId:x4}:{d.DeviceId:x4}] {d.Driver ?? "no driver"}"))),
        };
        if (slotOf(d) is { } slot) lines.Add(Cap(PictureText.Visible("slot " + slot)));
        if (AcsMark(d) is { } acs) lines.Add(Cap(acs));
        if (report.DisagreementsAbout(a).Count > 0)
        {
            var m = modelOf.GetValueOrDefault(a);
            lines.Add(m is null ? "≠ model: no group" : $"≠ model: group {m.Id}");
        }
        return lines;
    }

    private static string ClassWord(PciDevice d) => string.Create(CultureInfo.InvariantCulture, $"class {d.ClassCode:x6}");

    /// <summary>
    /// The ACS state of a function whose ACS the kernel asks about (<c>pci_acs_enabled</c>): PCIe ports and bridges,
    /// and multifunction devices. "no ACS" when the capability is absent; "ACS unknown" when the source could not see
    /// the extended config space.
    /// </summary>
    public static string? AcsMark(PciDevice d)
    {
        ArgumentNullException.ThrowIfNull(d);
        bool asked = d.PcieType is PcieType.RootPort or PcieType.Downstream || (d.IsPcie && d.IsBridge && d.PcieType != PcieType.Upstream) || d.IsMultifunction;
        if (!asked) return null;
        if (d.Acs is { } acs) return $"ACS cap {acs.Capability.ToShortString()} ctl {acs.Control.ToShortString()}";
        return d.Facts.Visibility == ConfigVisibility.Full ? "no ACS" : "ACS unknown (config not visible)";
    }

    private static string SearchText(PciDevice d, Func<PciDevice, string?> name, string? slot)
    {
        var a = d.Address;
        return PictureText.Visible(string.Create(CultureInfo.InvariantCulture,
            $"{a} {a.ToShortString()} {d.VendorId:x4}:{d.DeviceId:x4} {name(d)} {d.Driver} {slot}")).ToLowerInvariant();
    }

    private static string Cap(string s) => s.Length <= PictureMetrics.MaxLineChars ? s : s[..(PictureMetrics.MaxLineChars - 1)] + "…";

    private static int Cards(GroupReport g)
    {
        var slots = new HashSet<(int, int, int)>();
        foreach (var d in g.Devices) if (!d.IsBridge) slots.Add((d.Address.Domain, d.Address.Bus, d.Address.Device));
        return slots.Count;
    }

    private static WhatIfReport? TrySplit(Machine machine)
    {
        try
        {
            return HostAnalysis.WhatIf(machine, new WhatIfRequest(((machine.CommandLine ?? "") + " " + SplitCommandLine).Trim()));
        }
        catch (InputException)
        {
            return null; // a command line already at its cap: no what-if to offer
        }
    }

    private static string SplitText(GroupReport g, WhatIfReport? w)
    {
        if (w is null) return "no what-if could be computed for this machine";
        var changes = w.WithAcsOverridePatch ?? w.Changes;
        var first = g.Devices[0].Address;
        var c = changes.FirstOrDefault(c => c.Before.Any(b => b.Contains(first)));
        string patch = w.WithAcsOverridePatch is null ? "" : " on a kernel carrying the out-of-tree ACS override patch";
        if (c is not null && c.Kind is GroupChangeKind.Split or GroupChangeKind.Reshaped && c.After.Count > 1)
            return $"{SplitCommandLine}{patch} would split it into {c.After.Count} groups: " +
                   string.Join(" ", c.After.Select(a => "[" + string.Join(" ", a.Devices.Select(d => d.Address.ToShortString())) + "]")) +
                   " (it tells the kernel to trust isolation the hardware does not promise)";
        return $"not even {SplitCommandLine} splits it (a PCI bridge or a DMA alias joins the devices): " +
               "try the card in another slot (iommu whatif --move CARD=PORT)";
    }

    /// <summary>
    /// Boxes around the group's members: per column, runs of members with no other box between them, padded by
    /// <see cref="PictureMetrics.RegionPad"/>. Regions of two groups never overlap (a run holds no other group's box,
    /// the padding is under half the row gap, and columns are further apart).
    /// </summary>
    private static List<Box> Regions(GroupReport g, List<PictureNode> nodes)
    {
        var members = new HashSet<PciAddress>(g.Devices.Select(d => d.Address));
        var columns = nodes.GroupBy(n => n.Box.X).OrderBy(c => c.Key);
        var regions = new List<Box>();
        foreach (var column in columns)
        {
            Box? run = null;
            foreach (var n in column.OrderBy(n => n.Box.Y))
            {
                bool member = n.Device is not null && members.Contains(n.Device.Address);
                if (member)
                {
                    var b = n.Box;
                    run = run is { } r
                        ? new Box(Math.Min(r.X, b.X), r.Y, Math.Max(r.Right, b.Right) - Math.Min(r.X, b.X), b.Bottom - r.Y)
                        : b;
                }
                else if (run is { } r)
                {
                    regions.Add(r.Inflate(PictureMetrics.RegionPad));
                    run = null;
                }
            }
            if (run is { } last) regions.Add(last.Inflate(PictureMetrics.RegionPad));
        }
        return regions;
    }
}

/// <summary>Text from input made printable before it is measured: control characters become <c>\xNN</c> (or <c>\uNNNN</c>).</summary>
public static class PictureText
{
    /// <summary>The text with every control character (and U+2028/U+2029) written as an escape; the same string when there is none.</summary>
    public static string Visible(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        bool clean = true;
        foreach (var c in text) if (char.IsControl(c) || c is '\u2028' or '\u2029') { clean = false; break; }
        if (clean) return text;
        var sb = new StringBuilder(text.Length + 8);
        foreach (var c in text)
        {
            if (c < 0x100 && char.IsControl(c)) sb.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}");
            else if (char.IsControl(c) || c is '\u2028' or '\u2029') sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            else sb.Append(c);
        }
        return sb.ToString();
    }
}
