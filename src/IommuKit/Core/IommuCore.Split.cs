using System.Runtime.CompilerServices;

namespace IommuKit.Core;

public sealed partial class IommuCore
{
    // ---------------------------------------------------------------- requester-ID units (GroupPolicy.SplitByRequesterId)
    //
    // Linux attaches every device of a group to one domain (__iommu_group_set_domain). A group holds devices for two
    // different reasons (docs/core.md "The two bonds inside a group"): they share a requester ID the IOMMU cannot tell
    // apart (alias, quirk), or they are merely not isolated from each other (acs-path, multifunction). Under the opt-in
    // policy the owner of a whole group may give a unit of the second kind its own domain. The split state of a group
    // (which devices sit on a domain other than the group's, and the owner that made the split) is guarded by the group
    // lock; SetGroupDomainLocked ends every split (release, detach of the group), so each unit returns to the group's domain.

    private volatile GroupPolicy _policy = GroupPolicy.Linux;
    private readonly ConditionalWeakTable<IommuGroup, SplitState> _splits = new(); // entries guarded by their group's lock

    private sealed class SplitState(object owner)
    {
        public readonly object Owner = owner;
        public readonly Dictionary<IommuDevice, IommuDomain> Domains = new();
    }

    /// <summary>How groups may be split (<see cref="GroupPolicy.Linux"/> by default: the kernel's one domain per group).</summary>
    public GroupPolicy Policy
    {
        get => _policy;
        set => _policy = value ?? GroupPolicy.Linux;
    }

    /// <summary>The requester-ID units of a group under the current policy; null with <see cref="GroupPolicy.Linux"/> or for non-PCI members.</summary>
    public IReadOnlyList<RequesterIdUnitInfo>? RequesterIdUnitsOf(IommuGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        using (new GroupLockScope(group)) return _policy.UnitsOf(group.DevicesLocked);
    }

    /// <summary>
    /// <c>iommu_attach_device</c> for the owner of a whole group under <see cref="GroupPolicy.SplitByRequesterId"/>:
    /// attaches <paramref name="device"/> alone to <paramref name="domain"/> while the rest of the group stays on the
    /// group's domain. A singleton group is attached as by <see cref="AttachGroup"/>. Refused with EINVAL when the policy
    /// is Linux's, when the device shares a requester ID with another member (an alias or quirk bond: attach its unit
    /// with <see cref="AttachRequesterIdUnit"/>, or the group), or when the domain belongs to another driver; EPERM when
    /// the group is not user-owned by <paramref name="owner"/>; EBUSY when the device already has a domain of its own.
    /// A failed attach leaves the device on the domain it had.
    /// </summary>
    public IommuResult AttachDevice(IommuDomain domain, IommuDevice device, object owner) => AttachSplit(domain, device, owner, wholeUnit: false);

    /// <summary>
    /// Attaches the requester-ID unit of <paramref name="device"/> (every member the IOMMU cannot tell apart from it) to
    /// <paramref name="domain"/>, as <see cref="AttachDevice(IommuDomain, IommuDevice, object)"/>; EINVAL when the unit is
    /// the whole group (attach the group). All of the unit's devices switch, or none (rollback).
    /// </summary>
    public IommuResult AttachRequesterIdUnit(IommuDomain domain, IommuDevice device, object owner) => AttachSplit(domain, device, owner, wholeUnit: true);

    /// <summary>Returns the requester-ID unit of <paramref name="device"/> from <paramref name="domain"/> to the group's domain (must succeed); a warning when the unit is not on that domain.</summary>
    public void DetachRequesterIdUnit(IommuDomain domain, IommuDevice device)
    {
        var group = device.Group;
        if (group is null) return;
        using (new GroupLockScope(group))
        {
            if (!TryDetachUnitLocked(group, domain, device))
                AddLog($"WARNING: {device.Name}: detach of {domain} that is not the device's own domain");
        }
    }

    /// <summary>When <paramref name="device"/>'s unit is on <paramref name="domain"/> of its own, returns it to the group's domain; false otherwise.</summary>
    private bool TryDetachUnitLocked(IommuGroup group, IommuDomain domain, IommuDevice device)
    {
        group.AssertLocked();
        if (!_splits.TryGetValue(group, out var st) || !st.Domains.TryGetValue(device, out var cur) || cur != domain) return false;
        var back = group.DomainLocked;
        foreach (var d in UnitMembersLocked(group, st, device))
        {
            if (back is not null)
            {
                var r = SetDeviceDomainLocked(group, d, back, d.AttachedDomain, mustSucceed: true);
                if (!r.IsOk) AddLog($"WARNING: {d.Name}: returning to {back} failed: {r}");
            }
            st.Domains.Remove(d);
        }
        if (st.Domains.Count == 0) _splits.Remove(group);
        return true;
    }

