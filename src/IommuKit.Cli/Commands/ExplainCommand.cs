using System.CommandLine;
using System.Text;
using IommuKit.Cli.Rendering;
using IommuKit.Grouping;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu explain ADDRESS</c>: the chain of decisions that put a device in its group (<see cref="HostAnalysis.Explain"/>),
/// each naming the device and the rule. Exit 0; 1 when the model disagrees with the kernel about this device's group;
/// 2 when no IOMMU is active (the chain is then the prediction's); 3 for an unknown address.
/// </summary>
internal static class ExplainCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var json = CommonOptions.Json();
        var cmdline = CommonOptions.Cmdline();
        var pciIds = CommonOptions.PciIds();
        var address = new Argument<string>("ADDRESS") { Description = "The device: " + DeviceSelector.Forms + "; each device it names is explained." };
        var command = new Command("explain", "Why a device is in its IOMMU group: the chain of decisions, each naming the device and the rule.\n" +
            "Examples: iommu explain 01:00.0    iommu explain 03:00 (every function)    iommu explain 10de:2484 --json\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "ok"), (ExitCode.Negative, "the model disagrees with the kernel about this device"), (ExitCode.NoIommu, "no IOMMU (the prediction's chain)")))
        {
            address, source, cmdline, json, pciIds,
        };
        command.SetAction(parse => Run(console, parse.GetValue(address)!, parse.GetValue(source), parse.GetValue(cmdline), parse.GetValue(json), parse.GetValue(pciIds)));
        return command;
    }

    /// <summary><c>AcsNotIsolated</c> → <c>acs-not-isolated</c>, the JSON spelling of a step kind.</summary>
    internal static string Kebab(GroupStepKind kind)
    {
        var name = kind.ToString();
        var sb = new StringBuilder(name.Length + 4);
        for (int i = 0; i < name.Length; i++)
        {
            if (char.IsUpper(name[i]) && i > 0) sb.Append('-');
            sb.Append(char.ToLowerInvariant(name[i]));
        }
        return sb.ToString();
    }

    internal static int Run(CliConsole console, string addressText, string? sourcePath, string? cmdlineText, bool json, string? pciIdsPath)
    {
        var ids = Inputs.LoadPciIds(pciIdsPath);
        var selector = DeviceSelector.Parse(addressText, "ADDRESS");
        var machine = Inputs.LoadMachine(sourcePath, console, json);
        var devices = selector.Select(machine.Topology, machine.Origin);
        var report = HostAnalysis.Analyze(machine, cmdlineText);
        var all = devices.Select(d => HostAnalysis.Explain(report, d.Address)).ToList();
        // One device: one object; several (a slot, an id): an array of them, in address order (docs/json.md).
        if (json && all.Count == 1) JsonOut.Write(console, w => WriteJson(w, all[0], ids));
        else if (json) JsonOut.Write(console, w => { w.WriteStartArray(); foreach (var e in all) WriteJson(w, e, ids); w.WriteEndArray(); });
        else
        {
            ReportText.WriteHeader(console.Out, report);
            foreach (var e in all) WriteText(console, e, ids);
            ReportText.WriteWarnings(console, report, all.SelectMany(e => e.Disagreements).Distinct());
        }
        return all.Max(e => e.Report.State == IommuState.Off ? (int)ExitCode.NoIommu : e.Disagreements.Count > 0 ? (int)ExitCode.Negative : (int)ExitCode.Ok);
    }

    private static void WriteJson(System.Text.Json.Utf8JsonWriter w, ExplainReport e, PciIds ids)
    {
        w.WriteStartObject();
        ReportText.WriteMachineJson(w, e.Report);
        w.WritePropertyName("device");
        GroupsRenderer.WriteDeviceJson(w, e.Device, ids, e.Report.Machine);
        w.WritePropertyName("group");
        if (e.Group is null) w.WriteNullValue(); else GroupsRenderer.WriteGroupJson(w, e.Group, ids, e.Report.Machine);
        w.WritePropertyName("model_group");
        if (e.ModelGroup is null) w.WriteNullValue(); else GroupsRenderer.WriteGroupJson(w, e.ModelGroup, ids, e.Report.Machine);
        w.WriteStartArray("steps");
        foreach (var st in e.Steps)
        {
            w.WriteStartObject();
            w.WriteString("kind", Kebab(st.Kind));
            w.WriteString("device", st.Device.ToString());
            w.WriteString("text", st.Text);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("bonds");
        foreach (var b in e.Bonds)
        {
            w.WriteStartObject();
            w.WriteString("member", b.Member.ToString());
            w.WriteString("kind", b.Kind.Name());
            w.WriteString("text", b.Text);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        JsonOut.StringArray(w, "disagreements", e.Disagreements.Select(d => d.Text));
        JsonOut.StringArray(w, "warnings", e.Report.Notes);
        w.WriteEndObject();
    }

    private static void WriteText(CliConsole console, ExplainReport e, PciIds ids)
    {
        var s = Style.For(console);
        var o = console.Out;
        var report = e.Report;
        o.WriteLine();
        if (report.State == IommuState.Off)
        {
            o.WriteLine(s.Bad($"No active IOMMU: {report.NoIommuReason}. The chain below is the prediction with the IOMMU enabled."));
            o.WriteLine();
        }
        var line = DeviceText.LspciNnsLine(e.Device, ids);
        if (e.Device.Driver is not null) line += $"  driver: {s.Good(e.Device.Driver)}";
        o.WriteLine(line);
        if (e.Group is not { } shown)
            o.WriteLine($"In no IOMMU group{(report.Predicted ? " (predicted)" : "")}.");
        else
        {
            var others = shown.Devices.Where(d => d.Address != e.Device.Address).Select(d => d.Address.ToShortString()).ToList();
            string whose = report.Predicted ? "predicted by the model" : e.Disagreements.Count == 0 ? "the kernel's; the model agrees" : "the kernel's";
            o.WriteLine($"{s.Bold($"Group {shown.Id}")} ({whose})  {s.Dim($"fingerprint {shown.Fingerprint}")}");
            o.WriteLine(others.Count == 0 ? "Alone in its group." : $"Shares it with: {string.Join(" ", others)}");
            foreach (var b in e.Bonds) o.WriteLine($"  {s.Dim(b.Kind.Name() + ":")} {b.Text}");
        }
        o.WriteLine("Why:");
        for (int i = 0; i < e.Steps.Count; i++) o.WriteLine($"  {i + 1}. {e.Steps[i].Text}");
    }
}
