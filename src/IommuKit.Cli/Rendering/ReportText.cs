using System.Text.Json;
using IommuKit.Host;

namespace IommuKit.Cli.Rendering;

/// <summary>The parts every report of a <see cref="HostReport"/> shares: the header lines, the machine's JSON keys, the warnings.</summary>
internal static class ReportText
{
    /// <summary>
    /// The first lines of every text report: where the machine came from, its kernel and the command-line parameters
    /// that matter here (<see cref="CommandLineText.Summary"/>; the JSON <c>cmdline</c> keeps the whole text).
    /// </summary>
    public static void WriteHeader(TextWriter o, HostReport r)
    {
        var m = r.Machine;
        o.WriteLine($"Source: {m.Origin}");
        var iommu = m.IommuUnits.Count == 0 ? "none" : $"{m.IommuKind.ToString().ToLowerInvariant()} ({string.Join(", ", m.IommuUnits.Select(u => u.Name))})";
        o.WriteLine($"Kernel: {m.KernelRelease ?? "unknown"}; IOMMU units: {iommu}");
        o.WriteLine($"Command line{(r.CommandLineOverridden ? " (--cmdline)" : "")}: {CommandLineText.Summary(r.CommandLine)}");
    }

    /// <summary>The machine's keys of every JSON report (docs/json.md): source, kernel, cmdline, iommu_active, origin.</summary>
    public static void WriteMachineJson(Utf8JsonWriter w, HostReport r)
    {
        w.WriteString("source", r.Machine.Origin);
        JsonOut.NullableString(w, "kernel", r.Machine.KernelRelease);
        w.WriteString("cmdline", r.CommandLine.Text);
        if (r.State == IommuState.Assumed) w.WriteNull("iommu_active");
        else w.WriteBoolean("iommu_active", r.State == IommuState.Active);
        w.WriteString("origin", r.Predicted ? "model" : "kernel");
        // Issue 9: whether the model's group numbers can be the kernel's, and why not (bind order, unknown kernel, firmware order).
        w.WriteBoolean("numbers_predictable", r.Model.NumbersPredictable);
        JsonOut.NullableString(w, "numbers_reason", r.Model.NumbersReason);
    }

    /// <summary>What text mode prints on stderr: the notes, then the disagreements given (all of them by default).</summary>
    public static void WriteWarnings(CliConsole console, HostReport r, IEnumerable<Disagreement>? disagreements = null)
    {
        foreach (var n in r.Notes) console.Warn(n);
        // A note, not a screen of warnings: the first few disagreements, then how many more and where they all are.
        var all = (disagreements ?? r.Disagreements).ToList();
        foreach (var d in all.Take(MaxDisagreementLines)) console.Warn($"model disagrees with the kernel: {d}");
        if (all.Count > MaxDisagreementLines)
            console.Warn($"model disagrees with the kernel in {all.Count - MaxDisagreementLines} more place(s): --json lists every one (\"disagreements\")");
    }

    /// <summary>Disagreement lines shown on stderr before the rest are counted.</summary>
    public const int MaxDisagreementLines = 8;
}
