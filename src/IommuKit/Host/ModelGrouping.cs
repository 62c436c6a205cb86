using IommuKit.Core;
using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>One predicted IOMMU group, as the core formed it.</summary>
public sealed class ModelGroup
{
    internal ModelGroup(int id, List<PciDevice> devices, List<PciDevice> unknown)
    {
        Id = id;
        Devices = devices;
        UnknownFactDevices = unknown;
        Fingerprint = GroupFingerprint.Of(devices);
    }

    /// <summary>The number the kernel would give it (lowest free id, groups allocated in probe order).</summary>
    public int Id { get; }

    /// <summary>Members in the order they joined (the kernel's probe order).</summary>
    public IReadOnlyList<PciDevice> Devices { get; }

    /// <summary>Stable short hash of the member addresses and vendor:device ids; independent of group numbers (<see cref="GroupFingerprint.Of"/>).</summary>
    public string Fingerprint { get; }

    /// <summary>
    /// A rule that decided this group needed a fact the source lacks (ACS or PCIe capability of a device whose
    /// extended config space was not visible, a Switchtec alias table): the group is a guess.
    /// </summary>
    public bool UnknownFacts => UnknownFactDevices.Count > 0;

    /// <summary>Devices whose missing facts the grouping relied on.</summary>
    public IReadOnlyList<PciDevice> UnknownFactDevices { get; }

    /// <summary><c>group N [members]</c>, for messages and tests.</summary>
    public override string ToString() => $"group {Id} [{string.Join(' ', Devices.Select(d => d.Address.ToShortString()))}]";
}

/// <summary>The groups of a machine as the core formed them (<see cref="ModelGrouping.Compute"/>), with the steps that explain each placement.</summary>
public sealed class GroupingResult
{
    private readonly ModelGroup?[] _byIndex;
    private readonly Dictionary<PciAddress, IReadOnlyList<ExplainStep>> _explain = new();

    internal GroupingResult(Machine machine, IommuActivation activation, HostModel? host, List<ModelGroup> groups, ModelGroup?[] byIndex, List<string> messages)
    {
        Machine = machine;
        Activation = activation;
        Host = host;
        Groups = groups;
        _byIndex = byIndex;
        Messages = messages;
    }

    /// <summary>The machine grouped.</summary>
    public Machine Machine { get; }
    /// <summary>Whether the IOMMU was modelled as active, and why.</summary>
    public IommuActivation Activation { get; }
    /// <summary>An IOMMU was modelled as active (otherwise there are no groups).</summary>
    public bool IommuActive => Activation.Active;
    /// <summary>The booted core the groups come from; null when no IOMMU is active.</summary>
    public HostModel? Host { get; }

    /// <summary>
    /// False when the IOMMU groups devices as their drivers bind (virtio-iommu via ACPI VIOT or device tree): the
    /// kernel's numbers then follow driver bind timing, which no snapshot records. Members are still exact; the model
    /// numbers such groups in enumeration order. True for VT-d and AMD-Vi, which probe every device at registration.
    /// </summary>
    public bool NumbersPredictable => NumbersReason is null;

    /// <summary>
    /// Why <see cref="NumbersPredictable"/> is false, naming the kernel rule, or null: bind-order numbering (virtio-iommu,
    /// Arm SMMU), or an order the source cannot show (<see cref="FirmwarePlatform.NumbersReason"/>: an unknown kernel on
    /// a VT-d machine with several units, several root buses without their firmware order).
    /// </summary>
    public string? NumbersReason => Activation.Kind switch
    {
        IommuKind.Virtio => "virtio-iommu groups devices as their drivers bind: the numbers follow bind order, which no source records",
        IommuKind.ArmSmmu => "Arm SMMU: devices join groups as their drivers bind, an order no source records",
        _ => Host?.Sequence.Platform.NumbersReason,
    };
    /// <summary>The context the groups were computed with (effective ACS, aliases); null when the IOMMU is off.</summary>
    public GroupingContext? Context => Host?.Grouping;
    /// <summary>Groups sorted by id.</summary>
    public IReadOnlyList<ModelGroup> Groups { get; }
    /// <summary>Notes from the command line and the model (ignored override, invalid config_acs, unknown facts), one line each.</summary>
    public IReadOnlyList<string> Messages { get; }