    private IommuResult AttachSplit(IommuDomain domain, IommuDevice device, object owner, bool wholeUnit)
    {
        ArgumentNullException.ThrowIfNull(domain);
        ArgumentNullException.ThrowIfNull(owner);
        var group = device.Group;
        if (group is null) return IommuResult.Fail(Errno.ENODEV, $"{device.Name}: not in an IOMMU group");
        using (new GroupLockScope(group))
        {
            if (device.Group != group) return IommuResult.Fail(Errno.ENODEV, $"{device.Name}: left its group");
            if (group.DevicesLocked.Count == 1) return AttachGroupLocked(domain, group);
            var policy = _policy;
            if (!policy.SplitsByRequesterId)
                return IommuResult.Fail(Errno.EINVAL, $"{device.Name}: {group} has {group.DevicesLocked.Count} devices; a single device of a shared group cannot be attached alone (Linux: one domain per group; GroupPolicy.SplitByRequesterId is off)");
            // Only the owner of the whole group may split it: DMA ownership is group-wide (a DMA-API driver cannot
            // bind while a user owns it, 5.19+), so peer-to-peer between the units stays inside one owner's trust.
            if (group.OwnerLocked is null || !ReferenceEquals(group.OwnerLocked, owner))
                return IommuResult.Fail(Errno.EPERM, $"{device.Name}: {group} is not wholly owned by the caller ({(group.OwnerLocked is null ? "no user owner" : "another owner holds it")}); claim DMA ownership of the group first");
            foreach (var d in group.DevicesLocked)
            {
                if (d.DriverName is { } n && !d.DriverManagedDma)
                    return IommuResult.Fail(Errno.EPERM, $"{device.Name}: {group} is not wholly owned by the caller: {d.Name} is bound to {n}, which uses the DMA API");
            }
            var units = policy.UnitsOf(group.DevicesLocked);
            if (units is null || device.Pci is not { } pci || GroupPolicy.UnitOf(units, pci.Address) is not { } unit)
                return IommuResult.Fail(Errno.EINVAL, $"{device.Name}: {group}'s requester IDs are unknown to the policy (not PCI, another topology, or too large)");
            if (unit.Devices.Count == group.DevicesLocked.Count)
                return IommuResult.Fail(Errno.EINVAL, $"{device.Name}: every device of {group} shares one requester-ID unit ({unit.SharedBecause ?? "alias"}); attach the group");
            if (!wholeUnit && unit.Devices.Count > 1)
                return IommuResult.Fail(Errno.EINVAL, $"{device.Name}: shares a requester ID with {string.Join(", ", unit.Devices.Where(a => a != pci.Address).Select(a => a.ToShortString()))} ({unit.SharedBecause ?? "alias"}); the IOMMU cannot tell them apart, so they need one domain: attach the unit or the group");
            if (unit.InseparableBecause is { } why)
                return IommuResult.Fail(Errno.EINVAL, $"{device.Name}: {why}; it cannot have a domain of its own");
            var ops = device.IommuDriver;
            if (ops is null || !IsCompatible(domain, ops))
                return IommuResult.Fail(Errno.EINVAL, $"{device.Name}: {domain} belongs to another IOMMU driver than {ops?.Name ?? "none"}");
            var members = new List<IommuDevice>(unit.Devices.Count);
            foreach (var d in group.DevicesLocked)
                if (d.Pci is { } p && unit.Devices.Contains(p.Address)) members.Add(d);
            _splits.TryGetValue(group, out var st);
            foreach (var d in members)
            {
                if (st is not null && st.Domains.TryGetValue(d, out var own) && own != domain)
                    return IommuResult.Fail(Errno.EBUSY, $"{d.Name}: already attached to {own}; detach it first");
            }
            // Switch every device of the unit, or none: on failure the ones switched go back to where they were.
            var before = new IommuDomain?[members.Count];
            for (int i = 0; i < members.Count; i++)
            {
                before[i] = members[i].AttachedDomain;
                var r = SetDeviceDomainLocked(group, members[i], domain, before[i], mustSucceed: false);
                if (r.IsOk) continue;
                for (int j = 0; j <= i; j++)
                {
                    if (before[j] is not { } prev || members[j].AttachedDomain == prev) continue;
                    var back = SetDeviceDomainLocked(group, members[j], prev, null, mustSucceed: true);
                    if (!back.IsOk) AddLog($"WARNING: {members[j].Name}: could not restore {prev} after a failed unit attach: {back}");
                }
                return r;
            }
            if (st is null)
            {
                st = new SplitState(owner);
                _splits.Add(group, st);
            }
            foreach (var d in members) st.Domains[d] = domain;
            return IommuResult.Ok;
        }
    }

