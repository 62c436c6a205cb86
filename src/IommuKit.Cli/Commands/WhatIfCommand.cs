using System.CommandLine;
using IommuKit.Cli.Rendering;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu whatif</c>: the groups under a changed command line and/or with a card moved to another port, as a diff
/// against today's groups (<see cref="HostAnalysis.WhatIf"/>). Exit 0 when some group changes, 1 when the change buys
/// nothing, 2 when no IOMMU would be active after the change, 3 bad input.
/// </summary>
internal static class WhatIfCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var json = CommonOptions.Json();
        var cmdline = CommonOptions.Cmdline();
        var move = new Option<string?>("--move")
        {
            Description = "Move the card at ADDRESS (all its functions and anything below them) to the bus below bridge/port PORT, " +
                          "e.g. --move 04:00.0=00:1c.0.",
            HelpName = "ADDRESS=PORT",
        };
        var pciIds = CommonOptions.PciIds();
        var command = new Command("whatif", "Groups under a changed command line or with a card in another slot, as a diff against today: which groups split or merge.\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "some group changes"), (ExitCode.Negative, "the change buys nothing"), (ExitCode.NoIommu, "no IOMMU after the change")))
        {
            source, cmdline, move, json, pciIds,
        };
        command.SetAction(parse => Run(console, parse.GetValue(source), parse.GetValue(cmdline), parse.GetValue(move), parse.GetValue(json), parse.GetValue(pciIds)));
        return command;
    }

    internal static int Run(CliConsole console, string? sourcePath, string? cmdlineText, string? moveText, bool json, string? pciIdsPath)
    {
        if (cmdlineText is null && moveText is null) throw new CliException("say what to change: --cmdline TEXT and/or --move ADDRESS=PORT");
        var ids = Inputs.LoadPciIds(pciIdsPath);
        PciAddress? card = null, port = null;
        if (moveText is not null)
        {
            int eq = moveText.IndexOf('=');
            if (eq <= 0 || eq == moveText.Length - 1) throw new CliException($"--move {moveText}: expected ADDRESS=PORT, e.g. 04:00.0=00:1c.0", ExitCode.InputError);
            card = Inputs.Address(moveText[..eq], "--move card");
            port = Inputs.Address(moveText[(eq + 1)..], "--move port");
        }
        var report = HostAnalysis.WhatIf(Inputs.LoadMachine(sourcePath, console, json), new WhatIfRequest(cmdlineText, card, port));
        if (json) WhatIfText.WriteJson(console, report, ids);
        else WhatIfText.WriteText(console, report);
        return report.Outcome switch
        {
            WhatIfOutcome.NoIommu => (int)ExitCode.NoIommu,
            WhatIfOutcome.BuysNothing => (int)ExitCode.Negative,
            _ => (int)ExitCode.Ok,
        };
    }
}
