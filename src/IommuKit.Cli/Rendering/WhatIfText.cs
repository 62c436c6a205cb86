using IommuKit.Grouping;
using IommuKit.Host;
using IommuKit.Sources;

namespace IommuKit.Cli.Rendering;

/// <summary>Text and JSON of a <see cref="WhatIfReport"/>.</summary>
internal static class WhatIfText
{
    public static void WriteJson(CliConsole console, WhatIfReport r, PciIds ids) => JsonOut.Write(console, w =>
    {
        w.WriteStartObject();
        w.WriteString("source", r.Machine.Origin);
        JsonOut.NullableString(w, "kernel", r.Machine.KernelRelease);
        w.WriteString("cmdline", r.Today.Text);
        w.WriteStartObject("change");
        JsonOut.NullableString(w, "cmdline", r.Request.CommandLine is null ? null : r.Then.Text);
        if (r.Request.Moves && r.AddressMap is { } map)
        {
            w.WriteStartObject("move");
            w.WriteString("card", r.Request.MoveCard!.Value.ToString());
            w.WriteString("port", r.Request.MovePort!.Value.ToString());
            w.WriteStartObject("addresses");
            foreach (var (from, to) in map.OrderBy(kv => kv.Key)) w.WriteString(from.ToString(), to.ToString());
            w.WriteEndObject();
            w.WriteEndObject();
        }
        else w.WriteNull("move");
        w.WriteEndObject();
        w.WriteBoolean("iommu_active_before", r.ActiveBefore);
        w.WriteBoolean("iommu_active_after", r.ActiveAfter);
        w.WriteBoolean("buys_nothing", r.BuysNothing);
        GroupDiff.WriteJson(w, r.Changes);
        if (r.WithAcsOverridePatch is { } patched)
        {
            // Same shape as the top level "changes", for a kernel that carries the pcie_acs_override patch.
            w.WriteStartObject("with_acs_override_patch");
            GroupDiff.WriteJson(w, patched);
            w.WriteEndObject();
        }
        w.WriteStartArray("groups_after");
        foreach (var g in r.GroupsAfter) GroupsRenderer.WriteGroupJson(w, g, ids, r.Machine);
        w.WriteEndArray();
        JsonOut.StringArray(w, "warnings", r.Notes);
        w.WriteEndObject();
    });

    public static void WriteText(CliConsole console, WhatIfReport r)
    {
        var s = Style.For(console);
        var o = console.Out;
        var change = new[]
        {
            r.Request.CommandLine is null ? null : $"command line {CommandLineText.Summary(r.Then)}",
            r.Request.Moves ? $"card {r.Request.MoveCard!.Value.ToShortString()} moved below {r.Request.MovePort!.Value.ToShortString()}" : null,
        }.Where(x => x is not null);
        o.WriteLine($"Source: {r.Machine.Origin}");
        o.WriteLine($"Kernel: {r.Machine.KernelRelease ?? "unknown"}");
        o.WriteLine($"Today: command line {CommandLineText.Summary(r.Today)}");
        o.WriteLine($"Change: {string.Join("; ", change)}");
        if (r.AddressMap is { } map)
            o.WriteLine($"Addresses after the move: {string.Join(", ", map.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key.ToShortString()} -> {kv.Value.ToShortString()}"))}");
        o.WriteLine();
        if (r.Outcome == WhatIfOutcome.NoIommu && !r.Forced)
            o.WriteLine(s.Bad($"After the change no IOMMU would be active ({r.ActivationAfter}): no groups at all."));
        else WriteChanges(o, s, r);
        foreach (var n in r.Notes) console.Warn(n);
    }

    private static void WriteChanges(TextWriter o, Style s, WhatIfReport r)
    {
        o.WriteLine($"Groups: {r.GroupsBefore.Count} today{(r.ActiveBefore ? "" : " (none active)")}, {r.GroupsAfter.Count} after the change{(r.Forced ? " (as if an IOMMU were on)" : "")}.");
        GroupDiff.WriteText(o, s, r.Changes);
        o.WriteLine();
        if (r.BuysNothing)
            o.WriteLine(s.Warn("This change buys nothing: every group keeps exactly its members."));
        else
        {
            int split = r.Changes.Count(e => e.Kind == GroupChangeKind.Split), merged = r.Changes.Count(e => e.Kind == GroupChangeKind.Merged);
            int other = r.Changes.Count(e => e.Kind is GroupChangeKind.Reshaped or GroupChangeKind.Added or GroupChangeKind.Removed);
            var parts = new List<string>();
            if (split > 0) parts.Add($"{split} group{(split == 1 ? "" : "s")} split");
            if (merged > 0) parts.Add($"{merged} merge{(merged == 1 ? "" : "s")}");
            if (other > 0) parts.Add($"{other} other change{(other == 1 ? "" : "s")}");
            o.WriteLine($"This change: {string.Join(", ", parts)}.");
        }
        if (r.WithAcsOverridePatch is not { } patched) return;
        o.WriteLine();
        o.WriteLine("On a kernel that carries the pcie_acs_override patch (Proxmox -pve, zen, liquorix, tkg):");
        GroupDiff.WriteText(o, s, patched);
        if (patched.All(e => e.Kind == GroupChangeKind.Unchanged))
            o.WriteLine("  even there this override changes nothing.");
        else
            o.WriteLine(s.Warn("  the override only claims isolation the hardware does not provide: devices in a split group can still reach each other by peer-to-peer DMA."));
    }
}
