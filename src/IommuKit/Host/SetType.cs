using IommuKit.Core;

namespace IommuKit.Host;

/// <summary>What a <see cref="HostAction"/> does.</summary>
public enum HostActionKind
{
    /// <summary>Unbind a device from its driver (<c>/sys/bus/pci/drivers/D/unbind</c>).</summary>
    Unbind,
    /// <summary>Write a group's default domain type (<c>/sys/kernel/iommu_groups/N/type</c>).</summary>
    WriteType,
    /// <summary>Bind a device to a driver (<c>/sys/bus/pci/drivers/D/bind</c>).</summary>
    Bind,
    /// <summary>Set which driver may claim a device (<c>/sys/bus/pci/devices/A/driver_override</c>; empty text clears it).</summary>
    Override,
    /// <summary>Ask the PCI core to probe a device again (<c>/sys/bus/pci/drivers_probe</c>).</summary>
    Probe,
}

/// <summary>
/// One write to a host's sysfs that a plan asks for, as data: what it does, the file (absolute in the host's root) and
/// the text written. <see cref="Wording.Action"/> words it; a writer in Sources performs it.
/// </summary>
/// <param name="Kind">What it does.</param>
/// <param name="Path">The sysfs file written, e.g. <c>/sys/bus/pci/drivers/e1000e/unbind</c>.</param>
/// <param name="Text">What is written to it.</param>
/// <param name="Device">The device it is about (unbind/bind).</param>
/// <param name="Driver">The driver it is about (unbind/bind).</param>
/// <param name="Predicted">What the model says the write returns, when it says it fails; null when it succeeds or is not modelled.</param>
public sealed record HostAction(HostActionKind Kind, string Path, string Text, string? Device = null, string? Driver = null, IommuResult? Predicted = null)
{
    /// <summary>Unbind <paramref name="device"/> from <paramref name="driver"/>.</summary>
    public static HostAction Unbind(string device, string driver) =>
        new(HostActionKind.Unbind, $"/sys/bus/pci/drivers/{driver}/unbind", device, device, driver);

    /// <summary>Bind <paramref name="device"/> to <paramref name="driver"/>; <paramref name="predicted"/> is the model's result.</summary>
    public static HostAction Bind(string device, string driver, IommuResult predicted) =>
        new(HostActionKind.Bind, $"/sys/bus/pci/drivers/{driver}/bind", device, device, driver, predicted.IsOk ? null : predicted);

    /// <summary>Let only <paramref name="driver"/> claim <paramref name="device"/> (empty: any driver, the kernel default).</summary>
    public static HostAction Override(string device, string driver) =>
        new(HostActionKind.Override, $"/sys/bus/pci/devices/{device}/driver_override", driver, device, driver.Length == 0 ? null : driver);

    /// <summary>Probe <paramref name="device"/> again: the driver its <c>driver_override</c> names (or any matching one) claims it.</summary>
    public static HostAction Probe(string device) =>
        new(HostActionKind.Probe, "/sys/bus/pci/drivers_probe", device, device);

    /// <summary>Write <paramref name="type"/> to group <paramref name="group"/>'s <c>type</c> file.</summary>
    public static HostAction WriteType(int group, string type) =>
        new(HostActionKind.WriteType, $"/sys/kernel/iommu_groups/{group}/type", type);
}

/// <summary>What a sysfs <c>type</c> write would do (<see cref="HostAnalysis.SetType"/>).</summary>
/// <param name="Plan">The dry run; null when the machine has no active IOMMU (no groups, no type files).</param>
/// <param name="Model">The core the dry run was made on (the kernel's recorded groups when the source has them).</param>
public sealed record SetTypeReport(SetTypePlan? Plan, HostModel Model)
{
    /// <summary>The kernel generation whose rules decided.</summary>
    public KernelVersion Kernel => Model.Core.Kernel;

    /// <summary>Assumptions the model made, one line each.</summary>
    public IReadOnlyList<string> Notes => Model.Notes;
}

public static partial class HostAnalysis
{
    /// <summary>
    /// What writing <paramref name="value"/> to group <paramref name="group"/>'s <c>type</c> file would do on the
    /// source's kernel: a dry run through the core over the kernel's own groups when the source has them ("would
    /// succeed", or the errno and why), and the unbind/write/bind actions that would make it succeed.
    /// </summary>
    /// <param name="commandLine">A command line to model instead of the source's; null for the source's.</param>
    /// <exception cref="InputException">No such group.</exception>
    public static SetTypeReport SetType(Machine machine, string? commandLine, int group, string value)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(value);
        var cmd = KernelCommandLine.Parse(commandLine ?? machine.CommandLine);
        var model = HostModel.FromMachine(machine, cmd, new HostModelOptions(Groups: GroupSource.Recorded));
        if (model.Driver is null || model.Core.Groups.Count == 0) return new SetTypeReport(null, model);
        if (model.ResolveGroup(group) is null)
            throw new InputException($"group {group}: no such group in {machine.Origin}");
        return new SetTypeReport(model.DryRunSetType(group, value), model);
    }
}

public static partial class Wording
{
    /// <summary>One action as a step of a plan: what it does, then the shell line that does it.</summary>
    public static string Action(HostAction a) => a.Kind switch
    {
        HostActionKind.Unbind => $"unbind {a.Device} from {a.Driver}: echo {a.Text} > {a.Path}",
        HostActionKind.WriteType => $"write the type: echo {a.Text} > {a.Path}",
        HostActionKind.Override when a.Text.Length == 0 => $"let any driver claim {a.Device} again: echo > {a.Path}",
        HostActionKind.Override => $"let only {a.Text} claim {a.Device}: echo {a.Text} > {a.Path}",
        HostActionKind.Probe => $"probe {a.Device} again: echo {a.Text} > {a.Path}",
        _ when a.Predicted is { } r => $"bind {a.Device} back to {a.Driver} (the model says it would fail: {r})",
        _ => $"bind {a.Device} back to {a.Driver}: echo {a.Text} > {a.Path}",
    };
}
