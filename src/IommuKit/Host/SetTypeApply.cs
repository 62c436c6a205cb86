using IommuKit.Core;

namespace IommuKit.Host;

/// <summary>One step of putting the previous state back after a failed <see cref="HostAnalysis.ApplySetType"/>, and how it went.</summary>
/// <param name="Step">What the step does, e.g. <c>bind 0000:01:00.0 to e1000e</c>.</param>
/// <param name="Ok">It worked.</param>
/// <param name="Error">Why it did not; null when it worked.</param>
public sealed record RestoreStep(string Step, bool Ok, string? Error);

/// <summary>What <see cref="HostAnalysis.ApplySetType"/> did.</summary>
/// <param name="Ok">The type file reads what the plan expects.</param>
/// <param name="TypeNow">The type file after everything.</param>
/// <param name="Log">Every write made (and failed), as the shell line that does it.</param>
/// <param name="Restore">The restore steps after a failure, each with its outcome (empty on success).</param>
/// <param name="Restored">Null when nothing had to be restored; else whether every restore step worked and the type reads the old one again.</param>
public sealed record SetTypeOutcome(bool Ok, string TypeNow, IReadOnlyList<string> Log, IReadOnlyList<RestoreStep> Restore, bool? Restored = null);

public static partial class HostAnalysis
{
    /// <summary>
    /// Performs a set-type plan on a sysfs (<paramref name="io"/>: the live host or a directory root, confined to it):
    /// unbind the blocking drivers, write the type, bind them back, verify the type file; on any failure put the
    /// drivers and the old type back, in the reverse order, reporting each restore step. "Restored" is claimed only when
    /// every step worked and the type reads the old one again.
    /// </summary>
    public static SetTypeOutcome ApplySetType(SetTypePlan plan, HostModel model, ISysfsAccess io)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(io);
        var log = new List<string>();
        string typeFile = $"/sys/kernel/iommu_groups/{plan.Group.ToString(System.Globalization.CultureInfo.InvariantCulture)}/type";
        string Read()
        {
            // An unreadable type file reads as "unknown": verification then fails and the old state is restored.
            if (io.Read(typeFile) is { } text) return text;
            log.Add($"cat {typeFile} failed: it cannot be read");
            return "unknown";
        }
        string old = Read();
        var unbinds = plan.Result.IsOk ? [] : plan.Unbinds ?? [];
        if (!plan.Result.IsOk && !plan.StepsResult.IsOk)
            return new SetTypeOutcome(false, old, [$"not attempted: the model says the write fails ({plan.Result.Errno}) and no unbind sequence helps"], []);
        var undone = new List<(string Device, string Driver)>();
        string? lastError = null;
        bool Write(string path, string text)
        {
            try
            {
                io.Write(path, text);
                log.Add($"echo {text.TrimEnd('\n')} > {path}");
                lastError = null;
                return true;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                log.Add($"echo {text.TrimEnd('\n')} > {path} failed: {ex.Message}");
                lastError = ex.Message;
                return false;
            }
        }
        string DriverFile(string driver, string op) => $"/sys/bus/pci/drivers/{driver}/{op}";
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
        if (ok) return new SetTypeOutcome(true, now, log, []);
        // Restore: put the old type back with the drivers unbound again, then rebind; each step's outcome is reported,
        // and "restored" is claimed only when every step worked and the type reads the old one again.
        var steps = new List<RestoreStep>();
        void Step(string what, bool done) => steps.Add(new RestoreStep(what, done, done ? null : lastError));
        foreach (var (dev, drv) in rebound) Step($"unbind {dev} from {drv}", Write(DriverFile(drv, "unbind"), dev));
        if (Read() != old) Step($"write {old} to {typeFile}", Write(typeFile, old));
        foreach (var (dev, drv) in undone) Step($"bind {dev} to {drv}", Write(DriverFile(drv, "bind"), dev));
        now = Read();
        lastError = now == old ? null : $"type reads {now}, expected {old}";
        Step($"verify {typeFile} reads {old}", now == old);
        bool restored = steps.TrueForAll(x => x.Ok);
        return new SetTypeOutcome(false, now, log, steps, restored);
    }

    /// <summary>The type file the model expects after the plan's unbind/write/bind steps.</summary>
    private static string ExpectedAfterSteps(HostModel model, SetTypePlan plan)
    {
        var m = model.Rebuild();
        var g = m.ResolveGroup(plan.Group)!;
        foreach (var (dev, _) in plan.Unbinds ?? [])
            if (m.Core.FindDevice(dev) is { } d) m.Core.UnbindDriver(d);
        m.Core.StoreType(g, plan.Value);
        return m.Core.ReadType(g);
    }
}
