using IommuKit.Core;
using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>
/// Builds the core's opt-in <see cref="GroupPolicy.SplitByRequesterId"/> from the grouping mechanism: a group's units
/// and bonds come from <see cref="RequesterIdUnits.Of"/> over the grouping context the driver's <c>device_group</c> used.
/// </summary>
public static class RequesterIdPolicy
{
    /// <summary>
    /// The split policy for groups formed with <paramref name="grouping"/>. Thread-safe: the grouping context (which
    /// memoizes) is used under a leaf lock of the policy, taken with a group lock held (docs/LOCKING.md).
    /// </summary>
    public static GroupPolicy SplitByRequesterId(GroupingContext grouping)
    {
        ArgumentNullException.ThrowIfNull(grouping);
        var gate = new object(); // leaf: guards the grouping context's memo tables
        return GroupPolicy.SplitByRequesterId(members =>
        {
            foreach (var p in members)
                if (grouping.Topology.Find(p.Address) != p) return null; // another machine's device
            GroupUnits units;
            lock (gate) units = RequesterIdUnits.Of(members, grouping);
            return ToCore(units);
        });
    }

    /// <summary>The split policy for the groups of a booted model (its grouping context); Linux's policy when it has none.</summary>
    public static GroupPolicy SplitByRequesterId(HostModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.Grouping is { } g ? SplitByRequesterId(g) : GroupPolicy.Linux;
    }

    /// <summary>The units as the core needs them: members, why they share an ID, and any bond that forbids a domain of their own.</summary>
    public static IReadOnlyList<RequesterIdUnitInfo> ToCore(GroupUnits units)
    {
        ArgumentNullException.ThrowIfNull(units);
        var list = new List<RequesterIdUnitInfo>(units.Units.Count);
        foreach (var u in units.Units)
        {
            string? shared = null, inseparable = null;
            foreach (var b in units.Bonds)
            {
                if (!b.BetweenUnits && b.DeviceUnit == u.Index && shared is null)
                    shared = $"{b.Kind.Name()} through {b.Via?.ToShortString()}";
                // Bonds between units are acs-path/multifunction by construction; any other forbids the split.
                if (b.BetweenUnits && (b.DeviceUnit == u.Index || b.OtherUnit == u.Index) && b.Kind.SharesRequesterId() && inseparable is null)
                    inseparable = $"bonded to {(b.DeviceUnit == u.Index ? b.Other : b.Device).ToShortString()} by {b.Kind.Name()}";
            }
            list.Add(new RequesterIdUnitInfo(u.Devices, shared, inseparable));
        }
        return list;
    }
}
