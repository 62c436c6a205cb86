using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>One whole-group change between two lists of groups: the groups before and after that share devices.</summary>
public sealed record GroupReportChange(GroupChangeKind Kind, IReadOnlyList<GroupReport> Before, IReadOnlyList<GroupReport> After)
{
    /// <summary>The changes between <paramref name="before"/> and <paramref name="after"/>, matched by device identity (<see cref="PartitionDiff.Match{TGroup}"/>).</summary>
    public static IReadOnlyList<GroupReportChange> Compute(IReadOnlyList<GroupReport> before, IReadOnlyList<GroupReport> after,
        IReadOnlyDictionary<PciAddress, PciAddress>? addressMap = null) =>
        PartitionDiff.Match(before, after, g => g.Devices, g => g.Id, addressMap)
            .Select(c => new GroupReportChange(c.Kind, c.Before, c.After)).ToList();
}

/// <summary>What <see cref="HostAnalysis.WhatIf"/> is asked: another command line, a card in another slot, or both.</summary>
/// <param name="CommandLine">The kernel command line to model after the change; null keeps the source's.</param>
/// <param name="MoveCard">A device of the card to move (all its functions and anything below them move).</param>
/// <param name="MovePort">The bridge or port whose secondary bus receives the card.</param>
public sealed record WhatIfRequest(string? CommandLine = null, PciAddress? MoveCard = null, PciAddress? MovePort = null)
{
    /// <summary>The request moves a card.</summary>
    public bool Moves => MoveCard is not null && MovePort is not null;
}

/// <summary>The answer of a what-if, in one word.</summary>
public enum WhatIfOutcome
{
    /// <summary>Some group changes.</summary>
    Changes,
    /// <summary>Every group keeps exactly its members: the change buys nothing.</summary>
    BuysNothing,
    /// <summary>No IOMMU would be active after the change (or before and after, when the comparison is "as if on").</summary>
    NoIommu,
}

/// <summary>The groups before and after a change, and their difference (<see cref="HostAnalysis.WhatIf"/>).</summary>
public sealed record WhatIfReport
{
    /// <summary>The machine as it is today.</summary>
    public required Machine Machine { get; init; }
    /// <summary>What was asked.</summary>
    public required WhatIfRequest Request { get; init; }
    /// <summary>The source's command line.</summary>
    public required KernelCommandLine Today { get; init; }
    /// <summary>The command line after the change (today's when it does not change it).</summary>
    public required KernelCommandLine Then { get; init; }
    /// <summary>Old address to new address of every moved device; null when nothing moves.</summary>
    public IReadOnlyDictionary<PciAddress, PciAddress>? AddressMap { get; init; }
    /// <summary>Neither side has an IOMMU: both were computed as if one were on.</summary>
    public required bool Forced { get; init; }
    /// <summary>An IOMMU is active today (false when both sides are computed "as if on").</summary>
    public required bool ActiveBefore { get; init; }
    /// <summary>An IOMMU would be active after the change (false when both sides are "as if on").</summary>
    public required bool ActiveAfter { get; init; }
    /// <summary>Why no IOMMU is active after the change, when none is.</summary>
    public required string ActivationAfter { get; init; }
    /// <summary>The model's groups today.</summary>
    public required IReadOnlyList<GroupReport> GroupsBefore { get; init; }
    /// <summary>The model's groups after the change.</summary>
    public required IReadOnlyList<GroupReport> GroupsAfter { get; init; }
    /// <summary>The changes from before to after, matched by device identity (moved devices through the address map).</summary>
    public required IReadOnlyList<GroupReportChange> Changes { get; init; }
    /// <summary>
    /// For a <c>pcie_acs_override=</c> the kernel does not honour (no out-of-tree patch): the changes on a kernel that
    /// carries the patch; null otherwise.
    /// </summary>
    public IReadOnlyList<GroupReportChange>? WithAcsOverridePatch { get; init; }
    /// <summary>Notes of the model and the change, one line each.</summary>
    public required IReadOnlyList<string> Notes { get; init; }
    /// <summary>The answer in one word.</summary>
    public required WhatIfOutcome Outcome { get; init; }
    /// <summary>Every group keeps exactly its members (whatever the outcome: also when both sides are "as if on").</summary>
    public bool BuysNothing => Changes.All(e => e.Kind == GroupChangeKind.Unchanged);
}