    /// <summary>The group of a device, or null (IOMMU off, not managed, or no such device).</summary>
    public ModelGroup? GroupOf(PciAddress address) =>
        Machine.Topology.TryFind(address, out var d) ? _byIndex[d.ProbeIndex] : null;

    /// <summary>The group numbered <paramref name="id"/>, or null.</summary>
    public ModelGroup? GroupById(int id)
    {
        foreach (var g in Groups) if (g.Id == id) return g;
        return null;
    }

    /// <summary>
    /// The chain of decisions that placed the device, each naming a device and the rule; the last step names the group.
    /// Empty for an unknown address. Computed on first use by replaying <see cref="PciGrouping.DeviceGroup{TGroup}"/> for
    /// the device against the groups of the devices probed before it (exactly the state the kernel saw). Not thread-safe.
    /// </summary>
    public IReadOnlyList<ExplainStep> Explain(PciAddress address)
    {
        if (_explain.TryGetValue(address, out var s)) return s;
        if (!Machine.Topology.TryFind(address, out var dev)) return [];
        var steps = ExplainDevice(dev);
        var worded = new ExplainStep[steps.Count];
        for (int i = 0; i < steps.Count; i++)
            worded[i] = new ExplainStep(steps[i].Kind, steps[i].Device, Wording.Step(steps[i], Machine.Topology, Context, Activation), steps[i]);
        _explain[address] = worded;
        return worded;
    }

    private List<GroupStep> ExplainDevice(PciDevice d)
    {
        if (!IommuActive || Host is null)
            return [new GroupStep(GroupStepKind.NoGroup, d.Address) { NoGroupWhy = NoGroupReason.IommuOff }];
        var final = _byIndex[d.ProbeIndex];
        if (final is null || Host.Grouping is not { } ctx)
            return [new GroupStep(GroupStepKind.NoGroup, d.Address) { NoGroupWhy = NoGroupReason.NotManaged, Detail = Host?.Sequence.Platform.NoGroupReason(d) }];
        var trace = new GroupTrace();
        if (ctx.Acs.Note(d) is { } note) trace.Add(new GroupStep(GroupStepKind.AcsSetting, d.Address) { Detail = note });
        var rank = Host.Sequence.Rank;
        int me = rank[d.ProbeIndex];
        // The state the kernel saw: devices probed earlier have their final groups, later ones none.
        ctx.TouchedUnknown = false;
        ctx.UnknownTouched.Clear();
        var g = PciGrouping.DeviceGroup(d, ctx, x => rank[x.ProbeIndex] is int r && r >= 0 && r < me ? _byIndex[x.ProbeIndex] : null, () => final, trace);
        System.Diagnostics.Debug.Assert(ReferenceEquals(g, final), "replay must reach the group the device got");
        if (ctx.TouchedUnknown)
            trace.Add(new GroupStep(GroupStepKind.UnknownFacts, d.Address) { Others = [.. ctx.UnknownTouched.Select(u => u.Address)] });
        var steps = new List<GroupStep>(trace.Steps);
        bool created = final.Devices.Count > 0 && final.Devices[0] == d;
        steps.Add(new GroupStep(created ? GroupStepKind.NewGroup : GroupStepKind.JoinExistingGroup, d.Address) { Group = final.Id });
        return steps;
    }

    /// <summary>The partition as sets of addresses (sorted), for comparisons.</summary>
    public IReadOnlyList<IReadOnlyList<PciAddress>> Partition()
    {
        var list = new List<IReadOnlyList<PciAddress>>(Groups.Count);
        foreach (var g in Groups) list.Add(g.Devices.Select(d => d.Address).Order().ToList());
        return list;
    }
}

