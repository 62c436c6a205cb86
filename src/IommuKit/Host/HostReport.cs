using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>Whether the machine (under the command line used) has an active IOMMU.</summary>
public enum IommuState
{
    /// <summary>The kernel made groups, or the model says an IOMMU is active.</summary>
    Active,
    /// <summary>No IOMMU is active: the kernel made no groups, or the model says none would be under this command line.</summary>
    Off,
    /// <summary>The source does not say (an lspci dump without units or "IOMMU group" lines): the model assumes one.</summary>
    Assumed,
}

/// <summary>Whose group a <see cref="GroupReport"/> is.</summary>
public enum GroupOrigin
{
    /// <summary>The kernel's, as the source recorded it.</summary>
    Kernel,
    /// <summary>The model's prediction.</summary>
    Model,
}

/// <summary>
/// One IOMMU group as every answer presents it: the kernel's (when the source has the kernel's groups) or the model's.
/// </summary>
/// <param name="Id">Group number: the kernel's, or the model's prediction of the kernel's numbering.</param>
/// <param name="Origin">Kernel or model.</param>
/// <param name="Type">The <c>type</c> file's text (<c>DMA-FQ</c>…): the kernel's when the source has it, else predicted; null when neither is known.</param>
/// <param name="ReservedRegions">The <c>reserved_regions</c> lines: kernel's when the source has them, else predicted; null when unknown.</param>
/// <param name="Fingerprint">Stable content fingerprint (member addresses and ids), independent of the number.</param>
/// <param name="Devices">Members in address order.</param>
/// <param name="UnknownFacts">
/// For the model's groups: devices whose missing facts (capabilities or bus ranges the source does not show) the
/// placement depended on, so the group is a guess; empty when the group rests on facts (always for the kernel's).
/// </param>
public sealed record GroupReport(
    int Id,
    GroupOrigin Origin,
    string? Type,
    IReadOnlyList<ReservedRegionText>? ReservedRegions,
    string Fingerprint,
    IReadOnlyList<PciDevice> Devices,
    IReadOnlyList<PciDevice>? UnknownFacts = null)
{
    /// <summary>Devices whose missing facts the placement depended on (empty when none).</summary>
    public IReadOnlyList<PciDevice> UnknownFacts { get; } = UnknownFacts ?? [];

    /// <summary>
    /// The requester-ID units of the group and the bonds that hold it together (<see cref="GroupBonds"/>); null when the
    /// model has no grouping context (IOMMU off and not predicted) or the group is too large.
    /// </summary>
    public Grouping.GroupUnits? Units { get; init; }

    /// <summary>The group holds the device at <paramref name="address"/>.</summary>
    public bool Contains(PciAddress address)
    {
        foreach (var d in Devices) if (d.Address == address) return true;
        return false;
    }
}

/// <summary>One difference between the kernel's groups and the model's: its text and the devices it is about.</summary>
public sealed record Disagreement(string Text, IReadOnlyList<PciAddress> Devices)
{
    /// <summary>The disagreement's text.</summary>
    public override string ToString() => Text;
}

/// <summary>
/// Everything <c>iommu groups</c> answers about one machine, as data: whether an IOMMU is active and why, the groups to
/// show (the kernel's when the source holds them, checked against the model; otherwise the model's prediction, forced
/// "as if the IOMMU were on" when it is off), each with its type, reserved regions and fingerprint, the model's own
/// groups, the disagreements and the notes. Built by <see cref="HostAnalysis.Analyze"/> from one boot of the core.
/// </summary>
public sealed class HostReport
{
    /// <summary>The machine analysed.</summary>
    public required Machine Machine { get; init; }
    /// <summary>The command line the analysis used: the source's, or the override.</summary>
    public required KernelCommandLine CommandLine { get; init; }
    /// <summary>The command line was given by the caller instead of the source's.</summary>
    public required bool CommandLineOverridden { get; init; }
    /// <summary>Whether an IOMMU is active, off, or assumed.</summary>
    public required IommuState State { get; init; }
    /// <summary>Why the IOMMU is (not) active, one line.</summary>
    public required string StateReason { get; init; }
    /// <summary>The groups to show, sorted by number.</summary>
    public required IReadOnlyList<GroupReport> Groups { get; init; }
    /// <summary>True when <see cref="Groups"/> are the model's prediction rather than the kernel's.</summary>
    public required bool Predicted { get; init; }
    /// <summary>The model's result the groups were compared with or taken from (forced active when the IOMMU is off).</summary>
    public required GroupingResult Model { get; init; }
    /// <summary>The model's groups.</summary>
    public required IReadOnlyList<GroupReport> ModelGroups { get; init; }
    /// <summary>Model/kernel disagreements, naming the devices (a bug for us to fix).</summary>
    public required IReadOnlyList<Disagreement> Disagreements { get; init; }
    /// <summary>Other things worth saying (the model's messages, why a prediction is shown), one line each.</summary>
    public required IReadOnlyList<string> Notes { get; init; }

    /// <summary>The disagreements about one device (it is a member of a group they compare).</summary>
    public IReadOnlyList<Disagreement> DisagreementsAbout(PciAddress a) => Disagreements.Where(d => d.Devices.Contains(a)).ToList();

    /// <summary>The shown group holding an address, or null.</summary>
    public GroupReport? GroupOf(PciAddress a) => Groups.FirstOrDefault(g => g.Contains(a));

    /// <summary>The shown group with number <paramref name="id"/>, or null.</summary>
    public GroupReport? GroupById(int id) => Groups.FirstOrDefault(g => g.Id == id);

    /// <summary>The model's group holding an address, or null.</summary>
    public GroupReport? ModelGroupOf(PciAddress a) => ModelGroups.FirstOrDefault(g => g.Contains(a));

    /// <summary>Why there is no IOMMU, in words: the kernel's empty groups, or the model under the overriding command line.</summary>
    public string NoIommuReason => CommandLineOverridden ? $"under --cmdline, {StateReason}" : "the kernel made no IOMMU groups";

    /// <summary>
    /// How to turn the IOMMU on: drop the switch that turned it off on the command line used (<see cref="IommuSwitches"/>),
    /// else enable it in the firmware.
    /// </summary>
    public string EnableAdvice
    {
        get
        {
            var sw = IommuSwitches.Parse(CommandLine);
            if (sw.IntelOff) return "The command line turns it off (intel_iommu=off): remove that, and enable VT-d in the firmware.";
            if (sw.AmdOff) return "The command line turns it off (amd_iommu=off): remove that, and enable AMD-Vi/IOMMU in the firmware.";
            if (sw.IommuOff) return "The command line turns it off (iommu=off): remove that, and enable VT-d / AMD-Vi in the firmware.";
            return "Enable VT-d / AMD-Vi (IOMMU) in the firmware; on Intel with kernels that do not enable it by default add intel_iommu=on.";
        }
    }
}
