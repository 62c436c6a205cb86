using System.CommandLine;
using IommuKit.Cli.Rendering;
using IommuKit.Host;
using IommuKit.Pci;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu slots [--for ADDRESS]</c>: the machine's slots with what is in them and the port's group; with <c>--for</c>,
/// every slot the card could be moved to, ranked by the group it would get there (<see cref="HostAnalysis.Slots"/>, one
/// what-if per slot). Exit 0; with <c>--for</c>, 1 when no slot gives the card a group of its own; 2 no IOMMU; 3 bad input.
/// </summary>
internal static class SlotsCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var json = CommonOptions.Json();
        var pciIds = CommonOptions.PciIds();
        var card = new Option<string?>("--for")
        {
            Description = "Rank every slot this card could be moved to by the group it would get there (the same prediction as `iommu whatif --move ADDRESS=PORT`).",
            HelpName = "ADDRESS",
        };
        var command = new Command("slots",
            "Which slot should this card go in? Lists the root and downstream ports that implement a slot (and bridges with a named slot), " +
            "what is in each and the port's group; with --for, ranks them by the group the card would get there: alone, with its path, or with which devices.\n" +
            "Examples: iommu slots    iommu slots --for 01:00.0 --json\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "ok (with --for: some slot gives the card a group of its own)"),
                (ExitCode.Negative, "with --for: no slot does"), (ExitCode.NoIommu, "no IOMMU (the prediction is shown)")))
        {
            card, source, json, pciIds,
        };
        command.SetAction(parse => Run(console, parse.GetValue(card), parse.GetValue(source), parse.GetValue(json), parse.GetValue(pciIds)));
        return command;
    }

    internal static int Run(CliConsole console, string? cardText, string? sourcePath, bool json, string? pciIdsPath)
    {
        var ids = Inputs.LoadPciIds(pciIdsPath);
        PciAddress? card = cardText is null ? null : Inputs.Address(cardText, "--for");
        var machine = Inputs.LoadMachine(sourcePath, console, json);
        var r = HostAnalysis.Slots(HostAnalysis.Analyze(machine), card);
        if (json) SlotsText.WriteJson(console, r, ids);
        else SlotsText.WriteText(console, r, ids);
        if (r.Report.State == IommuState.Off) return (int)ExitCode.NoIommu;
        return card is not null && !r.Isolatable ? (int)ExitCode.Negative : (int)ExitCode.Ok;
    }
}
