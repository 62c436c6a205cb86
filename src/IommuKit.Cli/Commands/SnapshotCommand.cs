using System.CommandLine;
using IommuKit.Host;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu snapshot -o FILE</c>: captures the files IommuKit reads from this host into a deterministic .tar.gz that
/// every <c>--source</c> accepts. Writes nothing but FILE, and never replaces it without <c>--force</c>.
/// </summary>
internal static class SnapshotCommand
{
    public static Command Create(CliConsole console)
    {
        var output = new Option<string>("--output", "-o")
        {
            Description = "The tarball to write (e.g. host.tar.gz), or - for standard output (then nothing else goes to " +
                          "standard output: the summary and warnings go to standard error). Nothing else is written.",
            HelpName = "FILE",
            Required = true,
        };
        var root = new Option<string>("--root")
        {
            Description = "Read this directory as / instead of the live host (for tests and extracted snapshots).",
            HelpName = "DIR",
            DefaultValueFactory = _ => "/",
        };
        var force = new Option<bool>("--force", "-f") { Description = "Replace FILE if it exists." };
        var command = new Command("snapshot",
            "Capture this host's PCI sysfs (devices with config space, drivers, IOMMU groups, IOMMU units and their " +
            "registers, slots, /proc/cmdline, kernel release) into a gzip'd tar mirroring the host paths, with relative " +
            "symlinks kept. Run as root: unprivileged reads see only 64 bytes of config space (no PCIe type, no ACS).\n" +
            "Examples: iommu snapshot -o host.tar.gz    iommu snapshot -o - | ssh helper iommu groups --source -\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "written"), (ExitCode.Unsupported, "the output cannot be written")) + "\n" +
            SourceLimits.HelpText)
        {
            output, root, force,
        };
        command.SetAction(parse => Run(console, parse.GetValue(output)!, parse.GetValue(root) ?? "/", parse.GetValue(force)));
        return command;
    }

    internal static int Run(CliConsole console, string output, string root, bool force)
    {
        if (string.IsNullOrEmpty(output)) throw new CliException("--output: an empty path names no file; give a file name such as host.tar.gz");
        if (!Directory.Exists(root)) throw new CliException($"--root {root}: no such directory");
        if (output == MachineSource.StandardInputPath) return ToStandardOutput(console, root);
        if (Directory.Exists(output)) throw new CliException($"{output}: is a directory; give a file name such as host.tar.gz");
        if ((File.Exists(output) || new FileInfo(output).LinkTarget is not null) && !force)
            throw new CliException($"{output}: already exists; use --force to replace it");
        SnapshotWriter.Result result;
        try
        {
            result = SnapshotWriter.WriteFile(root, output, overwrite: force);
        }
        catch (IOException ex) when (!force && File.Exists(output))
        {
            throw new CliException($"{output}: already exists; use --force to replace it ({ex.Message})");
        }
        catch (IOException ex)
        {
            throw new CliException($"{output}: cannot write: {ex.Message}", ExitCode.Unsupported);
        }
        catch (UnauthorizedAccessException)
        {
            throw new CliException($"{output}: permission denied", ExitCode.Unsupported);
        }
        foreach (var w in result.Warnings) console.Warn(w);
        console.Out.WriteLine($"{output}: {result.Devices} PCI functions, {result.Members} members");
        return (int)ExitCode.Ok;
    }

    /// <summary><c>-o -</c>: the tarball alone on standard output (refused on a terminal); the summary on standard error.</summary>
    private static int ToStandardOutput(CliConsole console, string root)
    {
        if (console.OutputIsTerminal)
            throw new CliException("-o -: standard output is a terminal; redirect it (iommu snapshot -o - > host.tar.gz) or give a file name");
        var stdout = console.OpenBinaryOutput() ?? throw new CliException("-o -: this console has no byte stream for standard output", ExitCode.Unsupported);
        SnapshotWriter.Result result;
        try
        {
            result = SnapshotWriter.WriteStream(root, stdout);
        }
        catch (IOException ex)
        {
            throw new CliException($"standard output: cannot write: {ex.Message}", ExitCode.Unsupported);
        }
        foreach (var w in result.Warnings) console.Warn(w);
        console.Error.WriteLine($"standard output: {result.Devices} PCI functions, {result.Members} members");
        return (int)ExitCode.Ok;
    }
}
