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
        var files = Files(args);
        if (files.Count == 0) throw new CliException("no snapshot, dump or JSON machine found in " + string.Join(" ", args), ExitCode.InputError);
        var baseline = baselinePath is null ? null : ReadBaseline(baselinePath);
        using var bar = ProgressLine.Start(console, files.Count);
        var report = Fleet.Survey(files, MachineSource.Load, baseline, bar is null ? null : bar.Report);
        bar?.Dispose();
        foreach (var f in report.Failures) console.Error.WriteLine($"warning: skipped {f.Error}");
        if (json) FleetText.WriteJson(console, report);
        else if (csv) FleetText.WriteCsv(console, report);
        else FleetText.WriteText(console, report);
        if (report.Machines.Count == 0) return (int)ExitCode.InputError;
        return report.DriftedMachines.Any() ? (int)ExitCode.Negative : (int)ExitCode.Ok;
    }

    /// <summary>The files to read: each FILE as given, and each DIR's files (sorted) whose first bytes look like a machine.</summary>
    private static List<string> Files(string[] args)
    {
        var files = new List<string>();
        foreach (var a in args)
        {
            if (Directory.Exists(a))
            {
                foreach (var f in Directory.GetFiles(a).Order(StringComparer.Ordinal))
                    if (LooksLikeMachine(f)) files.Add(f);
            }
            else if (File.Exists(a)) files.Add(a);
            else throw new CliException($"{a}: no such file or directory", ExitCode.InputError);
            if (files.Count > Fleet.MaxMachines) throw new CliException($"more than {Fleet.MaxMachines} machines: survey them in parts", ExitCode.InputError);
        }
        return files;
    }

    private static bool LooksLikeMachine(string path)
    {
        try
        {
            using var s = File.OpenRead(path);
            var head = new byte[8192];
            int n = s.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            return MachineSource.Detect(head.AsSpan(0, n)) is not null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return true; // let the survey report why it cannot be read
        }
    }

    private static HashSet<string> ReadBaseline(string path)
    {
        string text;
        try
        {
            if (new FileInfo(path).Length > MaxBaselineBytes) throw new CliException($"--baseline {path}: larger than {MaxBaselineBytes >> 20} MiB", ExitCode.InputError);
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"--baseline {path}: cannot read: {ex.Message}", ExitCode.InputError);
        }
        var set = new HashSet<string>(StringComparer.Ordinal);
        int lineNo = 0;
        foreach (var raw in text.Split('\n'))
        {
            lineNo++;
            var line = raw.Split('#')[0].Trim();
            if (line.Length == 0) continue;
            var token = line.Split((char[])[' ', '\t'], 2)[0];
            if (token.Length != 12 || !token.All(char.IsAsciiHexDigitLower))
                throw new CliException($"--baseline {path}:{lineNo}: '{token}' is not a group fingerprint (12 lower-case hex digits)", ExitCode.InputError);
            set.Add(token);
        }
        return set;
    }
}

/// <summary>A one-line progress bar on standard error, only when it is a terminal; redrawn at most ten times a second.</summary>
internal sealed class ProgressLine : IDisposable
{
    private readonly TextWriter _err;
    private readonly int _total;
    private readonly object _sync = new();
    private long _lastTicks;
    private bool _drawn;

    private ProgressLine(TextWriter err, int total) { _err = err; _total = total; }

    /// <summary>A bar when standard error is the process's and a terminal; null otherwise (tests, pipes, files).</summary>
    public static ProgressLine? Start(CliConsole console, int total) =>
        ReferenceEquals(console.Error, Console.Error) && !Console.IsErrorRedirected && total > 1 ? new ProgressLine(console.Error, total) : null;

    public void Report(int done)
    {
        lock (_sync)
        {
            long now = Environment.TickCount64;
            if (done < _total && now - _lastTicks < 100) return;
            _lastTicks = now;
            int width = 30, filled = (int)((long)done * width / _total);
            _err.Write($"\r[{new string('#', filled)}{new string(' ', width - filled)}] {done}/{_total}");
            _drawn = true;
        }
    }

    public void Dispose()
    {
        lock (_sync)
        {
            if (_drawn) _err.Write("\r" + new string(' ', 50) + "\r");
            _drawn = false;
        }
    }
}
