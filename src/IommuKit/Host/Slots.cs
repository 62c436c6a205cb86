using IommuKit.Passthrough;
using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>The group a card would get in a slot, best first (the order <see cref="HostAnalysis.Slots"/> ranks by).</summary>
public enum SlotFit
{
    /// <summary>The card's functions (and anything below them) are alone in their group.</summary>
    Alone,
    /// <summary>The group holds the card and only bridges or ports of its path: they stay on pcieport, so it can still be passed through.</summary>
    WithPath,
    /// <summary>The group holds other devices: they would go to the VM with the card, or nothing goes.</summary>
    Shares,
    /// <summary>The model cannot put the card there (see <see cref="SlotCandidate.Problem"/>).</summary>
    Unknown,
}

/// <summary>One port a card can sit behind: a root or downstream port that implements a slot, or a bridge with a named slot below it.</summary>
/// <param name="Port">The root port, downstream port or bridge whose secondary bus is the slot.</param>
/// <param name="Name">The slot's name (<see cref="PciSlots.NameOf"/>), or null.</param>
/// <param name="HotPlug">The slot is hot-plug capable.</param>
/// <param name="Occupants">The functions on the port's secondary bus (what is in the slot), in address order; empty for an empty slot.</param>
/// <param name="PortGroup">The group the port is in (the kernel's when the source has them), or null.</param>
public sealed record SlotCandidate(PciDevice Port, string? Name, bool HotPlug, IReadOnlyList<PciDevice> Occupants, GroupReport? PortGroup)
{
    /// <summary>The slot holds something.</summary>
    public bool Occupied => Occupants.Count > 0;
    /// <summary>With a card asked: the card sits behind this port today.</summary>
    public bool Current { get; init; }
    /// <summary>With a card asked: the group the card would get here, in one word.</summary>
    public SlotFit? Fit { get; init; }
    /// <summary>With a card asked: the model's group the card would be in here (addresses after the move), or null.</summary>
    public GroupReport? CardGroup { get; init; }
    /// <summary>With a card asked: the other members of that group (not the card's own functions), in address order.</summary>
    public IReadOnlyList<PciDevice> With { get; init; } = [];
    /// <summary>Why the model cannot put the card here (the what-if's error), or null.</summary>
    public string? Problem { get; init; }
}

/// <summary>Every slot of a machine, or for a card the slots it could be moved to, ranked (<see cref="HostAnalysis.Slots"/>).</summary>
public sealed record SlotsReport
{
    /// <summary>The machine's analysis (its groups are the ones <see cref="SlotCandidate.PortGroup"/> names).</summary>
    public required HostReport Report { get; init; }
    /// <summary>The card asked about, or null for the plain list.</summary>
    public PciAddress? Card { get; init; }
    /// <summary>
    /// The device that moves: the asked one, or the upstream port of the switch on its card (a GPU behind its own
    /// switch moves with the switch); the <c>whatif --move</c> card of every ranked slot. Null without a card.
    /// </summary>
    public PciAddress? Moves { get; init; }
    /// <summary>
    /// The slots: in port address order without a card; with one, best first: a group of its own (alone or with its path
    /// only), then fewer other devices, then the slot it is in today, then a free slot, then fewer bridges, then port address.
    /// </summary>
    public required IReadOnlyList<SlotCandidate> Slots { get; init; }
    /// <summary>Things worth saying (the card's port has no slot, the model compares "as if on"), one line each.</summary>
    public required IReadOnlyList<string> Notes { get; init; }
    /// <summary>With a card: some slot gives it a group of its own (alone or with its path only).</summary>
    public bool Isolatable => Slots.Any(s => s.Fit is SlotFit.Alone or SlotFit.WithPath);
}

