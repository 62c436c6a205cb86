using System.CommandLine;
using IommuKit.Cli.Rendering;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu vfio-check ADDRESS|--group N</c>: can the device's group be given to a VM through VFIO, per the source's
/// kernel generation (<see cref="HostAnalysis.VfioCheck"/>)? Exit 0 ready or needs-binding, 1 shares-group or
/// not-assignable, 2 no IOMMU, 3 bad input.
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
            Description = "The device to pass through: " + DeviceSelector.Forms + " naming one card; its whole group is checked.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var group = new Option<int?>("--group", "-i") { Description = "Check group N instead of a device's group.", HelpName = "N" };
        var force = Force();
        var checkModel = CheckModel();
        var command = new Command("vfio-check",
            "Can I give this card to a VM, and what must I do? One verdict: ready, needs-binding (with the exact sysfs steps), " +
            "shares-group (what the host would lose, what would split the group), not-assignable (a host function, a direct " +
            "(RMRR) region, no interrupt remapping) or no-iommu (and why). The card's functions in other groups are listed and bound with it.\n" +
            "Examples: iommu vfio-check 01:00.0    iommu vfio-check 10de:2484    iommu vfio-check --group 8 --json\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "ready or needs-binding"), (ExitCode.Negative, "shares-group or not-assignable"),
                (ExitCode.NoIommu, "no IOMMU (the prediction's verdict is shown)")))
        {
            address, group, source, cmdline, json, pciIds, force, checkModel,
        };
        command.SetAction(parse => Run(console, parse.GetValue(address), parse.GetValue(group), parse.GetValue(source),
            parse.GetValue(cmdline), parse.GetValue(json), parse.GetValue(pciIds), parse.GetValue(force), parse.GetValue(checkModel)));
        return command;
    }

    /// <summary><c>--force</c>: the one host function a user may insist on, the management engine.</summary>
    public static Option<bool> Force() => new("--force")
    {
        Description = "Treat the platform's management engine (Intel MEI, AMD PSP) as assignable, and let bind take a device the " +
                      "running host is using (its root, /boot or swap disk, default route, boot VGA, console, keyboard). Other host functions never are.",
    };

    /// <summary><c>--check-model</c>: every model/kernel disagreement printed, and an error (exit 1).</summary>
    public static Option<bool> CheckModel() => new("--check-model")
    {
        Description = "List every place the model's groups differ from the kernel's, and exit 1 when there is one " +
                      "(by default one note about the asked group, and the exit code is the verdict's).",
    };

    /// <summary>The exit code of a verdict class (docs/cli.md).</summary>
    public static int ExitOf(VerdictClass c) => c switch
    {
        VerdictClass.Ready or VerdictClass.NeedsBinding => (int)ExitCode.Ok,
        VerdictClass.NoIommu => (int)ExitCode.NoIommu,
        _ => (int)ExitCode.Negative,
    };

    internal static int Run(CliConsole console, string? addressText, int? groupId, string? sourcePath, string? cmdlineText, bool json, string? pciIdsPath,
        bool force = false, bool checkModel = false, Machine? machine = null)
    {
        if ((addressText is null) == (groupId is null))
            throw new CliException("give either a device ADDRESS or --group N");
        var ids = Inputs.LoadPciIds(pciIdsPath);
        var selector = addressText is null ? null : DeviceSelector.Parse(addressText, "ADDRESS");
        // machine: a test seam (a machine loaded another way, e.g. with the sparse config read forced).
        machine ??= Inputs.LoadMachine(sourcePath, console, json);
        Inputs.RefuseExample(machine, "check");
        PciAddress? target = selector?.SelectOne(machine.Topology, machine.Origin).Address;
        var v = HostAnalysis.VfioCheck(HostAnalysis.Analyze(machine, cmdlineText), target, groupId, force);
        if (json) VfioCheckText.WriteJson(console, v, ids);
        else VfioCheckText.WriteText(console, v, ids, checkModel);
        int code = ExitOf(v.Class);
        if (checkModel && code == (int)ExitCode.Ok && v.Report.Disagreements.Count > 0) code = (int)ExitCode.Negative;
        return code;
    }
}
