using IommuKit.Core;
using IommuKit.Host;

namespace IommuKit.Cli.Commands;

/// <summary><c>set-type --apply</c>: performing a <see cref="SetTypePlan"/> on a live sysfs, with restore on failure.</summary>
internal static partial class SetTypeCommand
{
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