public static partial class HostAnalysis
{
    /// <summary>
    /// The machine's slots: every PCIe root or downstream port that implements a slot or is hot-plug capable (PCIe r6.0
    /// §7.5.3.2 Slot Implemented, §7.5.3.9 Slot Capabilities), and every bridge with a named slot on its secondary bus,
    /// each with what is in it and the port's group. With <paramref name="card"/>, every slot the card could be moved to,
    /// ranked by the group the card would get there: each is one <see cref="WhatIf"/> with the card moved to that port
    /// (<see cref="WhatIfRequest.MoveCard"/>), so the ranking is exactly what <c>iommu whatif --move</c> predicts; the slot
    /// it is in today is ranked by the model's group today.
    /// </summary>
    /// <exception cref="InputException">No such device, or it is not a card (built into the chipset or CPU, inside a switch, an SR-IOV VF).</exception>
    public static SlotsReport Slots(HostReport report, PciAddress? card = null)
    {
        ArgumentNullException.ThrowIfNull(report);
        var machine = report.Machine;
        var notes = new List<string>();
        var ports = machine.Topology.Devices.Where(d => IsSlotPort(machine, d)).OrderBy(d => d.Address).ToList();
        var plain = ports.ConvertAll(p => new SlotCandidate(p, PciSlots.NameOf(machine, p), PciSlots.HotPlug(p),
            p.Subordinate?.Devices.OrderBy(d => d.Address).ToList() ?? [], report.GroupOf(p.Address)));
        if (card is not { } c) return new SlotsReport { Report = report, Slots = plain, Notes = notes };

        var device = CardOf(machine, c);
        if (device.Address != c)
            notes.Add($"{c.ToShortString()} sits behind a switch on the card at {device.Address.ToShortString()}: the whole card moves");
        var moved = new HashSet<PciAddress>();
        foreach (var f in device.Bus.Devices.Where(d => HostFunctions.SameSlot(d.Address, device.Address)))
        {
            moved.Add(f.Address);
            foreach (var b in PciTopology.Below(f)) moved.Add(b.Address);
        }
        var parent = device.Parent!;
        if (!IsSlotPort(machine, parent))
            notes.Add($"the port above {device.Address.ToShortString()} ({parent.Address.ToShortString()}) implements no slot: the card is probably soldered to the board");

        var ranked = new List<SlotCandidate>();
        bool forced = false;
        int tried = 0;
        foreach (var slot in plain)
        {
            if (moved.Contains(slot.Port.Address)) continue; // a port of the card itself
            if (slot.Port != parent && ++tried > MaxRankedSlots)
            {
                notes.Add($"only the first {MaxRankedSlots} slots (by port address) are ranked: each costs one what-if");
                break;
            }
            if (slot.Port == parent)
            {
                var today = report.ModelGroupOf(c);
                ranked.Add(Judge(slot with { Current = true }, today, moved));
                continue;
            }
            WhatIfReport w;
            try { w = WhatIf(machine, new WhatIfRequest(MoveCard: device.Address, MovePort: slot.Port.Address)); }
            catch (InputException ex)
            {
                ranked.Add(slot with { Fit = SlotFit.Unknown, Problem = ex.Message });
                continue;
            }
            forced |= w.Forced;
            var map = w.AddressMap!;
            var movedThere = moved.Select(a => map.TryGetValue(a, out var n) ? n : a).ToHashSet();
            var group = w.GroupsAfter.FirstOrDefault(g => g.Contains(map[c]));
            ranked.Add(Judge(slot, group, movedThere));
        }
        if (!ranked.Any(s => s.Current))
        {
            // The card's port implements no slot: rank where it is today too, so the list says whether moving helps.
            var here = new SlotCandidate(parent, PciSlots.NameOf(machine, parent), PciSlots.HotPlug(parent),
                parent.Subordinate?.Devices.OrderBy(d => d.Address).ToList() ?? [], report.GroupOf(parent.Address)) { Current = true };
            ranked.Add(Judge(here, report.ModelGroupOf(c), moved));
        }
        if (forced || report.State == IommuState.Off)
            notes.Add("no IOMMU is active: the groups are the ones the kernel would make with one");
        ranked.Sort(CompareFit);
        return new SlotsReport { Report = report, Card = c, Moves = device.Address, Slots = ranked, Notes = notes };
    }

    /// <summary>
    /// At most this many slots are ranked for a card (each is one what-if, two boots of the core): a machine with more
    /// slot ports (a hostile dump) is cut off with a note.
    /// </summary>
    public const int MaxRankedSlots = 64;

