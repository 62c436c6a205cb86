using System.CommandLine;
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
internal static class SetTypeCommand
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
        var command = new Command("set-type",
            "Change an IOMMU group's default domain type (sysfs 'type'): by default a dry run saying whether this kernel " +
            "would accept it, the errno and reason if not, and the steps that would make it succeed.\n" +
            "Exit codes: 0 would succeed/applied, 1 refused (or --apply failed and the previous state was restored), 2 no IOMMU, " +
            "3 bad input, 5 --apply not possible here, 6 --apply failed and restoring failed too: the host was left changed.")
        {
            group, value, source, cmdline, json, apply,
        };
        command.SetAction(parse => Run(console, parse.GetValue(group), parse.GetValue(value)!, parse.GetValue(source),
            parse.GetValue(cmdline), parse.GetValue(json), parse.GetValue(apply)));
        return command;
    }

    internal static int Run(CliConsole console, int groupNumber, string value, string? sourcePath, string? cmdlineText, bool json, bool apply)
    {
        var machine = Inputs.LoadMachine(sourcePath, console);
        var cmd = Inputs.CommandLine(machine, cmdlineText);
        var model = HostModel.FromMachine(machine, cmd, new HostModelOptions(Grouping: HostGrouping.Recorded));
        if (model.Driver is null || model.Core.Groups.Count == 0)
            throw new CliException($"{machine.Origin}: no active IOMMU, so there are no groups and no type files", ExitCode.NoIommu);
        if (model.ResolveGroup(groupNumber) is null)
            throw new CliException($"group {groupNumber}: no such group in {machine.Origin}", ExitCode.InputError);
        var plan = model.DryRunSetType(groupNumber, value);

        ApplyOutcome? applied = null;
        if (apply) applied = Apply(sourcePath, plan, model);

        if (json) WriteJson(console, plan, model, applied);
        else WriteText(console, plan, model, applied);
        if (applied is { } a) return a.Ok ? (int)ExitCode.Ok : a.Restored == false ? (int)ExitCode.HostLeftChanged : (int)ExitCode.Negative;
        return plan.Result.IsOk ? (int)ExitCode.Ok : (int)ExitCode.Negative;
    }

    private static string ResultName(IommuResult r) => r.IsOk ? "ok" : r.Errno.ToString();

    private static void WriteText(CliConsole console, SetTypePlan plan, HostModel model, ApplyOutcome? applied)
    {
        var o = console.Out;
        string kernel = $"Linux {model.Core.Kernel} rules";
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
                for (int i = 0; i < plan.Steps.Count; i++) o.WriteLine($"    {i + 1}. {plan.Steps[i]}");
            }
            else if (!plan.StepsResult.IsOk && plan.StepsResult != plan.Result && plan.StepsResult.Reason is { } r2)
                o.WriteLine($"  unbinding the group's drivers would not help: {plan.StepsResult.Errno}: {r2}");
            else
                o.WriteLine("  no unbind/bind sequence makes this write succeed on this kernel");
        }
        foreach (var n in model.Notes) console.Warn(n);
        if (applied is { } a)
        {
            foreach (var line in a.Log) o.WriteLine($"  applied: {line}");
            foreach (var r in a.Restore) o.WriteLine($"  restore: {r.Step}: {(r.Ok ? "ok" : "FAILED: " + r.Error)}");
            o.WriteLine(a.Ok ? $"group {plan.Group}: type is now {a.TypeNow}"
                : a.Restored is null ? $"group {plan.Group}: apply not attempted; nothing was changed: {a.TypeNow}"
                : a.Restored == true ? $"group {plan.Group}: apply failed; previous state restored: {a.TypeNow}"
                : $"group {plan.Group}: apply failed and the previous state could NOT be restored (type reads {a.TypeNow}); the host was left changed: see the failed restore steps");
        }
    }

    private static void WriteJson(CliConsole console, SetTypePlan plan, HostModel model, ApplyOutcome? applied) =>
        JsonOut.Write(console, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("group", plan.Group);
            w.WriteString("value", plan.Value);
            w.WriteString("result", ResultName(plan.Result));
            if (plan.Result.Reason is { } r) w.WriteString("reason", r);
            else w.WriteNull("reason");
            JsonOut.StringArray(w, "steps", plan.Steps);
            w.WriteString("steps_result", ResultName(plan.StepsResult));
            w.WriteString("type_before", plan.TypeBefore);
            w.WriteString("type_after", plan.TypeAfter);
            w.WriteString("kernel", model.Core.Kernel.ToString());
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

    /// <summary>What --apply did: <paramref name="Restored"/> is null when nothing had to be restored, else whether every restore step succeeded and the type reads the old one again.</summary>
    private sealed record ApplyOutcome(bool Ok, string TypeNow, IReadOnlyList<string> Log, IReadOnlyList<RestoreStep> Restore, bool? Restored = null);

    /// <summary>One step of putting the previous state back, and how it went.</summary>
    private sealed record RestoreStep(string Step, bool Ok, string? Error);

    /// <summary>
    /// Performs the change on a live sysfs (the host's <c>/</c>, or a directory root given with <c>--source</c>):
    /// unbind the blocking drivers, write the type, bind them back, verify the type file; on any failure put the
    /// drivers and the old type back.
    /// </summary>
    private static ApplyOutcome Apply(string? sourcePath, SetTypePlan plan, HostModel model)
    {
        string root = sourcePath ?? "/";
        if (!Directory.Exists(Path.Combine(root, "sys", "kernel", "iommu_groups")))
            throw new CliException($"--apply needs a live host (or a directory root with sysfs), not {sourcePath ?? "this host"}", ExitCode.Unsupported);
        if (root == "/" && !Environment.IsPrivilegedProcess)
            throw new CliException("--apply must run as root (writing the type file needs CAP_SYS_ADMIN and CAP_SYS_RAWIO)", ExitCode.Unsupported);
        var log = new List<string>();
        // Every read and write goes through the root-confined writer: paths resolve inside the root as the reader's do.
        var sysfs = new IommuKit.Sources.SysfsWriter(root);
        string typeFile = $"sys/kernel/iommu_groups/{plan.Group.ToString(System.Globalization.CultureInfo.InvariantCulture)}/type";
        string Read()
        {
            try
            {
                return sysfs.ReadCapped(typeFile) ?? "unknown";
            }
            catch (InputException ex)
            {
                // An unreadable type file must not escape as a stack trace: verification then fails and restores.
                log.Add($"cat {Display(typeFile)} failed: {ex.Message}");
                return "unknown";
            }
        }
        string old = Read();
        var unbinds = plan.Result.IsOk ? [] : plan.Unbinds ?? [];
        if (!plan.Result.IsOk && !plan.StepsResult.IsOk)
            return new ApplyOutcome(false, old, [$"not attempted: the model says the write fails ({plan.Result.Errno}) and no unbind sequence helps"], []);
        var undone = new List<(string Device, string Driver)>();
        string? lastError = null;
        bool Write(string path, string text)
        {
            try
            {
                sysfs.Write(path, text);
                log.Add($"echo {text.TrimEnd('\n')} > {Display(path)}");
                lastError = null;
                return true;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                log.Add($"echo {text.TrimEnd('\n')} > {Display(path)} failed: {ex.Message}");
                lastError = ex.Message;
                return false;
            }
        }
        string DriverFile(string driver, string op) => $"sys/bus/pci/drivers/{driver}/{op}";
        bool ok = true;
        foreach (var (dev, drv) in unbinds)
        {
            if (!Write(DriverFile(drv, "unbind"), dev)) { ok = false; break; }
            undone.Add((dev, drv));
        }
        string target = plan.Value.TrimEnd('\n');
        if (ok) ok = Write(typeFile, target);
        var rebound = new List<(string Device, string Driver)>();
        foreach (var (dev, drv) in undone)
        {
            if (Write(DriverFile(drv, "bind"), dev)) rebound.Add((dev, drv));
            else ok = false;
        }
        string now = Read();
        string expected = plan.Result.IsOk ? plan.TypeAfter : ExpectedAfterSteps(model, plan);
        if (ok && now != expected)
        {
            log.Add($"verify: type reads {now}, expected {expected}");
            ok = false;
        }
        if (ok) return new ApplyOutcome(true, now, log, []);
        // Restore: put the old type back with the drivers unbound again, then rebind; each step's outcome is reported,
        // and "restored" is claimed only when every step worked and the type reads the old one again.
        var steps = new List<RestoreStep>();
        void Step(string what, bool done) => steps.Add(new RestoreStep(what, done, done ? null : lastError));
        foreach (var (dev, drv) in rebound) Step($"unbind {dev} from {drv}", Write(DriverFile(drv, "unbind"), dev));
        if (Read() != old) Step($"write {old} to {Display(typeFile)}", Write(typeFile, old));
        foreach (var (dev, drv) in undone) Step($"bind {dev} to {drv}", Write(DriverFile(drv, "bind"), dev));
        now = Read();
        lastError = now == old ? null : $"type reads {now}, expected {old}";
        Step($"verify {Display(typeFile)} reads {old}", now == old);
        bool restored = steps.TrueForAll(x => x.Ok);
        return new ApplyOutcome(false, now, log, steps, restored);
    }

    private static string ExpectedAfterSteps(HostModel model, SetTypePlan plan)
    {
        var m = model.Rebuild();
        var g = m.ResolveGroup(plan.Group)!;
        foreach (var (dev, _) in plan.Unbinds ?? [])
            if (m.Core.FindDevice(dev) is { } d) m.Core.UnbindDriver(d);
        m.Core.StoreType(g, plan.Value);
        return m.Core.ReadType(g);
    }

    private static string Display(string relativePath) => IommuKit.Sources.SysfsWriter.Display(relativePath);
}
