using IommuKit.Pci;
using IommuKit.Passthrough;

namespace IommuKit.Host;

/// <summary>Why a device is in its group (<see cref="HostAnalysis.Explain"/>).</summary>
/// <param name="Report">The machine's analysis the explanation belongs to.</param>
/// <param name="Device">The device asked about.</param>
/// <param name="Steps">The chain of decisions of the model that placed it, each naming a device and the rule.</param>
/// <param name="Group">The group shown for it (the kernel's when the source has them), or null.</param>
/// <param name="ModelGroup">The model's group for it, or null.</param>
/// <param name="Disagreements">The model/kernel disagreements about this device.</param>
public sealed record ExplainReport(HostReport Report, PciDevice Device, IReadOnlyList<ExplainStep> Steps, GroupReport? Group,
    GroupReport? ModelGroup, IReadOnlyList<Disagreement> Disagreements)
{
    /// <summary>For every other member of <see cref="Group"/>: the kind of bond that puts it with the device, and why (<see cref="GroupBonds.MemberBonds"/>).</summary>
    public IReadOnlyList<MemberBond> Bonds { get; init; } = [];
}

/// <summary>Whether a group can be passed through with VFIO (<see cref="HostAnalysis.VfioCheck"/>).</summary>
/// <param name="Report">The machine's analysis.</param>
/// <param name="Target">The device asked about, or null when a group was asked for.</param>
/// <param name="Group">The group checked; null when the device is in no group.</param>
/// <param name="Verdict">The per-device verdict; null when the device is in no group.</param>
/// <param name="Outcome">The answer in one word.</param>
/// <param name="Problems">What stands in the way (for a device in no group, why it has none).</param>
/// <param name="Plan">The classified answer: class, roles, related functions, targets and steps.</param>
public sealed record VfioReport(HostReport Report, PciAddress? Target, GroupReport? Group, VfioVerdict? Verdict, VfioOutcome Outcome,
    IReadOnlyList<string> Problems, VfioPlan Plan)
{
    /// <summary>
    /// With a virtual IOMMU in the VM: which members must share one guest address space (they share a requester ID) and
    /// which could each have their own (<see cref="GroupBonds.AddressSpaces"/>); empty for a group of one device or unknown units.
    /// </summary>
    public IReadOnlyList<GuestAddressSpace> AddressSpaces { get; init; } = [];
    /// <summary>The verdict class: the one answer (docs/cli.md "vfio-check").</summary>
    public VerdictClass Class => Plan.Class;
    /// <summary>The device the roles are relative to (the target, or the group's first non-bridge function).</summary>
    public PciAddress? Asked => Plan.Asked;
    /// <summary>The group's members with their roles, in the group's order; empty when the device is in no group.</summary>
    public IReadOnlyList<VerdictMember> Members => Plan.Members;
    /// <summary>The card's functions in other groups.</summary>
    public IReadOnlyList<RelatedFunction> Related => Plan.Related;
    /// <summary>The devices a bind moves to vfio-pci (the card's functions not on a VFIO driver yet).</summary>
    public IReadOnlyList<PciDevice> Targets => Plan.Targets;
    /// <summary>The sysfs writes that bind the targets: unbind, driver_override, drivers_probe.</summary>
    public IReadOnlyList<HostAction> Steps => Plan.Steps;
    /// <summary>Why the device is not assignable (host function, direct region, interrupt remapping); empty otherwise.</summary>
    public IReadOnlyList<string> Reasons => Plan.Reasons;
    /// <summary>For shares-group: what would give the card a group of its own, with the risk stated.</summary>
    public IReadOnlyList<string> Splits => Plan.Splits;
    /// <summary>For no-iommu: the actual cause and how to turn it on.</summary>
    public string? NoIommuCause => Plan.NoIommuCause;

    /// <summary>
    /// What the host would lose if the whole group went to a VM: first each other device (what the host uses it for,
    /// else what kind of host function it is), then each of the card's own functions the host uses
    /// (<see cref="VerdictMember.Loss"/>: from the source's host uses when it carries them), each in the group's order.
    /// The one list <c>vfio-check</c>'s text and JSON and the report's picture show.
    /// </summary>
    public IReadOnlyList<HostLoss> HostLosses => Members
        .Where(m => m.Role == DeviceRole.Other)
        .Select(m => m.Loss ?? new HostLoss(m.Address, m.HostFunction is { } k ? HostFunctions.Describe(k) : "another device the host keeps using"))
        .Concat(Members.Where(m => m.Role != DeviceRole.Other && m.Loss is not null).Select(m => m.Loss!))
        .ToList();
}

