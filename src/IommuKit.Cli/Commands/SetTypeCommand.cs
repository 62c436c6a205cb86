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
            "Exit codes: 0 would succeed/applied, 1 refused, 2 no IOMMU, 3 bad input, 5 --apply not possible here.")
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
        var model = HostModel.FromMachine(machine, cmd, new HostModelOptions(Groups: GroupSource.Recorded));
        if (model.Driver is null || model.Core.Groups.Count == 0)
            throw new CliException($"{machine.Origin}: no active IOMMU, so there are no groups and no type files", ExitCode.NoIommu);
        if (model.ResolveGroup(groupNumber) is null)
            throw new CliException($"group {groupNumber}: no such group in {machine.Origin}", ExitCode.InputError);
        var plan = model.DryRunSetType(groupNumber, value);

        ApplyOutcome? applied = null;
        if (apply) applied = Apply(sourcePath, plan, model);

        if (json) WriteJson(console, plan, model, applied);
        else WriteText(console, plan, model, applied);
        if (applied is { } a) return a.Ok ? (int)ExitCode.Ok : (int)ExitCode.Negative;
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
            o.WriteLine(a.Ok ? $"group {plan.Group}: type is now {a.TypeNow}" : $"group {plan.Group}: apply failed; previous state restored: {a.TypeNow}");
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
            }
            JsonOut.StringArray(w, "notes", model.Notes);
            w.WriteEndObject();
        });

    private sealed record ApplyOutcome(bool Ok, string TypeNow, IReadOnlyList<string> Log);

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
        string typeFile = Path.Combine(root, "sys", "kernel", "iommu_groups", plan.Group.ToString(System.Globalization.CultureInfo.InvariantCulture), "type");
        string Read()
        {
            try
            {
                return File.Exists(typeFile) ? File.ReadAllText(typeFile).Trim() : "unknown";
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // An unreadable type file must not escape as a stack trace: verification then fails and restores.
                log.Add($"cat {Display(root, typeFile)} failed: {ex.Message}");
                return "unknown";
            }
        }
        string old = Read();
        var unbinds = plan.Result.IsOk ? [] : plan.Unbinds ?? [];
        if (!plan.Result.IsOk && !plan.StepsResult.IsOk)
            return new ApplyOutcome(false, old, [$"not attempted: the model says the write fails ({plan.Result.Errno}) and no unbind sequence helps"]);
        var undone = new List<(string Device, string Driver)>();
        bool Write(string path, string text)
        {
            try
            {
                File.WriteAllText(path, text);
                log.Add($"echo {text.TrimEnd('\n')} > {Display(root, path)}");
                return true;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                log.Add($"echo {text.TrimEnd('\n')} > {Display(root, path)} failed: {ex.Message}");
                return false;
            }
        }
        string DriverFile(string driver, string op) => Path.Combine(root, "sys", "bus", "pci", "drivers", driver, op);
        bool ok = true;
        foreach (var (dev, drv) in unbinds)
        {
            if (!Write(DriverFile(drv, "unbind"), dev)) { ok = false; break; }
            undone.Add((dev, drv));
        }
        string target = plan.Value.TrimEnd('\n');
        if (ok) ok = Write(typeFile, target);
        foreach (var (dev, drv) in undone) ok &= Write(DriverFile(drv, "bind"), dev);
        string now = Read();
        string expected = plan.Result.IsOk ? plan.TypeAfter : ExpectedAfterSteps(model, plan);
        if (ok && now != expected)
        {
            log.Add($"verify: type reads {now}, expected {expected}");
            ok = false;
        }
        if (!ok)
        {
            // Restore: put the old type back with the drivers unbound again, then rebind.
            foreach (var (dev, drv) in undone) Write(DriverFile(drv, "unbind"), dev);
            if (Read() != old) Write(typeFile, old);
            foreach (var (dev, drv) in undone) Write(DriverFile(drv, "bind"), dev);
            now = Read();
        }
        return new ApplyOutcome(ok, now, log);
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

    private static string Display(string root, string path) =>
        root == "/" ? path : "/" + Path.GetRelativePath(root, path).Replace('\\', '/');
}