    /// <summary>A slot: a root or downstream port with a slot (<see cref="PciSlots.SlotPort"/>), or a bridge with a named slot below it.</summary>
    private static bool IsSlotPort(Machine machine, PciDevice d) =>
        d.IsBridge && (PciSlots.SlotPort(d) || (d.PcieType is not PcieType.Upstream && PciSlots.NameOf(machine, d) is not null && !HasOwnSlot(machine, d)));

    /// <summary>The bridge itself sits in a named slot (a bridge card), so the name is not the slot below it.</summary>
    private static bool HasOwnSlot(Machine machine, PciDevice d) =>
        machine.Slots.Values.Any(t => PciSlots.TryParseAddress(t, out int dom, out int bus, out int? dev)
                                      && dom == d.Address.Domain && bus == d.Address.Bus && (dev is null || dev == d.Address.Device));

    /// <summary>
    /// The card that holds <paramref name="address"/>: the device itself when it sits behind a port, or, for a device
    /// behind a switch on a card (a GPU behind its own switch), that switch's upstream port. Not built in, not a VF, not
    /// a switch's own downstream port.
    /// </summary>
    private static PciDevice CardOf(Machine machine, PciAddress address)
    {
        var d = DeviceOf(machine, address);
        if (d.IsVirtualFunction)
            throw new InputException($"{address}: an SR-IOV virtual function, not a card: ask about its physical function {d.PhysicalFunction!.Address.ToShortString()}");
        if (d.IsOnRootBus)
            throw new InputException($"{address}: built into the chipset or CPU (on root bus {d.Bus}), not a card in a slot");
        if (d.Parent is { PcieType: PcieType.Upstream } up)
            throw new InputException($"{address}: a port inside the switch at {up.Address.ToShortString()}, not a card: ask about the switch's upstream port {up.Address.ToShortString()}");
        if (d.Parent is null)
            throw new InputException($"{address}: no bridge or port leads to its bus {d.Bus}, so it sits in no slot");
        var card = d;
        while (card.Parent is { PcieType: PcieType.Downstream } down && !IsSlotPort(machine, down)
               && down.Parent is { PcieType: PcieType.Upstream } sw && !sw.IsOnRootBus)
            card = sw;
        return card;
    }

    /// <summary>The slot with the card's group there: its fit and the other members.</summary>
    private static SlotCandidate Judge(SlotCandidate slot, GroupReport? group, HashSet<PciAddress> card)
    {
        if (group is null) return slot with { Fit = SlotFit.Unknown, Problem = "the model puts the card in no group there" };
        var with = group.Devices.Where(d => !card.Contains(d.Address)).ToList();
        var fit = with.Count == 0 ? SlotFit.Alone
            : with.TrueForAll(d => HostFunctions.Classify(d) == HostFunctionKind.Bridge) ? SlotFit.WithPath
            : SlotFit.Shares;
        return slot with { Fit = fit, CardGroup = group, With = with };
    }

    /// <summary>
    /// Best first: a group of its own (alone and with-path tie: both can be passed through), then fewer other devices,
    /// then where the card is today (moving buys nothing), then a free slot, then fewer path bridges, then port address.
    /// </summary>
    private static int CompareFit(SlotCandidate a, SlotCandidate b)
    {
        static int Tier(SlotFit f) => f is SlotFit.Alone or SlotFit.WithPath ? 0 : f == SlotFit.Shares ? 1 : 2;
        static int Others(SlotCandidate s) => s.With.Count(d => HostFunctions.Classify(d) != HostFunctionKind.Bridge);
        int c = Tier(a.Fit!.Value).CompareTo(Tier(b.Fit!.Value));
        if (c == 0) c = Others(a).CompareTo(Others(b));
        if (c == 0) c = b.Current.CompareTo(a.Current);
        if (c == 0) c = a.Occupied.CompareTo(b.Occupied);
        if (c == 0) c = a.With.Count.CompareTo(b.With.Count);
        if (c == 0) c = a.Port.Address.CompareTo(b.Port.Address);
        return c;
    }
}
