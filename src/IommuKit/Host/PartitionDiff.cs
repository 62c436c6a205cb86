using IommuKit.Pci;

using IommuKit.Grouping;

namespace IommuKit.Host;

/// <summary>How one group changed between two partitions.</summary>
public enum GroupChangeKind
{
    /// <summary>Same members (same fingerprint) before and after.</summary>
    Unchanged,
    /// <summary>The members of one "before" group now sit in several groups.</summary>
    Split,
    /// <summary>Members of several "before" groups now share one group.</summary>
    Merged,
    /// <summary>Members moved between groups in a way that is neither a pure split nor a pure merge.</summary>
    Reshaped,
    /// <summary>The devices appear only after (new hardware, or newly managed).</summary>
    Added,
    /// <summary>The devices appear only before.</summary>
    Removed,
}

/// <summary>One change: the groups before (ids and fingerprints) and after that take part in it.</summary>
public sealed record GroupChange(GroupChangeKind Kind, IReadOnlyList<ModelGroup> Before, IReadOnlyList<ModelGroup> After)
{
    /// <summary>One line: <c>split: group 7 [00:08.0 02:00.0] -> group 7 [00:08.0], group 9 [02:00.0]</c>.</summary>
    public override string ToString()
    {
        static string L(IReadOnlyList<ModelGroup> gs) => gs.Count == 0 ? "(none)" : string.Join(", ", gs.Select(g => $"group {g.Id} [{string.Join(' ', g.Devices.Select(d => d.Address.ToShortString()))}]"));
        return $"{Kind.ToString().ToLowerInvariant()}: {L(Before)} -> {L(After)}";
    }
}

/// <summary>
/// The difference between two groupings as whole-group changes, matched by device identity (address plus
/// vendor:device) rather than group numbers. Works for a what-if against today and for <c>diff A B</c> of two machines.
/// </summary>
public sealed class PartitionDiff
{
    /// <summary>Every change, unchanged groups included, in the order of the groups before.</summary>
    public IReadOnlyList<GroupChange> Changes { get; }

    private PartitionDiff(List<GroupChange> changes) { Changes = changes; }

    /// <summary>True when no group split, merged, changed, appeared or vanished.</summary>
    public bool NothingChanged => Changes.All(c => c.Kind == GroupChangeKind.Unchanged);

    /// <summary>The changes of one kind.</summary>
    public IEnumerable<GroupChange> Of(GroupChangeKind kind) => Changes.Where(c => c.Kind == kind);

    /// <summary>
    /// Compares <paramref name="before"/> with <paramref name="after"/>. <paramref name="addressMap"/> maps a "before"
    /// address to its "after" address for devices that moved (a slot what-if); unmapped devices keep their address.
    /// </summary>
    public static PartitionDiff Compute(GroupingResult before, GroupingResult after, IReadOnlyDictionary<PciAddress, PciAddress>? addressMap = null)
    {
        var changes = new List<GroupChange>();
        foreach (var (kind, bs, @as) in Match(before.Groups, after.Groups, g => g.Devices, g => g.Id, addressMap))
            changes.Add(new GroupChange(kind, bs, @as));
        return new PartitionDiff(changes);
    }

