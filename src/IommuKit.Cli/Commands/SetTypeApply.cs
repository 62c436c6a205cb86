using IommuKit.Core;
using IommuKit.Host;

namespace IommuKit.Cli.Commands;

/// <summary><c>set-type --apply</c>: performing a <see cref="SetTypePlan"/> on a live sysfs, with restore on failure.</summary>
internal static partial class SetTypeCommand
{
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