/// <summary>The one-word answer of a VFIO check.</summary>
public enum VfioOutcome
{
    /// <summary>The group can be given to a VM as the source shows it.</summary>
    Viable,
    /// <summary>It cannot, as the source shows it.</summary>
    NotViable,
    /// <summary>No IOMMU is active (the verdict shown is the prediction's).</summary>
    NoIommu,
}

public static partial class HostAnalysis
{
    /// <summary>The chain of decisions that put the device at <paramref name="address"/> in its group.</summary>
    /// <exception cref="InputException">No such device.</exception>
    public static ExplainReport Explain(HostReport report, PciAddress address)
    {
        ArgumentNullException.ThrowIfNull(report);
        var device = DeviceOf(report.Machine, address);
        var group = report.GroupOf(address);
        return new ExplainReport(report, device, report.Model.Explain(address), group, report.ModelGroupOf(address),
            report.DisagreementsAbout(address))
        {
            Bonds = group?.Units is { } units ? GroupBonds.MemberBonds(units, address) : [],
        };
    }

    /// <summary>
    /// Can the group of <paramref name="target"/> (or group <paramref name="group"/>) be given to a VM through VFIO, per
    /// the source's kernel generation (<see cref="Passthrough.VfioCheck"/>)? Exactly one of the two is given.
    /// </summary>
    /// <exception cref="InputException">No such device or group.</exception>
    /// <exception cref="ArgumentException">Both or neither of <paramref name="target"/> and <paramref name="group"/> given.</exception>
    /// <param name="force">Treat a management engine (the one forceable host function) as assignable.</param>
    public static VfioReport VfioCheck(HostReport report, PciAddress? target, int? group, bool force = false)
    {
        ArgumentNullException.ThrowIfNull(report);
        if ((target is null) == (group is null)) throw new ArgumentException("give either a device or a group");
        if (target is { } t0) DeviceOf(report.Machine, t0);
        var view = target is { } t ? report.GroupOf(t) : report.GroupById(group!.Value);
        if (view is null && target is null)
            throw new InputException($"group {group}: no such group in {report.Machine.Origin}");
        bool noIommu = report.State == IommuState.Off;
        if (view is null)
        {
            // An active IOMMU, but the device is in no group: no unit manages it (kernel-model spec 2, "no group").
            var msg = $"{target!.Value} is in no IOMMU group: no IOMMU unit manages it, so VFIO cannot take it";
            var none = Classify(report, null, null, target, force);
            return new VfioReport(report, target, null, null, noIommu ? VfioOutcome.NoIommu : VfioOutcome.NotViable, [msg],
                none with { Reasons = [.. none.Reasons, msg] });
        }
        var verdict = Passthrough.VfioCheck.Evaluate(report.Machine,
            new PassthroughGroup(view.Id, view.Devices.Select(d => d.Address).ToList(), view.ReservedRegions), target, report.CommandLine);
        var outcome = noIommu ? VfioOutcome.NoIommu : verdict.Viable ? VfioOutcome.Viable : VfioOutcome.NotViable;
        return new VfioReport(report, target, view, verdict, outcome, verdict.Problems, Classify(report, view, verdict, target, force))
        {
            AddressSpaces = view.Units is { } units ? GroupBonds.AddressSpaces(units) : [],
        };
    }

    /// <summary>The device at an address of the machine, or a bad-input error naming it.</summary>
    /// <exception cref="InputException">No such device.</exception>
    public static PciDevice DeviceOf(Machine machine, PciAddress address)
    {
        ArgumentNullException.ThrowIfNull(machine);
        return machine.Topology.Find(address) ?? throw new InputException($"{address}: no such device in {machine.Origin}");
    }
}
