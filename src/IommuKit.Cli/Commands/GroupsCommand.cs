using System.CommandLine;
using IommuKit.Host;
using IommuKit.Cli.Rendering;
using IommuKit.Passthrough;
using IommuKit.Pci;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu groups</c>: every IOMMU group with its devices, type, reserved regions and fingerprint. The kernel's groups
/// when the source holds them (checked against the model), otherwise the model's prediction. Exit 0; 1 when the model
/// disagrees with the kernel; 2 when the source has no active IOMMU (the prediction is still shown).
/// </summary>
internal static class GroupsCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var json = CommonOptions.Json();
        var cmdline = CommonOptions.Cmdline();
        var pciIds = CommonOptions.PciIds();
        var legacy = new Option<bool>("--legacy") { Description = "Print exactly the classic 'IOMMU Group N <lspci -nns line>' lines, for scripts and forum advice." };
        var gpu = new Option<bool>("--gpu", "-g") { Description = "Only groups holding a display controller (VGA, 3D, other)." };
        var usb = new Option<bool>("--usb", "-u") { Description = "Only groups holding a USB controller." };
        var network = new Option<bool>("--network", "-n") { Description = "Only groups holding a network controller (Ethernet, Wi-Fi…)." };
        var storage = new Option<bool>("--storage") { Description = "Only groups holding a storage controller (SATA, NVMe, SAS, RAID…)." };
        var group = new Option<int[]>("--group", "-i")
        {
            Description = "Only group N (repeatable).",
            HelpName = "N",
            AllowMultipleArgumentsPerToken = false,
        };
        var command = new Command("groups", "List IOMMU groups with their devices, default domain type, reserved regions and fingerprint: the kernel's, checked against the model, or the model's prediction.\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "ok"), (ExitCode.Negative, "the model disagrees with the kernel"), (ExitCode.NoIommu, "no IOMMU (the prediction is shown)")))
        {
            source, cmdline, json, legacy, gpu, usb, network, storage, group, pciIds,
        };
        command.SetAction(parse =>
        {
            var filter = new Filter(parse.GetValue(gpu), parse.GetValue(usb), parse.GetValue(network), parse.GetValue(storage), parse.GetValue(group) ?? []);
            return Run(console, parse.GetValue(source), parse.GetValue(cmdline), parse.GetValue(json), parse.GetValue(legacy), filter, parse.GetValue(pciIds));
        });
        return command;
    }

    internal sealed record Filter(bool Gpu, bool Usb, bool Network, bool Storage, int[] Groups)
    {
        public bool Any => Gpu || Usb || Network || Storage || Groups.Length > 0;

        /// <summary>Group numbers and classes combine with AND; classes among themselves with OR.</summary>
        public bool Keeps(GroupView g)
        {
            if (Groups.Length > 0 && Array.IndexOf(Groups, g.Id) < 0) return false;
            if (!(Gpu || Usb || Network || Storage)) return true;
            foreach (var d in g.Devices)
            {
                uint c = d.ClassCode;
                if ((Gpu && PciClasses.IsGpu(c)) || (Usb && PciClasses.IsUsb(c)) || (Network && PciClasses.IsNetwork(c)) || (Storage && PciClasses.IsStorage(c)))
                    return true;
            }
            return false;
        }
    }

    internal static int Run(CliConsole console, string? sourcePath, string? cmdlineText, bool json, bool legacy, Filter filter, string? pciIdsPath)
    {
        if (json && legacy) throw new CliException("--json and --legacy cannot be combined");
        var ids = Inputs.LoadPciIds(pciIdsPath);
        var machine = Inputs.LoadMachine(sourcePath, console);
        var analysis = Analysis.Run(machine, cmdlineText);
        var groups = analysis.Groups.Where(filter.Keeps).ToList();
        foreach (var n in filter.Groups)
            if (!analysis.Groups.Any(g => g.Id == n))
                throw new CliException($"group {n}: no such group in {machine.Origin}", ExitCode.InputError);

        int exit = analysis.State == IommuState.Off ? (int)ExitCode.NoIommu
            : analysis.Disagreements.Count > 0 ? (int)ExitCode.Negative
            : (int)ExitCode.Ok;

        if (legacy)
        {
            analysis.WriteWarnings(console);
            if (analysis.State == IommuState.Off)
            {
                console.Error.WriteLine($"iommu: no active IOMMU on {machine.Origin}: the kernel made no IOMMU groups. " +
                                        "Run 'iommu groups' without --legacy to see the groups it would make with the IOMMU enabled.");
                return exit;
            }
            GroupsRenderer.WriteLegacy(console.Out, groups, ids);
            return exit;
        }
        if (json)
        {
            JsonOut.Write(console, w =>
            {
                w.WriteStartObject();
                WriteMachineJson(w, analysis);
                w.WriteStartArray("groups");
                foreach (var g in groups) GroupsRenderer.WriteGroupJson(w, g, ids);
                w.WriteEndArray();
                JsonOut.StringArray(w, "disagreements", analysis.Disagreements.Select(d => d.Text));
                JsonOut.StringArray(w, "warnings", analysis.Notes);
                w.WriteEndObject();
            });
            return exit;
        }

        var s = Style.For(console);
        var o = console.Out;
        WriteMachineHeader(o, analysis);
        if (analysis.State == IommuState.Off)
        {
            o.WriteLine(s.Bad($"No active IOMMU: {NoIommuReason(analysis)}, so no device can be passed through."));
            o.WriteLine(Enable(analysis));
            o.WriteLine($"Prediction: the {analysis.Groups.Count} groups the kernel would make with the IOMMU enabled:");
        }
        else if (analysis.Predicted)
        {
            o.WriteLine($"{analysis.Groups.Count} IOMMU groups predicted by the model{(analysis.CommandLineOverridden ? " under --cmdline" : "")}.");
            if (analysis.Model.NumbersReason is { } why) o.WriteLine($"Group numbers may differ from the kernel's: {why}.");
        }
        else
        {
            string check = analysis.Disagreements.Count == 0 ? "the model agrees"
                : s.Bad($"the model disagrees in {analysis.Disagreements.Count} place(s)");
            o.WriteLine($"{analysis.Groups.Count} IOMMU groups from the kernel; {check}.");
        }
        if (filter.Any) o.WriteLine($"Showing {groups.Count} of them ({Describe(filter)}).");
        o.WriteLine();
        GroupsRenderer.WriteGroups(o, s, groups, ids, analysis.Predicted);
        analysis.WriteWarnings(console);
        return exit;
    }

    /// <summary>Why there is no IOMMU, in words: the kernel's empty groups, or the model under --cmdline.</summary>
    internal static string NoIommuReason(Analysis a) =>
        a.CommandLineOverridden ? $"under --cmdline, {a.StateReason}" : "the kernel made no IOMMU groups";

    /// <summary>How to turn the IOMMU on: drop the switch that turned it off on the command line used (the source's, or
    /// <c>--cmdline</c>), else enable it in the firmware.</summary>
    internal static string Enable(Analysis a)
    {
        var cmd = a.CommandLine;
        if (cmd.LastValue("intel_iommu") is "off" or "0") return "The command line turns it off (intel_iommu=off): remove that, and enable VT-d in the firmware.";
        if (cmd.LastValue("amd_iommu") is "off" or "0") return "The command line turns it off (amd_iommu=off): remove that, and enable AMD-Vi/IOMMU in the firmware.";
        return "Enable VT-d / AMD-Vi (IOMMU) in the firmware; on Intel with kernels that do not enable it by default add intel_iommu=on.";
    }

    private static string Describe(Filter f)
    {
        var parts = new List<string>();
        if (f.Gpu) parts.Add("--gpu");
        if (f.Usb) parts.Add("--usb");
        if (f.Network) parts.Add("--network");
        if (f.Storage) parts.Add("--storage");
        foreach (var g in f.Groups) parts.Add($"--group {g}");
        return string.Join(" ", parts);
    }

    /// <summary>
    /// The first lines of every text report: where the machine came from, its kernel and the command-line parameters
    /// that matter here (<see cref="CommandLineText.Summary"/>; the JSON <c>cmdline</c> keeps the whole text).
    /// </summary>
    internal static void WriteMachineHeader(TextWriter o, Analysis a)
    {
        var m = a.Machine;
        o.WriteLine($"Source: {m.Origin}");
        var iommu = m.IommuUnits.Count == 0 ? "none" : $"{m.IommuKind.ToString().ToLowerInvariant()} ({string.Join(", ", m.IommuUnits.Select(u => u.Name))})";
        o.WriteLine($"Kernel: {m.KernelRelease ?? "unknown"}; IOMMU units: {iommu}");
        o.WriteLine($"Command line{(a.CommandLineOverridden ? " (--cmdline)" : "")}: {CommandLineText.Summary(a.CommandLine)}");
    }

    internal static void WriteMachineJson(System.Text.Json.Utf8JsonWriter w, Analysis a)
    {
        w.WriteString("source", a.Machine.Origin);
        JsonOut.NullableString(w, "kernel", a.Machine.KernelRelease);
        w.WriteString("cmdline", a.CommandLine.Text);
        if (a.State == IommuState.Assumed) w.WriteNull("iommu_active");
        else w.WriteBoolean("iommu_active", a.State == IommuState.Active);
        w.WriteString("origin", a.Predicted ? "model" : "kernel");
        // Issue 9: whether the model's group numbers can be the kernel's, and why not (bind order, unknown kernel, firmware order).
        w.WriteBoolean("numbers_predictable", a.Model.NumbersPredictable);
        JsonOut.NullableString(w, "numbers_reason", a.Model.NumbersReason);
    }
}