public static partial class HostAnalysis
{
    /// <summary>
    /// The groups under a changed command line and/or with a card moved to another port, as a diff against today's
    /// groups (both from the model, so the comparison is like for like). When neither side has an IOMMU, both are
    /// computed as if one were on, and the report says so.
    /// </summary>
    /// <exception cref="InputException">No such card or port, the port has no bus below it or no free slot, or the card is already there.</exception>
    /// <exception cref="ArgumentException">The request changes nothing.</exception>
    public static WhatIfReport WhatIf(Machine machine, WhatIfRequest request)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(request);
        if (request.CommandLine is null && !request.Moves) throw new ArgumentException("the request changes nothing", nameof(request));
        var todayCmd = KernelCommandLine.Parse(machine.CommandLine);
        var thenCmd = request.CommandLine is null ? todayCmd : KernelCommandLine.Parse(request.CommandLine);
        Machine thenMachine = machine;
        IReadOnlyDictionary<PciAddress, PciAddress>? map = null;
        var notes = new List<string>();
        string? moveNote = null;
        if (request.Moves) thenMachine = Move(machine, request.MoveCard!.Value, request.MovePort!.Value, out map, out moveNote);

        var options = new GroupingOptions { CommandLine = todayCmd };
        var today = ModelGrouping.Compute(machine, options);
        var then = ModelGrouping.Compute(thenMachine, options with { CommandLine = thenCmd });
        bool forced = false;
        if (!today.IommuActive && !then.IommuActive)
        {
            // Neither has an IOMMU: compare what the kernel would do with one, and say so.
            forced = true;
            today = ModelGrouping.Compute(machine, options with { ForceIommuActive = true });
            then = ModelGrouping.Compute(thenMachine, options with { CommandLine = thenCmd, ForceIommuActive = true });
            notes.Add("no IOMMU is active before or after the change: comparing the groups the kernel would make with one");
        }
        foreach (var msg in then.Messages) if (!notes.Contains(msg)) notes.Add(msg);
        if (moveNote is not null) notes.Add(moveNote);

        var before = ModelReports(today);
        var after = ModelReports(then);
        var changes = GroupReportChange.Compute(before, after, map);
        bool nothing = changes.All(e => e.Kind == GroupChangeKind.Unchanged);

        // pcie_acs_override= on a kernel without the out-of-tree patch does nothing; people asking usually mean to switch
        // to a kernel that carries it (Proxmox -pve, zen, liquorix), so give that answer too, labelled as such.
        IReadOnlyList<GroupReportChange>? patched = null;
        if (then.IommuActive && then.Context?.Acs.Override is { Given: true, Honoured: false })
        {
            var withPatch = ModelGrouping.Compute(thenMachine, options with { CommandLine = thenCmd, ForceIommuActive = forced, KernelCarriesAcsOverride = true });
            patched = GroupReportChange.Compute(before, ModelReports(withPatch), map);
        }
        var outcome = !then.IommuActive || forced ? WhatIfOutcome.NoIommu : nothing ? WhatIfOutcome.BuysNothing : WhatIfOutcome.Changes;
        return new WhatIfReport
        {
            Machine = machine,
            Request = request,
            Today = todayCmd,
            Then = thenCmd,
            AddressMap = map,
            Forced = forced,
            ActiveBefore = today.IommuActive && !forced,
            ActiveAfter = then.IommuActive && !forced,
            ActivationAfter = then.Activation.Reason,
            GroupsBefore = before,
            GroupsAfter = after,
            Changes = changes,
            WithAcsOverridePatch = patched,
            Notes = notes,
            Outcome = outcome,
        };
    }

    /// <summary>The machine with the card moved to the first free device number below <paramref name="portAddress"/>.</summary>
    private static Machine Move(Machine machine, PciAddress cardAddress, PciAddress portAddress,
        out IReadOnlyDictionary<PciAddress, PciAddress> map, out string? note)
    {
        note = null;
        var card = DeviceOf(machine, cardAddress);
        var port = DeviceOf(machine, portAddress);
        if (MachineRewrite.SecondaryBus(port) is null)
            throw new InputException($"--move: {portAddress} is not a bridge or port with a bus below it");
        if (port.Subordinate is not null && card.Bus == port.Subordinate)
            throw new InputException($"--move: {cardAddress} is already on the bus below {portAddress}");
        // The first free device number on the port's bus (a root or downstream port has only device 0; an empty slot's
        // bus has no devices yet).
        var onBus = port.Subordinate?.Devices ?? [];
        int slot = Enumerable.Range(0, 32).FirstOrDefault(n => onBus.All(d => d.Address.Device != n), -1);
        if (slot < 0) throw new InputException($"--move: the bus below {portAddress} has no free slot");
        var moved = MachineRewrite.MoveSlot(machine, cardAddress, portAddress, slot, out map);
        if (slot > 0 && port.PcieType is PcieType.RootPort or PcieType.Downstream)
            note = ($"a PCIe port's link carries one card (device 0) and {portAddress.ToShortString()} already has one; " +
                      $"the model places the card beside it as device {slot:x2}, as if the slot were free");
        return moved;
    }
}
