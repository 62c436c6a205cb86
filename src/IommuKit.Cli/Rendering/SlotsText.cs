using IommuKit.Host;
using IommuKit.Sources;

namespace IommuKit.Cli.Rendering;

/// <summary>Text and JSON of a <see cref="SlotsReport"/> (docs/cli.md "slots", docs/json.md "slots").</summary>
internal static class SlotsText
{
    /// <summary>The JSON <c>fit</c> word.</summary>
    public static string FitWord(SlotFit f) => f switch
    {
        SlotFit.Alone => "alone",
        SlotFit.WithPath => "with-path",
        SlotFit.Shares => "shares",
        _ => "unknown",
    };

    public static void WriteText(CliConsole console, SlotsReport r, PciIds ids)
    {
        var s = Style.For(console);
        var o = console.Out;
        ReportText.WriteHeader(o, r.Report);
        o.WriteLine();
        if (r.Card is not { } card)
        {
            o.WriteLine(r.Slots.Count == 0
                ? "No slots: no root or downstream port implements one, and no slot is named."
                : $"{r.Slots.Count} slot{(r.Slots.Count == 1 ? "" : "s")} (ports that implement a slot, and the slot below each):");
            foreach (var slot in r.Slots)
            {
                o.WriteLine($"  {PortText(s, slot)}  {(slot.PortGroup is { } g ? $"port in group {g.Id}" : "port in no group")}");
                if (!slot.Occupied) o.WriteLine("      empty");
                foreach (var d in slot.Occupants)
                    o.WriteLine($"      {DeviceText.LspciNnsLine(d, ids)}{(r.Report.GroupOf(d.Address) is { } dg ? $"  group {dg.Id}" : "")}");
            }
        }
        else
        {
            o.WriteLine($"Slots for {card.ToShortString()}, best first (the model's group for the card in each, as `iommu whatif --move {r.Moves!.Value.ToShortString()}=PORT` predicts):");
            for (int i = 0; i < r.Slots.Count; i++)
            {
                var slot = r.Slots[i];
                string here = slot.Current ? s.Accent("  (here now)") : "";
                o.WriteLine($"  {i + 1}. {PortText(s, slot)}{here}: {FitText(s, slot)}");
                if (!slot.Current && slot.Occupied)
                    o.WriteLine($"       occupied by {string.Join(", ", slot.Occupants.Select(d => DeviceText.LspciNnsLine(d, ids)))} " +
                                "(the model puts the card beside it)");
            }
            if (r.Slots.Count(x => !x.Current) == 0) o.WriteLine("  no other slot on this machine");
        }
        foreach (var n in r.Notes) console.Warn(n);
        ReportText.WriteWarnings(console, r.Report, []);
    }

    /// <summary><c>00:1c.4 slot 4 (hot-plug)</c>.</summary>
    private static string PortText(Style s, SlotCandidate slot) =>
        s.Bold(slot.Port.Address.ToShortString()) + (slot.Name is { } n ? $" slot {n}" : " unnamed slot") + (slot.HotPlug ? " (hot-plug)" : "");

    private static string FitText(Style s, SlotCandidate slot) => slot.Fit switch
    {
        SlotFit.Alone => s.Good("alone in its group"),
        SlotFit.WithPath => s.Good($"with its path only ({Addresses(slot)})"),
        SlotFit.Shares => s.Bad($"shares its group with {slot.With.Count} device{(slot.With.Count == 1 ? "" : "s")}: {Addresses(slot)}"),
        _ => s.Warn($"cannot say: {slot.Problem}"),
    };

    private static string Addresses(SlotCandidate slot) => string.Join(" ", slot.With.Select(d => d.Address.ToShortString()));

    public static void WriteJson(CliConsole console, SlotsReport r, PciIds ids) => JsonOut.Write(console, w =>
    {
        var m = r.Report.Machine;
        w.WriteStartObject();
        ReportText.WriteMachineJson(w, r.Report);
        JsonOut.NullableString(w, "card", r.Card?.ToString());
        JsonOut.NullableString(w, "moves", r.Moves?.ToString());
        if (r.Card is null) w.WriteNull("isolatable"); else w.WriteBoolean("isolatable", r.Isolatable);
        w.WriteStartArray("slots");
        foreach (var slot in r.Slots)
        {
            w.WriteStartObject();
            w.WriteString("port", slot.Port.Address.ToString());
            JsonOut.NullableString(w, "name", slot.Name);
            w.WriteBoolean("hotplug", slot.HotPlug);
            if (slot.PortGroup is { } pg) w.WriteNumber("port_group", pg.Id); else w.WriteNull("port_group");
            w.WriteStartArray("occupants");
            foreach (var d in slot.Occupants) GroupsRenderer.WriteDeviceJson(w, d, ids, m);
            w.WriteEndArray();
            if (r.Card is not null)
            {
                w.WriteBoolean("current", slot.Current);
                w.WriteString("fit", FitWord(slot.Fit ?? SlotFit.Unknown));
                JsonOut.StringArray(w, "group", slot.CardGroup?.Devices.Select(d => d.Address.ToString()) ?? []);
                JsonOut.StringArray(w, "with", slot.With.Select(d => d.Address.ToString()));
                JsonOut.NullableString(w, "problem", slot.Problem);
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        JsonOut.StringArray(w, "notes", r.Notes);
        JsonOut.StringArray(w, "warnings", r.Report.Notes);
        w.WriteEndObject();
    });
}
