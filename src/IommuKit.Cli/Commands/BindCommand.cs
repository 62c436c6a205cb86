using System.CommandLine;
using IommuKit.Cli.Rendering;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu bind ADDRESS|--group N [--apply] [--yes]</c> and <c>iommu unbind …</c>: the card's functions (in its group
/// and in other groups) to vfio-pci, or back to the host, through <c>driver_override</c> and <c>drivers_probe</c> as
/// libvirt and Proxmox do it. A dry run by default, printing exactly what would be written; <c>--apply</c> performs it
/// (<see cref="HostAnalysis.ApplyBind"/>) and restores every touched device on any failure.
/// </summary>
internal static class BindCommand
{
    public static Command Create(CliConsole console, bool bind)
    {
        var source = CommonOptions.Source();
        var json = CommonOptions.Json();
        var address = new Argument<string?>("ADDRESS")
        {
            Description = "The card: " + DeviceSelector.Forms + " naming one card; every function of the card is " + (bind ? "bound." : "given back."),
            Arity = ArgumentArity.ZeroOrOne,
        };
        var group = new Option<int?>("--group", "-i") { Description = "The card in group N instead of a device's.", HelpName = "N" };
        var apply = new Option<bool>("--apply")
        {
            Description = "Really write (live host as root, or a directory root given with --source). Without it, a dry run.",
        };
        var yes = new Option<bool>("--yes", "-y") { Description = "Do not ask for confirmation (needed when standard input is not a terminal)." };
        var force = VfioCheckCommand.Force();
        string name = bind ? "bind" : "unbind";
        var command = new Command(name, bind
            ? "Give a card to vfio-pci: every function in its group and its functions in other groups, by driver_override + " +
              "drivers_probe (never by vendor:device id). Refuses host functions and groups shared with other devices. " +
              "Prints the undo command and the persistent vfio-pci.ids= / modprobe line.\n" +
              "Examples: iommu bind 01:00.0    iommu bind 10de:2484 --apply\n" +
              ExitCodeHelp.Line((ExitCode.Ok, "done (or would be)"), (ExitCode.Negative, "refused or failed (restored)"), (ExitCode.NoIommu, "no IOMMU"),
                  (ExitCode.Unsupported, "--apply not possible here"))
            : "Give a card's functions that are on vfio-pci back to the host: unbind, clear driver_override, probe again.\n" +
              "Examples: iommu unbind 01:00.0    iommu unbind 01:00.0 --apply\n" +
              ExitCodeHelp.Line((ExitCode.Ok, "done (or would be)"), (ExitCode.Negative, "failed (restored)"), (ExitCode.NoIommu, "no IOMMU"),
                  (ExitCode.Unsupported, "--apply not possible here")))
        {
            address, group, source, json, apply, yes, force,
        };
        command.SetAction(parse => Run(console, bind, parse.GetValue(address), parse.GetValue(group), parse.GetValue(source),
            parse.GetValue(json), parse.GetValue(apply), parse.GetValue(yes), parse.GetValue(force)));
        return command;
    }

    /// <summary>Reads the confirmation answer; tests replace it.</summary>
    internal static Func<string, bool>? Confirm { get; set; }

    internal static int Run(CliConsole console, bool bind, string? addressText, int? groupId, string? sourcePath, bool json, bool apply, bool yes, bool force)
    {
        if ((addressText is null) == (groupId is null))
            throw new CliException("give either a device ADDRESS or --group N");
        var selector = addressText is null ? null : DeviceSelector.Parse(addressText, "ADDRESS");
        var machine = Inputs.LoadMachine(sourcePath, console, json);
        Inputs.RefuseExample(machine, bind ? "bind" : "unbind");
        PciAddress? target = selector?.SelectOne(machine.Topology, machine.Origin).Address;
        var v = HostAnalysis.VfioCheck(HostAnalysis.Analyze(machine), target, groupId, force);
        if (v.Class == VerdictClass.NoIommu)
            throw new CliException($"{machine.Origin}: no active IOMMU, so VFIO cannot take any device. {v.NoIommuCause}", ExitCode.NoIommu);
        var plan = HostAnalysis.PlanBind(v, bind);
        if (plan.Refusal is { } why)
            throw new CliException($"refusing to bind {VfioCheckText.Subject(v)}: {VfioCheckText.Word(v.Class)}: {why} (iommu vfio-check {VfioCheckText.Subject(v)} says more)",
                ExitCode.Negative);
        // Devices the running host is using (root disk, default route, console, keyboard): --apply refuses them unless --force.
        if (plan.Held is { } held)
        {
            if (apply) throw new CliException($"refusing to bind {VfioCheckText.Subject(v)}: {held}", ExitCode.Negative);
            console.Warn($"--apply will refuse: {held}");
        }
        BindOutcome? outcome = null;
        if (apply && plan.Steps.Count > 0)
        {
            string root = sourcePath ?? "/";
            if (!Directory.Exists(Path.Combine(root, "sys", "bus", "pci", "devices")))
                throw new CliException($"--apply needs a live host (or a directory root with sysfs), not {sourcePath ?? "this host"}", ExitCode.Unsupported);
            if (root == "/" && !Environment.IsPrivilegedProcess)
                throw new CliException("--apply must run as root (writing driver_override and unbind needs it)", ExitCode.Unsupported);
            if (!yes && !Ask(console, $"{(bind ? "Bind" : "Unbind")} {plan.Targets.Count} device(s) ({string.Join(", ", plan.Targets.Select(t => t.Address.ToShortString()))})? The host stops using them. [y/N] "))
                throw new CliException("not confirmed; nothing written", ExitCode.Negative);
            var io = new SysfsAccess(new SysfsWriter(root));
            outcome = bind ? HostAnalysis.ApplyBind(v, io) : HostAnalysis.ApplyUnbind(v, io);
        }
        if (json) BindText.WriteJson(console, plan, outcome);
        else BindText.WriteText(console, plan, outcome);
        return outcome is { Ok: false } ? (int)ExitCode.Negative : (int)ExitCode.Ok;
    }

    /// <summary>Asks a yes/no question on the terminal (<see cref="Confirm"/> in tests); without a terminal, refuses (use --yes).</summary>
    internal static bool Ask(CliConsole console, string question)
    {
        if (Confirm is { } c) return c(question);
        if (Console.IsInputRedirected)
            throw new CliException("--apply without a terminal needs --yes (nothing written)", ExitCode.Unsupported);
        console.Out.Write(question);
        console.Out.Flush();
        var answer = Console.ReadLine()?.Trim();
        return answer is "y" or "Y" or "yes";
    }
}
