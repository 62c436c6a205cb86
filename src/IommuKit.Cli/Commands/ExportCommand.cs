using System.CommandLine;
using IommuKit.Host;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary><c>iommu export</c>: any source as an IommuKit JSON machine (docs/machine-json.md).</summary>
internal static class ExportCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var noConfig = new Option<bool>("--no-config")
        {
            Description = "Leave out each device's raw config space (hex); the decoded facts stay. Smaller, and easier to edit by hand.",
        };
        var command = new Command("export",
            $"Write the machine as versioned JSON (\"format\": \"{MachineJson.FormatName}\", \"version\": {MachineJson.CurrentVersion}) on " +
            "standard output; reading it back with --source gives the same machine.\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "ok")) + "\n" + SourceLimits.HelpText)
        {
            source, noConfig,
        };
        command.SetAction(parse => Run(console, parse.GetValue(source), parse.GetValue(noConfig)));
        return command;
    }

    internal static int Run(CliConsole console, string? source, bool noConfig)
    {
        // The raw config bytes are written: a live host's config files are read whole (the default read takes only
        // the registers the model decodes); without them, the model's read is enough.
        var machine = SourceResolver.Resolve(source, console, config: noConfig ? ConfigRead.Needed : ConfigRead.Whole);
        console.Out.WriteLine(MachineJson.ToJson(machine, includeConfig: !noConfig));
        return (int)ExitCode.Ok;
    }
}
