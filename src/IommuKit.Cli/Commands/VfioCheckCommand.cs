using System.CommandLine;
using IommuKit.Cli.Rendering;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu vfio-check ADDRESS|--group N</c>: can the device's group be given to a VM through VFIO, per the source's
/// kernel generation (<see cref="HostAnalysis.VfioCheck"/>)? Exit 0 viable, 1 not viable, 2 no IOMMU, 3 bad input.
/// </summary>
internal static class VfioCheckCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var json = CommonOptions.Json();
        var cmdline = CommonOptions.Cmdline();
        var pciIds = CommonOptions.PciIds();
        var address = new Argument<string?>("ADDRESS")
        {
            Description = "The device to pass through (0000:01:00.0 or 01:00.0); its whole group is checked.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var group = new Option<int?>("--group", "-i") { Description = "Check group N instead of a device's group.", HelpName = "N" };
        var command = new Command("vfio-check",
            "Can this device (its whole IOMMU group) be passed through to a VM with VFIO? Per device OK/BLOCKING, " +
            "direct (RMRR) regions, interrupt remapping, what the host would lose, a verdict and the fix.\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "viable"), (ExitCode.Negative, "not viable"), (ExitCode.NoIommu, "no IOMMU (the prediction's verdict is shown)")))
        {
            address, group, source, cmdline, json, pciIds,
        };
        command.SetAction(parse => Run(console, parse.GetValue(address), parse.GetValue(group), parse.GetValue(source),
            parse.GetValue(cmdline), parse.GetValue(json), parse.GetValue(pciIds)));
        return command;
    }

    internal static int Run(CliConsole console, string? addressText, int? groupId, string? sourcePath, string? cmdlineText, bool json, string? pciIdsPath)
    {
        if ((addressText is null) == (groupId is null))
            throw new CliException("give either a device ADDRESS or --group N");
        var ids = Inputs.LoadPciIds(pciIdsPath);
        PciAddress? target = addressText is null ? null : Inputs.Address(addressText);
        var machine = Inputs.LoadMachine(sourcePath, console);
        if (target is { } t) HostAnalysis.DeviceOf(machine, t);
        var v = HostAnalysis.VfioCheck(HostAnalysis.Analyze(machine, cmdlineText), target, groupId);
        if (json) VfioCheckText.WriteJson(console, v, ids);
        else VfioCheckText.WriteText(console, v, ids);
        return v.Outcome switch { VfioOutcome.Viable => (int)ExitCode.Ok, VfioOutcome.NoIommu => (int)ExitCode.NoIommu, _ => (int)ExitCode.Negative };
    }
}
