using System.CommandLine;
using IommuKit.Host;
using IommuKit.Cli.Rendering;
using IommuKit.Core;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu set-type GROUP identity|DMA|DMA-FQ|auto</c>: what writing the group's sysfs <c>type</c> file would do on
/// the source's kernel (a dry run through the core: "would succeed", or the errno and why, and the steps that would
/// make it succeed). With <c>--apply</c> on a live host: unbind the blocking drivers, write, bind back, verify, and
/// restore the previous state if a step fails. Exit 0 would succeed / applied, 1 refused, 2 no IOMMU, 3 bad input,
/// 5 --apply not possible here.
/// </summary>
internal static partial class SetTypeCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var json = CommonOptions.Json();
        var cmdline = CommonOptions.Cmdline();
        var group = new Argument<int>("GROUP") { Description = "The IOMMU group number (as /sys/kernel/iommu_groups shows it)." };
        var value = new Argument<string>("TYPE") { Description = "identity, DMA, DMA-FQ or auto (the default type for the group)." };
        var apply = new Option<bool>("--apply")
        {
            Description = "Really change it (live host or a directory root, as root): unbind the drivers that block the change, " +
                          "write the type, bind them back, verify, and restore the previous state if any step fails.",
        };
        var yes = new Option<bool>("--yes", "-y") { Description = "With --apply, do not ask before unbinding drivers (needed without a terminal)." };
        var command = new Command("set-type",
            "Change an IOMMU group's default domain type (sysfs 'type'): by default a dry run saying whether this kernel " +
            "would accept it, the errno and reason if not, and the steps that would make it succeed.\n" +
            "Exit codes: 0 would succeed/applied, 1 refused (or --apply failed and the previous state was restored), 2 no IOMMU, " +
            "3 bad input, 5 --apply not possible here, 6 --apply failed and restoring failed too: the host was left changed.")
        {
            group, value, source, cmdline, json, apply, yes,
        };
        command.SetAction(parse => Run(console, parse.GetValue(group), parse.GetValue(value)!, parse.GetValue(source),
            parse.GetValue(cmdline), parse.GetValue(json), parse.GetValue(apply), parse.GetValue(yes)));
        return command;
    }

    internal static int Run(CliConsole console, int groupNumber, string value, string? sourcePath, string? cmdlineText, bool json, bool apply, bool yes = false)
    {
        var machine = Inputs.LoadMachine(sourcePath, console, json);
        if (apply) Inputs.RefuseExample(machine, "change a type");
        var report = HostAnalysis.SetType(machine, cmdlineText, groupNumber, value);
        if (report.Plan is not { } plan)
            throw new CliException($"{machine.Origin}: no active IOMMU, so there are no groups and no type files", ExitCode.NoIommu);
        if (apply && !yes && !plan.Result.IsOk && plan.StepsResult.IsOk && plan.Unbinds is { Count: > 0 } unbinds)
        {
            // Unbinding drops what the driver serves: say so, and ask (a NIC's link, a controller's disks).
            var what = unbinds.Select(u => $"{u.Device} from {u.Driver}" +
                (IommuKit.Pci.PciAddress.TryParse(u.Device, out var a) && machine.Topology.Find(a) is { } d ? Wording.UnbindLoss(machine, d) : ""));
            if (!BindCommand.Ask(console, $"This unbinds {string.Join(", ", what)} for a moment, then binds it back. Continue? [y/N] "))
                throw new CliException("not confirmed; nothing written", ExitCode.Negative);
        }
        SetTypeOutcome? applied = apply ? Apply(sourcePath, plan, report.Model) : null;
        if (json) WriteJson(console, plan, report, applied);
        else WriteText(console, plan, report, applied);
        if (applied is { } a) return a.Ok ? (int)ExitCode.Ok : a.Restored == false ? (int)ExitCode.HostLeftChanged : (int)ExitCode.Negative;
        return plan.Result.IsOk ? (int)ExitCode.Ok : (int)ExitCode.Negative;
    }

    private static string ResultName(IommuResult r) => r.IsOk ? "ok" : r.Errno.ToString();

    private static void WriteText(CliConsole console, SetTypePlan plan, SetTypeReport model, SetTypeOutcome? applied)
    {
        var o = console.Out;
        string kernel = $"Linux {model.Kernel} rules";
        if (applied is { } done)
        {
            // The outcome is the headline: no "would fail" line for a change that was then made (by unbinding first).
            if (!plan.Result.IsOk && plan.StepsResult.IsOk)
                o.WriteLine($"group {plan.Group}: writing \"{plan.Value}\" directly fails with {plan.Result.Errno} ({kernel}), so its drivers are unbound first:");
            foreach (var line in done.Log) o.WriteLine($"  applied: {line}");
            foreach (var r in done.Restore) o.WriteLine($"  restore: {r.Step}: {(r.Ok ? "ok" : "FAILED: " + r.Error)}");
            o.WriteLine(done.Ok ? $"group {plan.Group}: type is now {done.TypeNow}"
                : done.Restored is null ? $"group {plan.Group}: apply not attempted; nothing was changed: {done.TypeNow}"
                : done.Restored == true ? $"group {plan.Group}: apply failed; previous state restored: {done.TypeNow}"
                : $"group {plan.Group}: apply failed and the previous state could NOT be restored (type reads {done.TypeNow}); the host was left changed: see the failed restore steps");
            foreach (var n in model.Notes) console.Warn(n);
            return;
        }
        if (plan.Result.IsOk)
        {
            o.WriteLine(plan.TypeBefore == plan.TypeAfter
                ? $"group {plan.Group}: writing \"{plan.Value}\" would succeed ({kernel}); the type stays {plan.TypeAfter}"
                : $"group {plan.Group}: writing \"{plan.Value}\" would succeed ({kernel}): {plan.TypeBefore} -> {plan.TypeAfter}");
        }
        else
        {
            o.WriteLine($"group {plan.Group}: writing \"{plan.Value}\" would fail with {plan.Result.Errno} ({plan.Result.Errno.Describe()}) ({kernel}); the type stays {plan.TypeBefore}");
            if (plan.Result.Reason is { } why) o.WriteLine($"  why: {why}");
            if (plan.Steps.Count > 0)
            {
                o.WriteLine("  to make it succeed:");
                for (int i = 0; i < plan.Steps.Count; i++) o.WriteLine($"    {i + 1}. {Wording.Action(plan.Steps[i])}");
            }
            else if (!plan.StepsResult.IsOk && plan.StepsResult != plan.Result && plan.StepsResult.Reason is { } r2)
                o.WriteLine($"  unbinding the group's drivers would not help: {plan.StepsResult.Errno}: {r2}");
            else
                o.WriteLine("  no unbind/bind sequence makes this write succeed on this kernel");
        }
        foreach (var n in model.Notes) console.Warn(n);
    }

    private static void WriteJson(CliConsole console, SetTypePlan plan, SetTypeReport model, SetTypeOutcome? applied) =>
        JsonOut.Write(console, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("group", plan.Group);
            w.WriteString("value", plan.Value);
            w.WriteString("result", ResultName(plan.Result));
            if (plan.Result.Reason is { } r) w.WriteString("reason", r);
            else w.WriteNull("reason");
            JsonOut.StringArray(w, "steps", plan.Steps.Select(Wording.Action));
            w.WriteString("steps_result", ResultName(plan.StepsResult));
            w.WriteString("type_before", plan.TypeBefore);
            w.WriteString("type_after", plan.TypeAfter);
            w.WriteString("kernel", model.Kernel.ToString());
            w.WriteBoolean("dry_run", applied is null);
            if (applied is { } a)
            {
                w.WriteBoolean("applied", a.Ok);
                w.WriteString("type_now", a.TypeNow);
                JsonOut.StringArray(w, "apply_log", a.Log);
                if (a.Restored is { } restored) w.WriteBoolean("restored", restored); else w.WriteNull("restored");
                w.WriteStartArray("restore");
                foreach (var step in a.Restore)
                {
                    w.WriteStartObject();
                    w.WriteString("step", step.Step);
                    w.WriteBoolean("ok", step.Ok);
                    if (step.Error is null) w.WriteNull("error"); else w.WriteString("error", step.Error);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }
            JsonOut.StringArray(w, "notes", model.Notes);
            w.WriteEndObject();
        });
}
