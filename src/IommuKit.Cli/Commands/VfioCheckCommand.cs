using System.CommandLine;
using System.Text.Json;
using IommuKit.Host;
using IommuKit.Cli.Rendering;
using IommuKit.Passthrough;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu vfio-check ADDRESS|--group N</c>: can the device's group be given to a VM through VFIO, per the source's
/// kernel generation (<see cref="VfioCheck"/>)? Exit 0 viable, 1 not viable, 2 no IOMMU, 3 bad input.
/// </summary>
internal static class VfioCheckCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var json = CommonOptions.Json();
        var cmdline = CommonOptions.Cmdline();
        var pciIds = CommonOptions.PciIds();
        var address = new Argument<string?>("ADDRESS")
        {
            Description = "The device to pass through (0000:01:00.0 or 01:00.0); its whole group is checked.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var group = new Option<int?>("--group", "-i") { Description = "Check group N instead of a device's group.", HelpName = "N" };
        var command = new Command("vfio-check",
            "Can this device (its whole IOMMU group) be passed through to a VM with VFIO? Per device OK/BLOCKING, " +
            "direct (RMRR) regions, interrupt remapping, what the host would lose, a verdict and the fix.\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "viable"), (ExitCode.Negative, "not viable"), (ExitCode.NoIommu, "no IOMMU (the prediction's verdict is shown)")))
        {
            address, group, source, cmdline, json, pciIds,
        };
        command.SetAction(parse => Run(console, parse.GetValue(address), parse.GetValue(group), parse.GetValue(source),
            parse.GetValue(cmdline), parse.GetValue(json), parse.GetValue(pciIds)));
        return command;
    }

    internal static int Run(CliConsole console, string? addressText, int? groupId, string? sourcePath, string? cmdlineText, bool json, string? pciIdsPath)
    {
        if ((addressText is null) == (groupId is null))
            throw new CliException("give either a device ADDRESS or --group N");
        var ids = Inputs.LoadPciIds(pciIdsPath);
        PciAddress? target = addressText is null ? null : Inputs.Address(addressText);
        var machine = Inputs.LoadMachine(sourcePath, console);
        if (target is { } t0) Inputs.Device(machine, t0);
        var analysis = Analysis.Run(machine, cmdlineText);

        var view = target is { } t ? analysis.GroupOf(t) : analysis.Groups.FirstOrDefault(g => g.Id == groupId);
        if (view is null && target is null)
            throw new CliException($"group {groupId}: no such group in {machine.Origin}", ExitCode.InputError);

        bool noIommu = analysis.State == IommuState.Off;
        if (view is null)
        {
            // An active IOMMU, but the device is in no group: no unit manages it (spec 2, "no group").
            var msg = $"{target!.Value} is in no IOMMU group: no IOMMU unit manages it, so VFIO cannot take it";
            if (json)
                WriteJson(console, analysis, target, null, null, ids, noIommu ? "no-iommu" : "not-viable", [msg]);
            else
            {
                GroupsCommand.WriteMachineHeader(console.Out, analysis);
                console.Out.WriteLine();
                console.Out.WriteLine($"Verdict: {Style.For(console).Bad("NOT VIABLE")}: {msg}.");
                analysis.WriteWarnings(console);
            }
            return noIommu ? (int)ExitCode.NoIommu : (int)ExitCode.Negative;
        }

        var verdict = VfioCheck.Evaluate(machine,
            new PassthroughGroup(view.Id, view.Devices.Select(d => d.Address).ToList(), view.ReservedRegions),
            target, analysis.CommandLine);
        int exit = noIommu ? (int)ExitCode.NoIommu : verdict.Viable ? (int)ExitCode.Ok : (int)ExitCode.Negative;
        string verdictWord = noIommu ? "no-iommu" : verdict.Viable ? "viable" : "not-viable";

        if (json)
        {
            WriteJson(console, analysis, target, view, verdict, ids, verdictWord, verdict.Problems);
            return exit;
        }

        var s = Style.For(console);
        var o = console.Out;
        GroupsCommand.WriteMachineHeader(o, analysis);
        o.WriteLine();
        if (noIommu)
        {
            o.WriteLine(s.Bad($"No active IOMMU: {GroupsCommand.NoIommuReason(analysis)}, so nothing can be passed through."));
            o.WriteLine(GroupsCommand.Enable(analysis));
            o.WriteLine("With the IOMMU enabled, the model predicts:");
            o.WriteLine();
        }
        WriteVerdictText(o, s, view, verdict, ids, analysis.Predicted, target);
        o.WriteLine();
        string label = noIommu ? s.Bad("NO IOMMU") : verdict.Viable ? s.Good("VIABLE") : s.Bad("NOT VIABLE");
        string what = target is { } tt ? $"{tt.ToShortString()} (group {view.Id})" : $"group {view.Id}";
        string tail = noIommu ? $"{what} cannot be passed through until the IOMMU is on"
            : verdict.Viable ? $"{what} can be passed through as the source shows it"
            : $"{what} cannot be passed through as the source shows it";
        o.WriteLine($"Verdict: {label}: {tail}.");
        if (verdict.Fixes.Count > 0)
        {
            o.WriteLine("Fix:");
            foreach (var f in verdict.Fixes) o.WriteLine($"  - {f}");
        }
        analysis.WriteWarnings(console);
        return exit;
    }

    internal static void WriteVerdictText(TextWriter o, Style s, GroupView view, VfioVerdict v, PciIds ids, bool predicted, PciAddress? target)
    {
        o.WriteLine(GroupsRenderer.Heading(s, view, predicted));
        string rule = v.Rule == "dma-ownership"
            ? $"DMA ownership (kernel {(v.Kernel?.ToString() ?? "unknown")}, 5.19 and later): a bound driver that uses the DMA API blocks the group"
            : $"viable group (kernel {v.Kernel}, before 5.19): every device driver-less, on vfio, on pci-stub, or a bridge";
        o.WriteLine($"Rule: {rule}");
        for (int i = 0; i < v.Devices.Count; i++)
        {
            var dv = v.Devices[i];
            var dev = view.Devices.First(d => d.Address == dv.Address);
            string status = dv.Ok ? s.Good("OK      ") : s.Bad("BLOCKING");
            string mark = target == dv.Address ? "  <- asked" : "";
            o.WriteLine($"  {status}  {DeviceText.LspciNnsLine(dev, ids)}{mark}");
            o.WriteLine($"            {dv.Reason}");
        }
        if (view.ReservedRegions is { } regions)
            foreach (var r in regions) o.WriteLine($"  reserved {r}");
        if (v.Problems.Count > 0)
        {
            o.WriteLine("Problems:");
            foreach (var p in v.Problems) o.WriteLine($"  - {s.Bad(p)}");
        }
        if (v.HostLosses.Count > 0)
        {
            o.WriteLine("If the whole group goes to a VM, the host loses:");
            foreach (var l in v.HostLosses) o.WriteLine($"  - {l.Address.ToShortString()} {l.What}");
        }
        if (v.Notes.Count > 0)
        {
            o.WriteLine("Notes:");
            foreach (var n in v.Notes) o.WriteLine($"  - {n}");
        }
    }

    /// <summary>
    /// The one JSON shape of docs/json.md, with or without a group: a device in no group has <c>group</c> and
    /// <c>rule</c> null, empty per-device lists and its reason in <c>problems</c>.
    /// </summary>
    private static void WriteJson(CliConsole console, Analysis analysis, PciAddress? target, GroupView? view, VfioVerdict? v,
        PciIds ids, string verdictWord, IEnumerable<string> problems) => JsonOut.Write(console, w =>
    {
        w.WriteStartObject();
        GroupsCommand.WriteMachineJson(w, analysis);
        JsonOut.NullableString(w, "target", target?.ToString());
        w.WritePropertyName("group");
        if (view is null) w.WriteNullValue(); else GroupsRenderer.WriteGroupJson(w, view, ids);
        JsonOut.NullableString(w, "rule", v?.Rule);
        w.WriteBoolean("viable", verdictWord == "viable");
        w.WriteString("verdict", verdictWord);
        w.WriteStartArray("devices");
        foreach (var d in v?.Devices ?? [])
        {
            w.WriteStartObject();
            w.WriteString("address", d.Address.ToString());
            JsonOut.NullableString(w, "driver", d.Driver);
            w.WriteString("status", d.Ok ? "ok" : "blocking");
            w.WriteString("reason", d.Reason);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        JsonOut.StringArray(w, "problems", problems);
        w.WriteStartArray("host_losses");
        foreach (var l in v?.HostLosses ?? [])
        {
            w.WriteStartObject();
            w.WriteString("address", l.Address.ToString());
            w.WriteString("what", l.What);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        JsonOut.StringArray(w, "fixes", v?.Fixes ?? []);
        JsonOut.StringArray(w, "notes", v?.Notes ?? []);
        JsonOut.StringArray(w, "disagreements", analysis.Disagreements.Select(d => d.Text));
        JsonOut.StringArray(w, "warnings", analysis.Notes);
        w.WriteEndObject();
    });
}
