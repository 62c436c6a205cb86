using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>
/// The sysfs a plan is performed on: paths are the host's absolute paths (<c>/sys/bus/pci/...</c>); an implementation
/// in the CLI maps them into a root (the live <c>/</c> or a directory root) and refuses anything that leaves it. The
/// Host layer reads and writes no file itself.
/// </summary>
public interface ISysfsAccess
{
    /// <summary>True on a live kernel (writes take effect; the <c>driver</c> link follows binds).</summary>
    bool Live { get; }
    /// <summary>Writes <paramref name="text"/> to the attribute at <paramref name="path"/> in one write.</summary>
    /// <exception cref="IOException">The write failed (the message says why).</exception>
    void Write(string path, string text);
    /// <summary>The attribute's text, trailing newline trimmed; null when it does not exist or cannot be read.</summary>
    string? Read(string path);
    /// <summary>The driver a device is bound to now (the name its <c>driver</c> link points at), or null.</summary>
    string? DriverOf(PciAddress device);
}

/// <summary>One write performed (or attempted): the action and, when it failed, why.</summary>
public sealed record AppliedAction(HostAction Action, string? Error)
{
    /// <summary>The write succeeded.</summary>
    public bool Ok => Error is null;
}

/// <summary>What <see cref="HostAnalysis.ApplyBind"/> did.</summary>
/// <param name="Ok">Every target ends on vfio-pci.</param>
/// <param name="Done">The writes of the plan, in order, up to the one that failed.</param>
/// <param name="Restore">The writes that put the previous state back after a failure (empty when none was needed).</param>
/// <param name="Failure">What failed, one line; null on success.</param>
/// <param name="Previous">Each target's driver and <c>driver_override</c> before the change.</param>
public sealed record BindOutcome(bool Ok, IReadOnlyList<AppliedAction> Done, IReadOnlyList<AppliedAction> Restore, string? Failure,
    IReadOnlyList<(PciAddress Device, string? Driver, string? Override)> Previous);

public static partial class HostAnalysis
{
    /// <summary>
    /// Performs a bind plan on <paramref name="io"/>: records every target's driver and <c>driver_override</c>, runs the
    /// steps in order, verifies each target is on vfio-pci (on a live kernel its <c>driver</c> link; on a directory root
    /// its <c>driver_override</c>), and on any failure puts every touched device back: unbind from vfio-pci, restore the
    /// old <c>driver_override</c>, bind the old driver, each restore step reported. A plan whose targets the host is
    /// using (<see cref="BindRefusal"/>: its root disk, default route, console, keyboard) is refused before any write.
    /// </summary>
    public static BindOutcome ApplyBind(VfioReport plan, ISysfsAccess io)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (BindRefusal(plan) is { } why) return new BindOutcome(false, [], [], "refusing to bind: " + why, []);
        return Apply(plan.Targets, plan.Steps, toVfio: true, io);
    }

    /// <summary>
    /// The card's functions <c>iommu unbind</c> gives back to the host: those of <paramref name="plan"/>'s card (in the
    /// group and in other groups) that are on a VFIO driver now.
    /// </summary>
    public static IReadOnlyList<PciDevice> GiveBackTargets(VfioReport plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        return plan.Members.Where(m => m.Role is DeviceRole.Asked or DeviceRole.SameCard).Select(m => m.Device)
            .Concat(plan.Related.Select(r => r.Device))
            .Where(d => d.Driver is { } drv && Passthrough.VfioCheck.IsVfioDriver(drv)).ToList();
    }

    /// <summary>Performs <see cref="UnbindSteps"/> for <see cref="GiveBackTargets"/>, verified and restored like <see cref="ApplyBind"/>.</summary>
    public static BindOutcome ApplyUnbind(VfioReport plan, ISysfsAccess io)
    {
        var targets = GiveBackTargets(plan);
        return Apply(targets, UnbindSteps(targets), toVfio: false, io);
    }

    private static BindOutcome Apply(IReadOnlyList<PciDevice> targets, IReadOnlyList<HostAction> steps, bool toVfio, ISysfsAccess io)
    {
        ArgumentNullException.ThrowIfNull(io);
        var plan = (Targets: targets, Steps: steps);
        var previous = plan.Targets.Select(d => (d.Address, io.DriverOf(d.Address) ?? d.Driver, CleanOverride(io.Read(OverridePath(d.Address))))).ToList();
        var done = new List<AppliedAction>();
        var touched = new List<PciAddress>();
        string? failure = null;
        foreach (var step in plan.Steps)
        {
            var dev = PciAddress.Parse(step.Device!);
            if (!touched.Contains(dev)) touched.Add(dev);
            try
            {
                io.Write(step.Path, step.Text.Length == 0 ? "\n" : step.Text);
                done.Add(new AppliedAction(step, null));
            }
            catch (IOException ex)
            {
                done.Add(new AppliedAction(step, ex.Message));
                failure = $"{Wording.Action(step)} failed: {ex.Message}";
                break;
            }
        }
        if (failure is null)
        {
            foreach (var d in plan.Targets)
            {
                // A directory root does not probe: there the override file is what can be checked.
                string? now = io.Live ? io.DriverOf(d.Address) : CleanOverride(io.Read(OverridePath(d.Address)));
                if ((now == VfioPci) != toVfio)
                {
                    failure = toVfio
                        ? $"verify: {d.Address} is on {now ?? "no driver"} after the probe, not {VfioPci}"
                        : $"verify: {d.Address} is still on {VfioPci} after the probe";
                    break;
                }
            }
        }
        if (failure is null) return new BindOutcome(true, done, [], null, previous);

        var restore = new List<AppliedAction>();
        for (int i = touched.Count - 1; i >= 0; i--)
        {
            var dev = touched[i];
            var (_, oldDriver, oldOverride) = previous.First(p => p.Address == dev);
            string a = dev.ToString();
            var actions = new List<HostAction>();
            string? current = io.DriverOf(dev);
            if (current is not null && current != oldDriver) actions.Add(HostAction.Unbind(a, current));
            actions.Add(HostAction.Override(a, oldOverride ?? ""));
            if (oldDriver is not null && (current != oldDriver || !io.Live)) actions.Add(HostAction.Bind(a, oldDriver, Core.IommuResult.Ok));
            foreach (var act in actions)
            {
                try
                {
                    io.Write(act.Path, act.Text.Length == 0 ? "\n" : act.Text);
                    restore.Add(new AppliedAction(act, null));
                }
                catch (IOException ex)
                {
                    // Keep going: every other device still deserves its restore.
                    restore.Add(new AppliedAction(act, ex.Message));
                }
            }
        }
        return new BindOutcome(false, done, restore, failure, previous);
    }

    /// <summary>The <c>driver_override</c> attribute of a device.</summary>
    public static string OverridePath(PciAddress a) => $"/sys/bus/pci/devices/{a}/driver_override";

    /// <summary>sysfs prints an unset override as <c>(null)</c>.</summary>
    private static string? CleanOverride(string? text) => text is null or "" or "(null)" ? null : text;
}