    /// <summary>
    /// The matching behind <see cref="Compute"/>, for any kind of group (the model's, or the kernel's as a tool shows
    /// them): the connected components of the bipartite "shares a device" relation between before and after groups,
    /// each classified. Devices are matched by address and vendor:device; <paramref name="addressMap"/> maps a
    /// "before" address to its "after" address for devices that moved. Groups within a change are sorted by id;
    /// changes come in the order of <paramref name="before"/>, then groups that exist only after.
    /// </summary>
    public static List<(GroupChangeKind Kind, List<TGroup> Before, List<TGroup> After)> Match<TGroup>(
        IReadOnlyList<TGroup> before, IReadOnlyList<TGroup> after,
        Func<TGroup, IReadOnlyList<PciDevice>> members, Func<TGroup, int> id,
        IReadOnlyDictionary<PciAddress, PciAddress>? addressMap = null) where TGroup : class
    {
        (PciAddress, ushort, ushort) Key(PciDevice d, bool isBefore)
        {
            var a = d.Address;
            if (isBefore && addressMap is not null && addressMap.TryGetValue(a, out var na)) a = na;
            return (a, d.VendorId, d.DeviceId);
        }
        var afterOf = new Dictionary<(PciAddress, ushort, ushort), TGroup>();
        foreach (var g in after) foreach (var d in members(g)) afterOf[Key(d, false)] = g;
        var beforeOf = new Dictionary<(PciAddress, ushort, ushort), TGroup>();
        foreach (var g in before) foreach (var d in members(g)) beforeOf[Key(d, true)] = g;

        var seenB = new HashSet<TGroup>(ReferenceEqualityComparer.Instance);
        var seenA = new HashSet<TGroup>(ReferenceEqualityComparer.Instance);
        var changes = new List<(GroupChangeKind, List<TGroup>, List<TGroup>)>();
        foreach (var start in before)
        {
            if (!seenB.Add(start)) continue;
            var bs = new List<TGroup>();
            var @as = new List<TGroup>();
            var queue = new Queue<(TGroup G, bool IsBefore)>();
            queue.Enqueue((start, true));
            bool lost = false, gained = false;
            while (queue.Count > 0)
            {
                var (g, isB) = queue.Dequeue();
                (isB ? bs : @as).Add(g);
                foreach (var d in members(g))
                {
                    if (isB)
                    {
                        if (afterOf.TryGetValue(Key(d, true), out var ag)) { if (seenA.Add(ag)) queue.Enqueue((ag, false)); }
                        else lost = true;
                    }
                    else if (beforeOf.TryGetValue(Key(d, false), out var bg)) { if (seenB.Add(bg)) queue.Enqueue((bg, true)); }
                    else gained = true;
                }
            }
            bs.Sort((x, y) => id(x).CompareTo(id(y)));
            @as.Sort((x, y) => id(x).CompareTo(id(y)));
            GroupChangeKind kind;
            if (@as.Count == 0) kind = GroupChangeKind.Removed;
            else if (bs.Count == 1 && @as.Count == 1 && !lost && !gained) kind = GroupChangeKind.Unchanged;
            else if (bs.Count == 1 && @as.Count > 1 && !gained) kind = GroupChangeKind.Split;
            else if (bs.Count > 1 && @as.Count == 1 && !lost) kind = GroupChangeKind.Merged;
            else kind = GroupChangeKind.Reshaped;
            changes.Add((kind, bs, @as));
        }
        foreach (var g in after)
        {
            if (!seenA.Contains(g)) changes.Add((GroupChangeKind.Added, new List<TGroup>(), new List<TGroup> { g }));
        }
        return changes;
    }
}

/// <summary>What-if computations: the same machine under another command line, or with a card moved.</summary>
public static class GroupingWhatIf
{
    /// <summary>Groups today and under <paramref name="commandLine"/>, and their diff.</summary>
    public static (GroupingResult Today, GroupingResult Then, PartitionDiff Diff) WithCommandLine(Machine machine, string commandLine, GroupingOptions? options = null)
    {
        options ??= new GroupingOptions();
        var today = ModelGrouping.Compute(machine, options);
        var then = ModelGrouping.Compute(machine, options with { CommandLine = KernelCommandLine.Parse(commandLine) });
        return (today, then, PartitionDiff.Compute(today, then));
    }

    /// <summary>Groups today and with the card at <paramref name="slot"/> moved below <paramref name="targetBridge"/> as device <paramref name="newDevice"/>.</summary>
    /// <exception cref="InputException">See <see cref="MachineRewrite.MoveSlot"/>.</exception>
    public static (GroupingResult Today, GroupingResult Then, PartitionDiff Diff, IReadOnlyDictionary<PciAddress, PciAddress> AddressMap) MoveSlot(
        Machine machine, PciAddress slot, PciAddress targetBridge, int newDevice = 0, GroupingOptions? options = null)
    {
        options ??= new GroupingOptions();
        var today = ModelGrouping.Compute(machine, options);
        var moved = MachineRewrite.MoveSlot(machine, slot, targetBridge, newDevice, out var map);
        var then = ModelGrouping.Compute(moved, options);
        return (today, then, PartitionDiff.Compute(today, then, map), map);
    }
}
