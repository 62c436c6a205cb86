using System.CommandLine;
using System.Text.Json;
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
            Description = "A function of the card (0000:01:00.0 or 01:00.0); every function of the card is " + (bind ? "bound." : "given back."),
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
              "Examples: iommu bind 01:00.0    iommu bind 01:00.0 --apply\n" +
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
        PciAddress? target = addressText is null ? null : Inputs.Address(addressText);
        var machine = Inputs.LoadMachine(sourcePath, console, json);
        Inputs.RefuseExample(machine, bind ? "bind" : "unbind");
        var v = HostAnalysis.VfioCheck(HostAnalysis.Analyze(machine), target, groupId, force);
        if (v.Class == VerdictClass.NoIommu)
            throw new CliException($"{machine.Origin}: no active IOMMU, so VFIO cannot take any device. {v.NoIommuCause}", ExitCode.NoIommu);
        if (bind && v.Class is VerdictClass.SharesGroup or VerdictClass.NotAssignable)
        {
            string why = v.Class == VerdictClass.NotAssignable ? string.Join("; ", v.Reasons)
                : $"the group also holds {string.Join(", ", v.Members.Where(m => m.Role == DeviceRole.Other).Select(m => m.Address.ToShortString()))}, which the host would lose";
            throw new CliException($"refusing to bind {VfioCheckText.Subject(v)}: {VfioCheckText.Word(v.Class)}: {why} (iommu vfio-check {VfioCheckText.Subject(v)} says more)",
                ExitCode.Negative);
        }
        var targets = bind ? v.Targets : HostAnalysis.GiveBackTargets(v);
        var steps = bind ? v.Steps : HostAnalysis.UnbindSteps(targets);
        var persistent = HostAnalysis.Persistent(machine, bind ? targets.Concat(v.Members.Where(m => m.Role is DeviceRole.Asked or DeviceRole.SameCard).Select(m => m.Device)).Distinct().ToList() : []);
        BindOutcome? outcome = null;
        if (apply && steps.Count > 0)
        {
            string root = sourcePath ?? "/";
            if (!Directory.Exists(Path.Combine(root, "sys", "bus", "pci", "devices")))
                throw new CliException($"--apply needs a live host (or a directory root with sysfs), not {sourcePath ?? "this host"}", ExitCode.Unsupported);
            if (root == "/" && !Environment.IsPrivilegedProcess)
                throw new CliException("--apply must run as root (writing driver_override and unbind needs it)", ExitCode.Unsupported);
            if (!yes && !Ask(console, $"{(bind ? "Bind" : "Unbind")} {targets.Count} device(s) ({string.Join(", ", targets.Select(t => t.Address.ToShortString()))})? The host stops using them. [y/N] "))
                throw new CliException("not confirmed; nothing written", ExitCode.Negative);
            var io = new SysfsAccess(new SysfsWriter(root));
            outcome = bind ? HostAnalysis.ApplyBind(v, io) : HostAnalysis.ApplyUnbind(v, io);
        }
        if (json) WriteJson(console, bind, v, steps, persistent, outcome);
        else WriteText(console, bind, v, targets, steps, persistent, outcome);
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

    private static void WriteText(CliConsole console, bool bind, VfioReport v, IReadOnlyList<PciDevice> targets, IReadOnlyList<HostAction> steps,
        PersistentBinding persistent, BindOutcome? outcome)
    {
        var o = console.Out;
        string subject = VfioCheckText.Subject(v);
        if (steps.Count == 0)
        {
            o.WriteLine(bind ? $"{subject}: every function of the card is already on a VFIO driver; nothing to do"
                             : $"{subject}: no function of the card is on a VFIO driver; nothing to do");
        }
        else if (outcome is null)
        {
            o.WriteLine($"Dry run: `iommu {(bind ? "bind" : "unbind")} {subject} --apply` would write (load the module first: modprobe vfio-pci):");
            foreach (var s in steps) o.WriteLine(s.Text.Length == 0 ? $"  echo > {s.Path}" : $"  echo {s.Text} > {s.Path}");
        }
        else
        {
            foreach (var d in outcome.Done) o.WriteLine($"  {(d.Ok ? "done  " : "FAILED")} {Wording.Action(d.Action)}{(d.Ok ? "" : $": {d.Error}")}");
            if (outcome.Ok)
                o.WriteLine(bind ? $"{targets.Count} device(s) on vfio-pci: {string.Join(", ", targets.Select(t => t.Address.ToShortString()))}"
                                 : $"{targets.Count} device(s) given back to the host");
            else
            {
                o.WriteLine($"{outcome.Failure}; putting the previous drivers back:");
                foreach (var r in outcome.Restore) o.WriteLine($"  {(r.Ok ? "restored" : "FAILED  ")} {Wording.Action(r.Action)}{(r.Ok ? "" : $": {r.Error}")}");
            }
        }
        if (bind && steps.Count > 0 && outcome is not { Ok: false })
        {
            o.WriteLine($"Undo: iommu unbind {subject} --apply");
            if (persistent.KernelParameter is { } k)
            {
                o.WriteLine($"Persistent (binds by id at boot): add {k} to the kernel command line, or put \"{persistent.ModprobeLine}\" in /etc/modprobe.d/vfio.conf");
                if (persistent.AlsoTaken.Count > 0)
                    console.Warn($"the same ids also match {string.Join(", ", persistent.AlsoTaken.Select(a => a.ToShortString()))}: the persistent form would take them too (use driver_override, as this command does, for those)");
            }
        }
        foreach (var m in v.Members.Where(m => m.Role != DeviceRole.Other && m.Loss is not null && targets.Any(t => t.Address == m.Address)))
            if (bind && outcome is not { Ok: false }) console.Warn($"the host loses {m.Address.ToShortString()}: {m.Loss!.What}");
    }

    private static void WriteJson(CliConsole console, bool bind, VfioReport v, IReadOnlyList<HostAction> steps, PersistentBinding persistent, BindOutcome? outcome) =>
        JsonOut.Write(console, w =>
        {
            w.WriteStartObject();
            ReportText.WriteMachineJson(w, v.Report);
            w.WriteString("command", bind ? "bind" : "unbind");
            JsonOut.NullableString(w, "target", v.Target?.ToString());
            if (v.Group is { } g) w.WriteNumber("group", g.Id); else w.WriteNull("group");
            w.WriteString("verdict", VfioCheckText.Word(v.Class));
            w.WriteBoolean("dry_run", outcome is null);
            VfioCheckText.WriteSteps(w, "steps", steps);
            if (outcome is { } oc)
            {
                w.WriteBoolean("applied", oc.Ok);
                JsonOut.NullableString(w, "failure", oc.Failure);
                WriteApplied(w, "done", oc.Done);
                WriteApplied(w, "restore", oc.Restore);
                w.WriteStartArray("previous");
                foreach (var (dev, drv, ov) in oc.Previous)
                {
                    w.WriteStartObject();
                    w.WriteString("address", dev.ToString());
                    JsonOut.NullableString(w, "driver", drv);
                    JsonOut.NullableString(w, "driver_override", ov);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }
            w.WriteString("undo", $"iommu {(bind ? "unbind" : "bind")} {VfioCheckText.Subject(v)} --apply");
            JsonOut.NullableString(w, "kernel_parameter", persistent.KernelParameter);
            JsonOut.NullableString(w, "modprobe", persistent.ModprobeLine);
            JsonOut.StringArray(w, "ids_also_match", persistent.AlsoTaken.Select(a => a.ToString()));
            w.WriteEndObject();
        });

    private static void WriteApplied(Utf8JsonWriter w, string name, IReadOnlyList<AppliedAction> list)
    {
        w.WriteStartArray(name);
        foreach (var a in list) VfioCheckText.WriteStep(w, a.Action, a.Error);
        w.WriteEndArray();
    }

    /// <summary>The Host layer's view of the root-confined sysfs writer (<see cref="SysfsWriter"/>, shared with set-type --apply).</summary>
    internal sealed class SysfsAccess(SysfsWriter sysfs) : ISysfsAccess
    {
        public bool Live => sysfs.Live;
        public void Write(string path, string text) => sysfs.Write(path, text);
        public string? Read(string path) => sysfs.Read(path);
        public string? DriverOf(PciAddress device) => sysfs.DriverOf(device);
    }
}
