using System.Text.Json;
using IommuKit.Host;
using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Cli.Rendering;

/// <summary>Text and JSON of a list of <see cref="GroupReportChange"/>s (what-if and diff).</summary>
internal static class GroupDiff
{
    public static string Word(GroupChangeKind k) => k.ToString().ToLowerInvariant();

    /// <summary><c>group 9 [00:0c.0 04:00.0]</c>, or <c>(none)</c>.</summary>
    public static string List(IReadOnlyList<GroupReport> gs) =>
        gs.Count == 0 ? "(none)" : string.Join(", ", gs.Select(g => $"group {g.Id} [{string.Join(' ', g.Devices.Select(d => d.Address.ToShortString()))}]"));

    /// <summary>Text lines: one per change that is not "unchanged", then the count of unchanged groups.</summary>
    public static void WriteText(TextWriter o, Style s, IReadOnlyList<GroupReportChange> entries)
    {
        foreach (var e in entries)
        {
            if (e.Kind == GroupChangeKind.Unchanged) continue;
            var word = Word(e.Kind);
            var label = e.Kind switch { GroupChangeKind.Split => s.Good(word), GroupChangeKind.Merged => s.Bad(word), _ => s.Warn(word) };
            o.WriteLine($"  {label}: {List(e.Before)} -> {List(e.After)}");
        }
        int same = entries.Count(e => e.Kind == GroupChangeKind.Unchanged);
        o.WriteLine($"  unchanged: {same} group{(same == 1 ? "" : "s")}");
    }

    public static void WriteJson(Utf8JsonWriter w, IReadOnlyList<GroupReportChange> entries)
    {
        w.WriteStartArray("changes");
        foreach (var e in entries)
        {
            if (e.Kind == GroupChangeKind.Unchanged) continue;
            w.WriteStartObject();
            w.WriteString("kind", Word(e.Kind));
            Side(w, "before", e.Before);
            Side(w, "after", e.After);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNumber("unchanged", entries.Count(e => e.Kind == GroupChangeKind.Unchanged));
    }

    private static void Side(Utf8JsonWriter w, string name, IReadOnlyList<GroupReport> groups)
    {
        w.WriteStartArray(name);
        foreach (var g in groups)
        {
            w.WriteStartObject();
            w.WriteNumber("id", g.Id);
            w.WriteString("fingerprint", g.Fingerprint);
            JsonOut.StringArray(w, "devices", g.Devices.Select(d => d.Address.ToString()));
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }
}
