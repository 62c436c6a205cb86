using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>What kind of decision a <see cref="GroupStep"/> records.</summary>
public enum GroupStepKind
{
    /// <summary>The IOMMU is not active, or the device is not managed by any unit: no group.</summary>
    NoGroup,
    /// <summary>The device's DMA is issued by another device (VMD): <c>pci_real_dma_dev</c>.</summary>
    RealDmaDevice,
    /// <summary>A DMA alias quirk gives the device extra requester IDs (spec 2.8).</summary>
    AliasQuirk,
    /// <summary>The alias walk passed a bridge that takes ownership of the requests (spec 2.2).</summary>
    BridgeAlias,
    /// <summary>The alias walk stopped at a BRIDGE_XLATE_ROOT bridge.</summary>
    XlateRoot,
    /// <summary>A bridge on the path lacks ACS isolation: the group widens to it (spec 2.4 step 3).</summary>
    AcsNotIsolated,
    /// <summary>The path from a bridge to the root is isolated by ACS: the climb stops (spec 2.4 step 3).</summary>
    AcsIsolated,
    /// <summary>An ACS quirk decided a device's isolation (spec 2.7 table).</summary>
    AcsQuirk,
    /// <summary>A device shares DMA aliases with another one on its bus (spec 2.4 step 4).</summary>
    DmaAliasOfDevice,
    /// <summary>Another function of the same multifunction slot without ACS (spec 2.4 step 5).</summary>
    SameSlotFunction,
    /// <summary>The device lies on a root bus: root-complex-internal isolation is assumed.</summary>
    RootBus,
    /// <summary>A device already in a group was found: join that group.</summary>
    JoinExistingGroup,
    /// <summary>Nothing shared was found: a new group is allocated.</summary>
    NewGroup,
    /// <summary>A fact the rule needs is missing from the source: the result is a guess.</summary>
    UnknownFacts,
    /// <summary>The kernel's enabling step or a command-line option changed the device's ACS (spec 2.7).</summary>
    AcsSetting,
}

/// <summary>Why a device has no group (<see cref="GroupStepKind.NoGroup"/>).</summary>
public enum NoGroupReason
{
    /// <summary>No IOMMU is active.</summary>
    IommuOff,
    /// <summary>No IOMMU unit manages the device (not in any unit's scope).</summary>
    NotManaged,
}

/// <summary>Why the source leaves a device's place in the tree unknown (<see cref="GroupStepKind.UnknownFacts"/> at the start of a walk).</summary>
public enum PlacementUnknown
{
    /// <summary>Not a placement question.</summary>
    None,
    /// <summary>The device is a bridge whose bus range the source does not show: what sits below it is unknown.</summary>
    BridgeRangeUnknown,
    /// <summary>The device is on a bus that no bridge in the source claims.</summary>
    BusUnclaimed,
}

/// <summary>
/// One decision in the chain that put a device in its group, as typed facts: the rule (<see cref="Kind"/>), the device
/// it is about, and the facts the rule used. The grouping mechanism emits these; the Host layer words them
/// (<c>IommuKit.Host.Wording</c>), so no sentence is built inside the mechanism.
/// </summary>
/// <param name="Kind">The rule.</param>
/// <param name="Device">The device the decision is about (the bridge for a bridge alias, the port for an ACS decision).</param>
public sealed record GroupStep(GroupStepKind Kind, PciAddress Device)
{
    /// <summary>The device being grouped, when the step is about another one (a bridge it aliases to, a group it joins).</summary>
    public PciAddress? Origin { get; init; }
    /// <summary>For <see cref="GroupStepKind.AcsNotIsolated"/>: the bridge whose path to the root fails at <see cref="Device"/>, when they differ.</summary>
    public PciAddress? Below { get; init; }
    /// <summary>For <see cref="GroupStepKind.BridgeAlias"/>: the requester ID the bridge's requests carry.</summary>
    public ushort? RequesterId { get; init; }
    /// <summary>For <see cref="GroupStepKind.BridgeAlias"/>: what kind of bridge takes ownership of the requests.</summary>
    public DmaAliasVia Via { get; init; }
    /// <summary>For <see cref="GroupStepKind.AcsIsolated"/>/<see cref="GroupStepKind.AcsQuirk"/>: the decision isolates the functions of a multifunction device.</summary>
    public bool Functions { get; init; }
    /// <summary>For <see cref="GroupStepKind.UnknownFacts"/> at the start of a walk: what is unknown about the device's place.</summary>
    public PlacementUnknown Placement { get; init; }
    /// <summary>For <see cref="GroupStepKind.UnknownFacts"/> at the end: the devices whose facts are missing.</summary>
    public IReadOnlyList<PciAddress>? Others { get; init; }
    /// <summary>For <see cref="GroupStepKind.AliasQuirk"/>: the quirk's name; for <see cref="GroupStepKind.AcsSetting"/>: the ACS policy's note; for <see cref="GroupStepKind.NoGroup"/>: the firmware rule that leaves the device out, when one does.</summary>
    public string? Detail { get; init; }
    /// <summary>For the final step: the group number.</summary>
    public int? Group { get; init; }
    /// <summary>For <see cref="GroupStepKind.NoGroup"/>: why.</summary>
    public NoGroupReason NoGroupWhy { get; init; }
}

/// <summary>Collects the steps of one <see cref="PciGrouping.DeviceGroup{TGroup}"/> call. Not thread-safe.</summary>
public sealed class GroupTrace
{
    private readonly List<GroupStep> _steps = new();

    /// <summary>The steps recorded so far, in order.</summary>
    public IReadOnlyList<GroupStep> Steps => _steps;

    /// <summary>Records one step.</summary>
    public void Add(GroupStep step) => _steps.Add(step);

    /// <summary>Forgets every recorded step.</summary>
    public void Clear() => _steps.Clear();
}
