using System.Globalization;
using System.Text;
using IommuKit.Host;

namespace IommuKit.Cli.Rendering;

/// <summary><c>iommu fleet</c>'s output: a text table, CSV (one row per machine and class) or JSON.</summary>
internal static class FleetText
{
    public static string ClassWord(AssignableClass c) => c switch
    {
        AssignableClass.Gpu => "gpu",
        AssignableClass.Nic => "nic",
        _ => "nvme",
    };

    private static string StateWord(IommuState s) => s switch { IommuState.Active => "active", IommuState.Off => "off", _ => "assumed" };

    public static void WriteText(CliConsole console, FleetReport r)
    {
        var o = console.Out;
        o.WriteLine($"{r.Machines.Count} machine{(r.Machines.Count == 1 ? "" : "s")}{(r.Failures.Count > 0 ? $", {r.Failures.Count} skipped" : "")}" +
                    (r.HasBaseline ? $", {r.DriftedMachines.Count()} drifted from the baseline" : ""));
        o.WriteLine("counts per class: ready (passes through alone) / needs binding / shares a group / not assignable / no IOMMU");
        int nameWidth = Math.Min(60, r.Machines.Select(m => Name(m).Length).DefaultIfEmpty(7).Max());
        o.WriteLine($"{"machine".PadRight(nameWidth)}  devs groups iommu    {"gpu",-14} {"nic",-14} {"nvme",-14}{(r.HasBaseline ? " drift" : "")}");
        foreach (var m in r.Machines)
        {
            var sb = new StringBuilder();
            var name = Name(m);
            if (name.Length > nameWidth) name = "…" + name[^(nameWidth - 1)..];
            sb.Append(CultureInfo.InvariantCulture, $"{name.PadRight(nameWidth)}  {m.Devices,4} {m.Groups,6} {StateWord(m.State),-8}");
            foreach (var c in m.Classes)
                sb.Append(CultureInfo.InvariantCulture, $" {(c.Devices == 0 ? "-" : $"{c.Ready}/{c.NeedsBinding}/{c.SharesGroup}/{c.NotAssignable}/{c.NoIommu}"),-14}");
            if (r.HasBaseline) sb.Append(CultureInfo.InvariantCulture, $" {(m.Drifted.Count == 0 ? "no" : $"{m.Drifted.Count} group{(m.Drifted.Count == 1 ? "" : "s")}")}");
            o.WriteLine(sb.ToString().TrimEnd());
        }
    }

    private static string Name(FleetMachine m) => Path.GetFileName(m.Path) is { Length: > 0 } f ? f : m.Path;

    public static void WriteCsv(CliConsole console, FleetReport r)
    {
        var o = console.Out;
        o.WriteLine("machine,class,devices,ready,needs_binding,shares_group,not_assignable,no_iommu,groups,iommu,drifted_groups");
        foreach (var m in r.Machines)
            foreach (var c in m.Classes)
                o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{Csv(m.Path)},{ClassWord(c.Class)},{c.Devices},{c.Ready},{c.NeedsBinding},{c.SharesGroup},{c.NotAssignable},{c.NoIommu},{m.Groups},{StateWord(m.State)},{(r.HasBaseline ? m.Drifted.Count.ToString(CultureInfo.InvariantCulture) : "")}"));
    }

    /// <summary>RFC 4180 field: quoted when it holds a comma, quote or line break; a leading =+-@ is prefixed with ' so spreadsheets do not run it.</summary>
    private static string Csv(string s)
    {
        if (s.Length > 0 && s[0] is '=' or '+' or '-' or '@') s = "'" + s;
        return s.AsSpan().IndexOfAny(",\"\r\n") >= 0 ? "\"" + s.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : s;
    }

    public static void WriteJson(CliConsole console, FleetReport r) => JsonOut.Write(console, w =>
    {
        w.WriteStartObject();
        w.WriteStartArray("machines");
        foreach (var m in r.Machines)
        {
            w.WriteStartObject();
            w.WriteString("path", m.Path);
            w.WriteString("source", m.Origin);
            w.WriteNumber("devices", m.Devices);
            w.WriteNumber("groups", m.Groups);
            w.WriteString("iommu", StateWord(m.State));
            w.WriteString("origin", m.Predicted ? "model" : "kernel");
            w.WriteStartObject("classes");
            foreach (var c in m.Classes)
            {
                w.WriteStartObject(ClassWord(c.Class));
                w.WriteNumber("devices", c.Devices);
                w.WriteNumber("ready", c.Ready);
                w.WriteNumber("needs-binding", c.NeedsBinding);
                w.WriteNumber("shares-group", c.SharesGroup);
                w.WriteNumber("not-assignable", c.NotAssignable);
                w.WriteNumber("no-iommu", c.NoIommu);
                w.WriteEndObject();
            }
            w.WriteEndObject();
            JsonOut.StringArray(w, "fingerprints", m.Fingerprints);
            if (r.HasBaseline) JsonOut.StringArray(w, "drifted", m.Drifted);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("skipped");
        foreach (var f in r.Failures)
        {
            w.WriteStartObject();
            w.WriteString("path", f.Path);
            w.WriteString("error", f.Error);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    });
}
