using System.Text.Json;
using IommuKit.Pci;

namespace IommuKit.Cli.Rendering;

/// <summary>How a set of groups changed: the kinds of <see cref="Grouping.GroupChangeKind"/>, spelled for output.</summary>
internal enum DiffKind { Unchanged, Split, Merged, Reshaped, Added, Removed }

/// <summary>One change: the "before" groups and "after" groups that share devices with each other.</summary>
internal sealed record DiffEntry(DiffKind Kind, IReadOnlyList<GroupView> Before, IReadOnlyList<GroupView> After);

/// <summary>
/// Difference of two group lists as whole-group changes, matching devices by address and vendor:device (not by
/// group number): connected components of the "shares a device" relation between before and after groups, the same
/// classification as <see cref="Grouping.PartitionDiff"/> but over what the CLI shows (the kernel's groups or the model's).
/// </summary>
internal static class GroupDiff
{
    public static List<DiffEntry> Compute(IReadOnlyList<GroupView> before, IReadOnlyList<GroupView> after,
        IReadOnlyDictionary<PciAddress, PciAddress>? addressMap = null)
    {
        string Key(PciDevice d, bool isBefore)
        {
            var a = d.Address;
            if (isBefore && addressMap is not null && addressMap.TryGetValue(a, out var na)) a = na;
            return $"{a} {d.VendorId:x4}:{d.DeviceId:x4}";
        }
        var afterOf = new Dictionary<string, GroupView>();
        foreach (var g in after) foreach (var d in g.Devices) afterOf[Key(d, false)] = g;
        var beforeOf = new Dictionary<string, GroupView>();
        foreach (var g in before) foreach (var d in g.Devices) beforeOf[Key(d, true)] = g;

        var seenB = new HashSet<GroupView>(ReferenceEqualityComparer.Instance);
        var seenA = new HashSet<GroupView>(ReferenceEqualityComparer.Instance);
        var result = new List<DiffEntry>();
        foreach (var start in before)
        {
            if (!seenB.Add(start)) continue;
            var bs = new List<GroupView>();
            var @as = new List<GroupView>();
            var queue = new Queue<(GroupView G, bool IsBefore)>();
            queue.Enqueue((start, true));
            bool lost = false, gained = false;
            while (queue.Count > 0)
            {
                var (g, isB) = queue.Dequeue();
                (isB ? bs : @as).Add(g);
                foreach (var d in g.Devices)
                {
                    if (isB)
                    {
                        if (afterOf.TryGetValue(Key(d, true), out var ag)) { if (seenA.Add(ag)) queue.Enqueue((ag, false)); }
                        else lost = true;
                    }
                    else if (beforeOf.TryGetValue(Key(d, false), out var bg)) { if (seenB.Add(bg)) queue.Enqueue((bg, true)); }
                    else gained = true;
                }
            }
            bs.Sort((x, y) => x.Id.CompareTo(y.Id));
            @as.Sort((x, y) => x.Id.CompareTo(y.Id));
            DiffKind kind = @as.Count == 0 ? DiffKind.Removed
                : bs.Count == 1 && @as.Count == 1 && !lost && !gained ? DiffKind.Unchanged
                : bs.Count == 1 && @as.Count > 1 && !gained ? DiffKind.Split
                : bs.Count > 1 && @as.Count == 1 && !lost ? DiffKind.Merged
                : DiffKind.Reshaped;
            result.Add(new DiffEntry(kind, bs, @as));
        }
        foreach (var g in after)
            if (!seenA.Contains(g)) result.Add(new DiffEntry(DiffKind.Added, [], [g]));
        return result;
    }

    public static string Word(DiffKind k) => k.ToString().ToLowerInvariant();

    /// <summary><c>group 9 [00:0c.0 04:00.0]</c>, or <c>(none)</c>.</summary>
    public static string List(IReadOnlyList<GroupView> gs) =>
        gs.Count == 0 ? "(none)" : string.Join(", ", gs.Select(g => $"group {g.Id} [{string.Join(' ', g.Devices.Select(d => d.Address.ToShortString()))}]"));

    /// <summary>Text lines: one per change that is not "unchanged", then the count of unchanged groups.</summary>
    public static void WriteText(TextWriter o, Style s, IReadOnlyList<DiffEntry> entries)
    {
        foreach (var e in entries)
        {
            if (e.Kind == DiffKind.Unchanged) continue;
            var word = Word(e.Kind);
            var label = e.Kind switch { DiffKind.Split => s.Good(word), DiffKind.Merged => s.Bad(word), _ => s.Warn(word) };
            o.WriteLine($"  {label}: {List(e.Before)} -> {List(e.After)}");
        }
        int same = entries.Count(e => e.Kind == DiffKind.Unchanged);
        o.WriteLine($"  unchanged: {same} group{(same == 1 ? "" : "s")}");
    }

    public static void WriteJson(Utf8JsonWriter w, IReadOnlyList<DiffEntry> entries)
    {
        w.WriteStartArray("changes");
        foreach (var e in entries)
        {
            if (e.Kind == DiffKind.Unchanged) continue;
            w.WriteStartObject();
            w.WriteString("kind", Word(e.Kind));
            Side(w, "before", e.Before);
            Side(w, "after", e.After);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNumber("unchanged", entries.Count(e => e.Kind == DiffKind.Unchanged));
    }

    private static void Side(Utf8JsonWriter w, string name, IReadOnlyList<GroupView> groups)
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