/// <summary>
/// The model's IOMMU groups of a machine: the core (<see cref="HostModel"/>) booted on the machine, each device probed
/// in the kernel's order (<see cref="ProbeOrder"/>) with the kernel's <c>pci_device_group</c> as the driver's
/// <c>device_group</c>; the groups are the core's, numbered by the core's id allocator. There is no other probe loop.
/// </summary>
public static class ModelGrouping
{
    /// <summary>
    /// Computes the groups of <paramref name="machine"/>. With no IOMMU active (per the command line and the machine's
    /// units) the result has no groups unless <see cref="GroupingOptions.ForceIommuActive"/> asks for a prediction.
    /// Devices that no IOMMU unit manages (when the source lists units) get no group, as in the kernel.
    /// </summary>
    public static GroupingResult Compute(Machine machine, GroupingOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        options ??= new GroupingOptions();
        var cmd = options.CommandLine ?? KernelCommandLine.Parse(machine.CommandLine);
        var activation = IommuActivation.Decide(machine, cmd, options.ForceIommuActive);
        var messages = new List<string>();
        var byIndex = new ModelGroup?[machine.Topology.Count];
        var groups = new List<ModelGroup>();
        if (activation.Assumed) messages.Add(activation.Reason);
        GroupingResult result;
        if (!activation.Active)
        {
            result = new GroupingResult(machine, activation, null, groups, byIndex, messages);
        }
        else
        {
            var host = Boot(machine, cmd, activation, options);
            if (host.Grouping is { } ctx)
            {
                if (activation.Kind == IommuKind.Virtio)
                    messages.Add("virtio-iommu groups devices as their drivers bind: group members are the kernel's, but its group numbers depend on driver bind order and may differ from these");
                messages.AddRange(ctx.Acs.Override.Messages);
                messages.AddRange(ctx.Acs.Messages);
            }
            int unknownGroups = 0;
            foreach (var g in host.Core.Groups)
            {
                var members = new List<PciDevice>(g.Devices.Count);
                var unknown = new List<PciDevice>();
                foreach (var dev in g.Devices)
                {
                    if (dev.Pci is not { } pci) continue;
                    members.Add(pci);
                    foreach (var u in host.UnknownFactsOf(pci))
                        if (!unknown.Contains(u)) unknown.Add(u);
                }
                if (members.Count == 0) continue;
                var mg = new ModelGroup(g.Id, members, unknown);
                if (mg.UnknownFacts) unknownGroups++;
                groups.Add(mg);
                foreach (var pci in members) byIndex[pci.ProbeIndex] = mg;
            }
            if (unknownGroups > 0)
                messages.Add($"{unknownGroups} group(s) depend on facts the source does not show (extended capabilities such as ACS, or bridge bus ranges): read the machine as root (iommu snapshot, or lspci -vv) for a reliable answer");
            result = new GroupingResult(machine, activation, host, groups, byIndex, messages);
        }
        if (options.RecordExplanations)
            foreach (var d in machine.Topology.Devices) result.Explain(d.Address);
        return result;
    }

    /// <summary>
    /// Boots the core for the grouping: the machine's own units, or (when the IOMMU is predicted on, or the source
    /// cannot say) an assumed unit of the activation's kind with the switches that turned it off dropped.
    /// </summary>
    internal static HostModel Boot(Machine machine, KernelCommandLine cmd, IommuActivation activation, GroupingOptions options)
    {
        bool assume = activation.Assumed || activation.Why == ActivationReason.Forced || machine.IommuUnits.Count == 0;
        var bootCmd = activation.Why == ActivationReason.Forced ? IommuSwitches.WithoutOffSwitches(cmd) : cmd;
        return HostModel.FromMachine(machine, bootCmd, new HostModelOptions(Grouping: options, AssumeUnits: assume, AssumedKind: activation.Kind));
    }
}
