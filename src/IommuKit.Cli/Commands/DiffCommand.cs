using System.CommandLine;
using IommuKit.Cli.Rendering;
using IommuKit.Host;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu diff A B</c>: how the groups changed between two sources (a BIOS or kernel update), with what changed in
/// the machine and the model's reasons per device (<see cref="HostAnalysis.Diff"/>). Exit 0 when the groups are the
/// same, 1 when they differ, 3 bad input.
/// </summary>
internal static class DiffCommand
{
    public static Command Create(CliConsole console)
    {
        var a = new Argument<string>("A") { Description = "The machine before (same kinds of source as --source)." };
        var b = new Argument<string>("B") { Description = "The machine after." };
        var json = CommonOptions.Json();
        var command = new Command("diff", "How IOMMU groups changed between two sources (e.g. before and after a BIOS or kernel update), with reasons.\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "same groups"), (ExitCode.Negative, "the groups differ")))
        {
            a, b, json,
        };
        command.SetAction(parse => Run(console, parse.GetValue(a)!, parse.GetValue(b)!, parse.GetValue(json)));
        return command;
    }

    internal static int Run(CliConsole console, string pathA, string pathB, bool json)
    {
        var ma = Inputs.LoadMachine(pathA, console, json);
        var mb = Inputs.LoadMachine(pathB, console, json);
        var diff = HostAnalysis.Diff(ma, mb);
        if (json) DiffText.WriteJson(console, diff);
        else DiffText.WriteText(console, diff);
        return diff.Same ? (int)ExitCode.Ok : (int)ExitCode.Negative;
    }
}
