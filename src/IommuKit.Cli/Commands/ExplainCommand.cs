using System.CommandLine;
using System.Text;
using IommuKit.Host;
using IommuKit.Cli.Rendering;
using IommuKit.Grouping;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu explain ADDRESS</c>: the chain of decisions that put a device in its group (<see cref="GroupingResult.Explain"/>),
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
        var address = new Argument<string>("ADDRESS") { Description = "The device (0000:01:00.0 or 01:00.0)." };
        var command = new Command("explain", "Why a device is in its IOMMU group: the chain of decisions, each naming the device and the rule.\n" +
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
        var address = Inputs.Address(addressText);
        var machine = Inputs.LoadMachine(sourcePath, console);
        var device = Inputs.Device(machine, address);
        var analysis = Analysis.Run(machine, cmdlineText);
        var steps = analysis.Model.Explain(address);
        var shown = analysis.GroupOf(address);
        var modelGroup = analysis.ModelGroups.FirstOrDefault(g => g.Devices.Any(d => d.Address == address));
        var mine = analysis.DisagreementsAbout(address);
        int exit = analysis.State == IommuState.Off ? (int)ExitCode.NoIommu : mine.Count > 0 ? (int)ExitCode.Negative : (int)ExitCode.Ok;

        if (json)
        {
            JsonOut.Write(console, w =>
            {
                w.WriteStartObject();
                GroupsCommand.WriteMachineJson(w, analysis);
                w.WritePropertyName("device");
                GroupsRenderer.WriteDeviceJson(w, device, ids);
                w.WritePropertyName("group");
                if (shown is null) w.WriteNullValue(); else GroupsRenderer.WriteGroupJson(w, shown, ids);
                w.WritePropertyName("model_group");
                if (modelGroup is null) w.WriteNullValue(); else GroupsRenderer.WriteGroupJson(w, modelGroup, ids);
                w.WriteStartArray("steps");
                foreach (var st in steps)
                {
                    w.WriteStartObject();
                    w.WriteString("kind", Kebab(st.Kind));
                    w.WriteString("device", st.Device.ToString());
                    w.WriteString("text", st.Text);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                JsonOut.StringArray(w, "disagreements", mine.Select(d => d.Text));
                JsonOut.StringArray(w, "warnings", analysis.Notes);
                w.WriteEndObject();
            });
            return exit;
        }

        var s = Style.For(console);
        var o = console.Out;
        GroupsCommand.WriteMachineHeader(o, analysis);
        o.WriteLine();
        if (analysis.State == IommuState.Off)
        {
            o.WriteLine(s.Bad($"No active IOMMU: {GroupsCommand.NoIommuReason(analysis)}. The chain below is the prediction with the IOMMU enabled."));
            o.WriteLine();
        }
        var line = $"{DeviceText.LspciNnsLine(device, ids)}";
        if (device.Driver is not null) line += $"  driver: {s.Good(device.Driver)}";
        o.WriteLine(line);
        if (shown is null)
            o.WriteLine($"In no IOMMU group{(analysis.Predicted ? " (predicted)" : "")}.");
        else
        {
            var others = shown.Devices.Where(d => d.Address != address).Select(d => d.Address.ToShortString()).ToList();
            string whose = analysis.Predicted ? "predicted by the model" : mine.Count == 0 ? "the kernel's; the model agrees" : "the kernel's";
            o.WriteLine($"{s.Bold($"Group {shown.Id}")} ({whose})  {s.Dim($"fingerprint {shown.Fingerprint}")}");
            o.WriteLine(others.Count == 0 ? "Alone in its group." : $"Shares it with: {string.Join(" ", others)}");
        }
        o.WriteLine("Why:");
        for (int i = 0; i < steps.Count; i++) o.WriteLine($"  {i + 1}. {steps[i].Text}");
        analysis.WriteWarnings(console, mine);
        return exit;
    }
}
