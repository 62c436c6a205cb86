using System.CommandLine;
using IommuKit.Cli.Rendering;
using IommuKit.Host;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu fleet DIR|FILES...</c>: many machines at once (<see cref="Fleet.Survey"/>): per machine and device class,
/// how many devices pass through alone, need binding, share a group; which machines drifted from a baseline.
/// </summary>
internal static class FleetCommand
{
    /// <summary>Most bytes of a baseline file: a million fingerprints of 13 bytes fit many times over.</summary>
    public const int MaxBaselineBytes = 64 * 1024 * 1024;

    public static Command Create(CliConsole console)
    {
        var paths = new Argument<string[]>("PATHS")
        {
            Description = "Snapshots, lspci dumps or JSON machines, or directories of them (every file in a directory that " +
                          "looks like one; not recursive).",
            Arity = ArgumentArity.OneOrMore,
        };
        var json = CommonOptions.Json();
        var csv = new Option<bool>("--csv") { Description = "Print CSV (one row per machine and device class) instead of text." };
        var baseline = new Option<string?>("--baseline")
        {
            Description = "A file of group fingerprints, one per line (the 'fingerprint' of 'iommu groups --json', or " +
                          "'fleet --json'); a machine with a group not in it has drifted. '#' starts a comment.",
            HelpName = "FILE",
        };
        var command = new Command("fleet",
            "Survey many machines: per machine and per device class (GPU, NIC, NVMe), how many devices can be passed " +
            "through alone (ready), need binding, share a group, cannot be assigned; machines whose groups drifted from a " +
            "baseline. Unreadable files are reported and skipped.\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "surveyed, no drift"), (ExitCode.Negative, "some machine drifted from the baseline"),
                (ExitCode.InputError, "no machine could be read")))
        {
            paths, json, csv, baseline,
        };
        command.SetAction(parse => Run(console, parse.GetValue(paths) ?? [], parse.GetValue(json), parse.GetValue(csv), parse.GetValue(baseline)));
        return command;
    }

    internal static int Run(CliConsole console, string[] args, bool json, bool csv, string? baselinePath)
    {
        if (json && csv) throw new CliException("give --json or --csv, not both");
        var files = MachineFiles.Find(args, Fleet.MaxMachines);
        if (files.Count == 0) throw new CliException("no snapshot, dump or JSON machine found in " + string.Join(" ", args), ExitCode.InputError);
        var baseline = baselinePath is null ? null : ReadBaseline(baselinePath);
        var report = FleetProgress.Run(console, files.Count, "reading machines",
            progress => Fleet.Survey(files, MachineSource.Load, baseline, progress));
        foreach (var f in report.Failures) console.Error.WriteLine($"warning: skipped {f.Error}");
        if (json) FleetText.WriteJson(console, report);
        else if (csv) FleetText.WriteCsv(console, report);
        else FleetText.WriteText(console, report);
        if (report.Machines.Count == 0) return (int)ExitCode.InputError;
        return report.DriftedMachines.Any() ? (int)ExitCode.Negative : (int)ExitCode.Ok;
    }

    private static HashSet<string> ReadBaseline(string path)
    {
        var origin = "--baseline " + path;
        try
        {
            return Fleet.ParseBaseline(MachineFiles.ReadText(path, origin, MaxBaselineBytes), origin);
        }
        catch (FileNotFoundException)
        {
            throw new CliException($"{origin}: no such file", ExitCode.InputError);
        }
    }
}