    /// <summary>The devices of <paramref name="device"/>'s split unit: those sharing its own domain in the split state.</summary>
    private List<IommuDevice> UnitMembersLocked(IommuGroup group, SplitState st, IommuDevice device)
    {
        group.AssertLocked();
        var list = new List<IommuDevice>();
        if (!st.Domains.TryGetValue(device, out var dom)) return list;
        var units = _policy.UnitsOf(group.DevicesLocked);
        var unit = device.Pci is { } p && units is not null ? GroupPolicy.UnitOf(units, p.Address) : null;
        foreach (var (d, x) in st.Domains)
        {
            if (x != dom) continue;
            if (unit is null ? d == device : d.Pci is { } q && unit.Devices.Contains(q.Address)) list.Add(d);
        }
        return list;
    }

    /// <summary>Some device of the group sits on a domain of its own (a split made under the policy).</summary>
    private bool SplitActiveLocked(IommuGroup group)
    {
        group.AssertLocked();
        return _splits.TryGetValue(group, out var st) && st.Domains.Count > 0;
    }

    /// <summary>The domain a member must be attached to: its unit's own domain when split, else the group's.</summary>
    private IommuDomain? ExpectedDomainLocked(IommuGroup group, IommuDevice device)
    {
        group.AssertLocked();
        return _splits.TryGetValue(group, out var st) && st.Domains.TryGetValue(device, out var d) ? d : group.DomainLocked;
    }

    /// <summary>EBUSY for a group-wide attach or replace while units have domains of their own.</summary>
    private IommuResult RefuseWhileSplitLocked(IommuGroup group)
    {
        group.AssertLocked();
        return SplitActiveLocked(group)
            ? IommuResult.Fail(Errno.EBUSY, $"{group}: requester-ID units are attached to domains of their own; detach them first")
            : IommuResult.Ok;
    }

    /// <summary>The group switched domains as a whole: every unit is on the group's domain again.</summary>
    private void EndSplitLocked(IommuGroup group)
    {
        group.AssertLocked();
        _splits.Remove(group);
    }

    /// <summary>A device left the group: forget its own domain.</summary>
    private void ForgetSplitDeviceLocked(IommuGroup group, IommuDevice device)
    {
        group.AssertLocked();
        if (!_splits.TryGetValue(group, out var st)) return;
        st.Domains.Remove(device);
        if (st.Domains.Count == 0) _splits.Remove(group);
    }

    /// <summary>
    /// The split invariants of one group: while units have domains of their own, the policy splits, the group's owner is
    /// the one that split it, every split device is still a member, and every requester-ID unit is on one domain.
    /// </summary>
    private void CheckSplitLocked(IommuGroup group, List<string> problems)
    {
        group.AssertLocked();
        if (!_splits.TryGetValue(group, out var st) || st.Domains.Count == 0) return;
        if (!_policy.SplitsByRequesterId) problems.Add($"{group}: units are on domains of their own but the policy is {_policy}");
        if (!ReferenceEquals(group.OwnerLocked, st.Owner)) problems.Add($"{group}: units are on domains of their own but the group's owner changed");
        foreach (var d in st.Domains.Keys)
            if (!group.DevicesLocked.Contains(d)) problems.Add($"{d.Name} has a domain of its own in {group} but left it");
        if (_policy.UnitsOf(group.DevicesLocked) is not { } units) return;
        foreach (var unit in units)
        {
            IommuDomain? first = null;
            bool seen = false;
            foreach (var d in group.DevicesLocked)
            {
                if (d.Pci is not { } p || !unit.Devices.Contains(p.Address)) continue;
                if (!seen) { first = d.AttachedDomain; seen = true; }
                else if (d.AttachedDomain != first)
                    problems.Add($"{d.Name} is on {d.AttachedDomain?.ToString() ?? "nothing"} but its requester-ID unit ({string.Join(",", unit.Devices.Select(a => a.ToShortString()))}) is on {first?.ToString() ?? "nothing"}");
            }
        }
    }
}
