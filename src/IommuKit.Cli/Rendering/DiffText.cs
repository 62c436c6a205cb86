using IommuKit.Host;

namespace IommuKit.Cli.Rendering;

/// <summary>Text and JSON of a <see cref="DiffReport"/>.</summary>
internal static class DiffText
{
    public static void WriteJson(CliConsole console, DiffReport d) => JsonOut.Write(console, w =>
    {
        w.WriteStartObject();
        Side(w, "a", d.A);
        Side(w, "b", d.B);
        w.WriteBoolean("same", d.Same);
        JsonOut.StringArray(w, "machine_changes", d.MachineChanges);
        GroupDiff.WriteJson(w, d.Changes);
        w.WriteStartArray("reasons");
        foreach (var m in d.Moved)
        {
            w.WriteStartObject();
            w.WriteString("device", m.Address.ToString());
            JsonOut.StringArray(w, "before", m.Before.Select(s => s.Text));
            JsonOut.StringArray(w, "after", m.After.Select(s => s.Text));
            w.WriteEndObject();
        }
        w.WriteEndArray();
        JsonOut.StringArray(w, "warnings", d.Warnings);
        w.WriteEndObject();
    });

    private static void Side(System.Text.Json.Utf8JsonWriter w, string name, HostReport r)
    {
        w.WriteStartObject(name);
        ReportText.WriteMachineJson(w, r);
        w.WriteNumber("groups", r.Groups.Count);
        w.WriteEndObject();
    }

    public static void WriteText(CliConsole console, DiffReport d)
    {
        var s = Style.For(console);
        var o = console.Out;
        o.WriteLine($"A: {d.A.Machine.Origin} ({Describe(d.A)})");
        o.WriteLine($"B: {d.B.Machine.Origin} ({Describe(d.B)})");
        o.WriteLine();
        if (d.MachineChanges.Count > 0)
        {
            o.WriteLine("What changed in the machine:");
            foreach (var c in d.MachineChanges) o.WriteLine($"  {c}");
        }
        else o.WriteLine("What changed in the machine: nothing the sources show (same kernel, command line, devices and ACS).");
        o.WriteLine();
        if (d.Same) o.WriteLine(s.Good("Groups: the same partition (every group keeps its members and fingerprint)."));
        else
        {
            o.WriteLine("Groups:");
            GroupDiff.WriteText(o, s, d.Changes);
            o.WriteLine();
            o.WriteLine("Why, per device whose group changed (model's reasons in A, then in B):");
            foreach (var m in d.Moved)
            {
                o.WriteLine($"  {m.Address.ToShortString()}");
                WriteSteps(o, "A", m.Before);
                WriteSteps(o, "B", m.After);
            }
            if (d.MovedTotal > d.Moved.Count) o.WriteLine($"  … and {d.MovedTotal - d.Moved.Count} more (see --json)");
        }
        foreach (var n in d.Warnings) console.Warn(n);
    }

    /// <summary>One side's reasons, one step per line (as <c>explain</c> prints them): <c>    A: first</c>, then aligned below it.</summary>
    private static void WriteSteps(TextWriter o, string side, IReadOnlyList<ExplainStep> steps)
    {
        if (steps.Count == 0) { o.WriteLine($"    {side}: (not in {side})"); return; }
        for (int i = 0; i < steps.Count; i++) o.WriteLine($"{(i == 0 ? $"    {side}: " : "       ")}{steps[i].Text}");
    }

    private static string Describe(HostReport r) =>
        $"kernel {r.Machine.KernelRelease ?? "unknown"}, {r.Groups.Count} groups {(r.Predicted ? r.State == IommuState.Off ? "predicted, IOMMU off" : "predicted" : "from the kernel")}";
}
