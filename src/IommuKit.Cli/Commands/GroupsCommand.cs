using System.CommandLine;
using IommuKit.Cli.Rendering;
using IommuKit.Host;
using IommuKit.Passthrough;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu groups</c>: every IOMMU group with its devices, type, reserved regions and fingerprint
/// (<see cref="HostAnalysis.Analyze"/>). Exit 0; 1 when the model disagrees with the kernel; 2 when the source has no
/// active IOMMU (the prediction is still shown).
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
        var related = new Option<bool>("--related", "-r") { Description = "Also list, under each group, the functions of its cards that sit in other groups (a GPU's HDMI audio, USB-C), as ls-iommu -r does." };
        var group = new Option<int[]>("--group", "-i") { Description = "Only group N (repeatable).", HelpName = "N", AllowMultipleArgumentsPerToken = false };
        var command = new Command("groups", "List IOMMU groups with their devices, default domain type, reserved regions and fingerprint: the kernel's, checked against the model, or the model's prediction.\n" +
            "Examples: iommu groups    iommu groups --gpu --audio -k    iommu groups --id 10de:2484 --pciaddr 03:00    lspci -vvnn | iommu groups --source -\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "ok"), (ExitCode.Negative, "the model disagrees with the kernel"), (ExitCode.NoIommu, "no IOMMU (the prediction is shown)")))
        {
            source, cmdline, json, legacy, group, related, pciIds,
        };
        var filters = new FilterOptions(command, "groups holding");
        command.SetAction(parse =>
        {
            var filter = new Filter(filters.Filter(parse), parse.GetValue(group) ?? []);
            return Run(console, parse.GetValue(source), parse.GetValue(cmdline), parse.GetValue(json), parse.GetValue(legacy), filter, parse.GetValue(pciIds),
                parse.GetValue(filters.Kernel), parse.GetValue(related));
        });
        return command;
    }

    /// <summary>Group numbers and device filters combine with AND: a group is kept when one of its devices passes.</summary>
    internal sealed record Filter(DeviceFilter Devices, int[] Groups)
    {
        public static Filter None { get; } = new(DeviceFilter.None, []);

        public bool Any => Devices.Any || Groups.Length > 0;

        public bool Keeps(GroupReport g) =>
            (Groups.Length == 0 || Array.IndexOf(Groups, g.Id) >= 0) && (!Devices.Any || g.Devices.Any(Devices.Keeps));

        public string Describe() => string.Join(" ", new[] { Devices.Describe() }.Where(x => x.Length > 0).Concat(Groups.Select(g => $"--group {g}")));
    }

    internal static int Run(CliConsole console, string? sourcePath, string? cmdlineText, bool json, bool legacy, Filter filter, string? pciIdsPath,
        bool kernel = false, bool related = false, Machine? machine = null)
    {
        if (json && legacy) throw new CliException("--json and --legacy cannot be combined");
        if (legacy && related) throw new CliException("--legacy and --related cannot be combined: the classic lines have no place for them");
        var ids = Inputs.LoadPciIds(pciIdsPath);
        // machine: a test seam (a machine loaded another way, e.g. with the sparse config read forced).
        var report = HostAnalysis.Analyze(machine ?? Inputs.LoadMachine(sourcePath, console, json), cmdlineText);
        foreach (var n in filter.Groups)
            if (report.GroupById(n) is null)
                throw new CliException($"group {n}: no such group in {report.Machine.Origin}", ExitCode.InputError);
        var groups = report.Groups.Where(filter.Keeps).ToList();
        int exit = report.State == IommuState.Off ? (int)ExitCode.NoIommu
            : report.Disagreements.Count > 0 ? (int)ExitCode.Negative : (int)ExitCode.Ok;
        if (legacy) WriteLegacy(console, report, groups, ids);
        else if (json) WriteJson(console, report, groups, ids, related);
        else WriteText(console, report, groups, ids, filter, kernel, related);
        return exit;
    }

    private static void WriteLegacy(CliConsole console, HostReport report, List<GroupReport> groups, PciIds ids)
    {
        ReportText.WriteWarnings(console, report);
        if (report.State == IommuState.Off)
        {
            console.Error.WriteLine($"iommu: no active IOMMU on {report.Machine.Origin}: the kernel made no IOMMU groups. " +
                                    "Run 'iommu groups' without --legacy to see the groups it would make with the IOMMU enabled.");
            return;
        }
        GroupsRenderer.WriteLegacy(console.Out, groups, ids);
    }

    private static void WriteJson(CliConsole console, HostReport report, List<GroupReport> groups, PciIds ids, bool related) => JsonOut.Write(console, w =>
    {
        w.WriteStartObject();
        ReportText.WriteMachineJson(w, report);
        w.WriteStartArray("groups");
        foreach (var g in groups) GroupsRenderer.WriteGroupJson(w, g, ids, report.Machine, related ? HostAnalysis.RelatedFunctions(report, g) : null);
        w.WriteEndArray();
        JsonOut.StringArray(w, "disagreements", report.Disagreements.Select(d => d.Text));
        JsonOut.StringArray(w, "warnings", report.Notes);
        w.WriteEndObject();
    });

    private static void WriteText(CliConsole console, HostReport report, List<GroupReport> groups, PciIds ids, Filter filter, bool kernel, bool related)
    {
        var s = Style.For(console);
        var o = console.Out;
        ReportText.WriteHeader(o, report);
        if (report.State == IommuState.Off)
        {
            o.WriteLine(s.Bad($"No active IOMMU: {report.NoIommuReason}, so no device can be passed through."));
            o.WriteLine(report.EnableAdvice);
            o.WriteLine($"Prediction: the {report.Groups.Count} groups the kernel would make with the IOMMU enabled:");
        }
        else if (report.Predicted)
        {
            o.WriteLine($"{report.Groups.Count} IOMMU groups predicted by the model{(report.CommandLineOverridden ? " under --cmdline" : "")}.");
            if (report.Model.NumbersReason is { } why) o.WriteLine($"Group numbers may differ from the kernel's: {why}.");
        }
        else
        {
            string check = report.Disagreements.Count == 0 ? "the model agrees" : s.Bad($"the model disagrees in {report.Disagreements.Count} place(s)");
            o.WriteLine($"{report.Groups.Count} IOMMU groups from the kernel; {check}.");
        }
        if (filter.Any) o.WriteLine($"Showing {groups.Count} of them ({filter.Describe()}).");
        o.WriteLine();
        GroupsRenderer.WriteGroups(o, s, groups, ids, report.Predicted, report.Machine, related ? g => HostAnalysis.RelatedFunctions(report, g) : null, kernel);
        ReportText.WriteWarnings(console, report);
    }
}
