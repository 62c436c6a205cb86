using System.CommandLine;
using IommuKit.Cli.Rendering;
using IommuKit.Host;
using IommuKit.Host.Picture;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu report -o host.html</c>: the machine as one self-contained HTML page: the PCIe tree coloured by IOMMU
/// group, ACS marks, slots, drivers, each group's verdict, host losses and the what-if that would split it
/// (<see cref="MachinePicture.Draw"/>, drawn by <see cref="HtmlReport"/>).
/// </summary>
internal static class ReportCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var cmdline = CommonOptions.Cmdline();
        var pciIds = CommonOptions.PciIds();
        var output = new Option<string>("--output", "-o")
        {
            Description = "The HTML file to write (replaced if it exists). It needs nothing else: open it from disk, mail it, print it.",
            HelpName = "FILE",
            Required = true,
        };
        var command = new Command("report",
            "Draw the machine: one self-contained HTML file with the PCIe tree coloured by IOMMU group, ACS marks, slots, " +
            "drivers, the kernel's groups against the model's, each group's verdict, what the host would lose and what " +
            "would split it; hover a device for why it is in its group, search by address, id or name.\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "written")))
        {
            source, cmdline, pciIds, output,
        };
        command.SetAction(parse => Run(console, parse.GetValue(source), parse.GetValue(cmdline), parse.GetValue(pciIds), parse.GetValue(output)!));
        return command;
    }

    internal static int Run(CliConsole console, string? sourcePath, string? cmdlineText, string? pciIdsPath, string output)
    {
        if (Directory.Exists(output)) throw new CliException($"{output}: is a directory; give a file name such as host.html");
        var ids = Inputs.LoadPciIds(pciIdsPath);
        var machine = Inputs.LoadMachine(sourcePath, console, json: false);
        var picture = MachinePicture.Draw(HostAnalysis.Analyze(machine, cmdlineText), d => DeviceText.Name(d, ids));
        var html = HtmlReport.Render(picture);
        try
        {
            File.WriteAllText(output, html);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"{output}: cannot write: {ex.Message}", ExitCode.Unsupported);
        }
        console.Out.WriteLine($"{output}: {machine.Topology.Count} devices, {picture.Groups.Count} groups");
        return (int)ExitCode.Ok;
    }
}
