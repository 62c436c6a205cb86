using System.Text.Json;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Rendering;

/// <summary>Text, legacy and JSON renderings of a list of groups (shared by <c>groups</c>, <c>whatif</c> and <c>diff</c>).</summary>
internal static class GroupsRenderer
{
    /// <summary>A group's first line: <c>Group N  (predicted)  TYPE  fingerprint F</c> (the label and type when they apply).</summary>
    public static string Heading(Style s, GroupReport g, bool predicted)
    {
        var parts = new List<string> { s.Bold($"Group {g.Id}") };
        if (predicted) parts.Add(s.Warn("(predicted)"));
        if (g.UnknownFacts.Count > 0)
            parts.Add(s.Bad($"(a guess: facts missing for {string.Join(' ', g.UnknownFacts.Select(d => d.Address.ToShortString()))})"));
        if (g.Type is not null) parts.Add(s.Accent(g.Type));
        parts.Add(s.Dim($"fingerprint {g.Fingerprint}"));
        return string.Join("  ", parts);
    }

    /// <summary>
    /// One group as a block: its <see cref="Heading"/>, its reserved regions, then one lspci-style line per device with
    /// the bound driver and the physical slot (<see cref="PciSlots.NameOf"/>: the slot a card is in, the slot a port
    /// leads to), then with <paramref name="related"/> the cards' functions in other groups (<c>-r</c>).
    /// </summary>
    /// <param name="kernel">Below each device, its driver and kernel modules as <c>lspci -k</c> prints them.</param>
    public static void WriteGroup(TextWriter w, Style s, GroupReport g, PciIds ids, bool predicted, Machine machine,
        IReadOnlyList<RelatedFunction>? related = null, bool kernel = false)
    {
        w.WriteLine(Heading(s, g, predicted));
        if (g.ReservedRegions is { } regions)
            foreach (var r in regions) w.WriteLine($"  reserved {r}");
        foreach (var d in g.Devices)
        {
            var line = $"  {DeviceText.LspciNnsLine(d, ids)}";
            if (d.Driver is not null && !kernel) line += $"  driver: {s.Good(d.Driver)}";
            if (PciSlots.NameOf(machine, d) is { } slot) line += $"  slot: {slot}";
            w.WriteLine(line);
            if (kernel) DeviceText.WriteKernelLines(w, s, d, "      ");
        }
        foreach (var r in related ?? [])
            w.WriteLine($"  related: {RelatedText(r)}");
    }

    /// <summary><c>03:00.1 is part of this card and sits in group 16 (driver snd_hda_intel)</c>: the words of <c>groups -r</c> and <c>vfio-check</c>.</summary>
    public static string RelatedText(RelatedFunction f) =>
        $"{f.Address.ToShortString()} is part of this card and sits in {(f.Group is { } g ? $"group {g}" : "no group")}" +
        (f.Device.Driver is { } d ? $" (driver {d})" : "");

    /// <summary>Blocks separated by one blank line; <paramref name="related"/> gives each group's related functions (<c>-r</c>), or is null.</summary>
    public static void WriteGroups(TextWriter w, Style s, IReadOnlyList<GroupReport> groups, PciIds ids, bool predicted, Machine machine,
        Func<GroupReport, IReadOnlyList<RelatedFunction>>? related = null, bool kernel = false)
    {
        for (int i = 0; i < groups.Count; i++)
        {
            if (i > 0) w.WriteLine();
            WriteGroup(w, s, groups[i], ids, predicted, machine, related?.Invoke(groups[i]), kernel);
        }
    }

    /// <summary>
    /// The classic <c>IOMMU Group N &lt;lspci -nns line&gt;</c> shape of the Arch-wiki loop: groups in numeric order
    /// (as <c>sort -V</c> gives), devices in address order (as the shell glob gives), no colour, no padding.
    /// </summary>
    public static void WriteLegacy(TextWriter w, IReadOnlyList<GroupReport> groups, PciIds ids)
    {
        foreach (var g in groups.OrderBy(g => g.Id))
            foreach (var d in g.Devices.OrderBy(d => d.Address))
                w.WriteLine($"IOMMU Group {g.Id} {DeviceText.LspciNnsLine(d, ids)}");
    }

    /// <summary>
    /// One group object of the JSON schema (docs/json.md, "group object"); with <paramref name="related"/> (<c>groups -r</c>)
    /// also its <c>related</c> array.
    /// </summary>
    public static void WriteGroupJson(Utf8JsonWriter w, GroupReport g, PciIds ids, Machine machine, IReadOnlyList<RelatedFunction>? related = null)
    {
        w.WriteStartObject();
        w.WriteNumber("id", g.Id);
        w.WriteString("origin", g.Origin == GroupOrigin.Kernel ? "kernel" : "model");
        JsonOut.NullableString(w, "type", g.Type);
        if (g.ReservedRegions is { } regions) JsonOut.StringArray(w, "reserved_regions", regions.Select(r => r.ToString()));
        else w.WriteNull("reserved_regions");
        w.WriteString("fingerprint", g.Fingerprint);
        JsonOut.StringArray(w, "unknown_facts", g.UnknownFacts.Select(d => d.Address.ToString()));
        w.WriteStartArray("devices");
        foreach (var d in g.Devices) WriteDeviceJson(w, d, ids, machine);
        w.WriteEndArray();
        WriteUnitsJson(w, g.Units);
        if (related is not null) WriteRelatedJson(w, related);
        w.WriteEndObject();
    }

    /// <summary>The <c>units</c> and <c>bonds</c> keys of a group object (docs/json.md); both null when the units are unknown.</summary>
    private static void WriteUnitsJson(Utf8JsonWriter w, Grouping.GroupUnits? units)
    {
        if (units is null)
        {
            w.WriteNull("units");
            w.WriteNull("bonds");
            return;
        }
        w.WriteStartArray("units");
        foreach (var u in units.Units)
        {
            w.WriteStartObject();
            JsonOut.StringArray(w, "devices", u.Devices.Select(a => a.ToString()));
            JsonOut.StringArray(w, "requester_ids", u.RequesterIds.Select(r => $"0x{r:x4}"));
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("bonds");
        foreach (var b in units.Bonds)
        {
            w.WriteStartObject();
            w.WriteString("kind", Grouping.BondKindExtensions.Name(b.Kind));
            w.WriteString("device", b.Device.ToString());
            w.WriteString("other", b.Other.ToString());
            JsonOut.NullableString(w, "via", b.Via?.ToString());
            w.WriteBoolean("between_units", b.BetweenUnits);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    /// <summary>One device object (<see cref="DeviceJson.Write"/> without topology facts).</summary>
    public static void WriteDeviceJson(Utf8JsonWriter w, PciDevice d, PciIds ids, Machine machine) =>
        DeviceJson.Write(w, d, ids, topology: false, PciSlots.NameOf(machine, d));

    /// <summary>The <c>related</c> array: <c>{address, group, driver}</c> per function of a card in another group.</summary>
    public static void WriteRelatedJson(Utf8JsonWriter w, IReadOnlyList<RelatedFunction> related)
    {
        w.WriteStartArray("related");
        foreach (var f in related)
        {
            w.WriteStartObject();
            w.WriteString("address", f.Address.ToString());
            if (f.Group is { } g) w.WriteNumber("group", g); else w.WriteNull("group");
            JsonOut.NullableString(w, "driver", f.Device.Driver);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }
}
