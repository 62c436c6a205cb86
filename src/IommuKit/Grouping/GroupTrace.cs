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

/// <summary>One decision in the chain that put a device in its group: the rule kind, the device it is about, and a sentence.</summary>
public sealed record GroupStep(GroupStepKind Kind, PciAddress Device, string Text);

/// <summary>Collects the steps of one <see cref="PciGrouping.DeviceGroup{TGroup}"/> call. Not thread-safe.</summary>
public sealed class GroupTrace
{
    private readonly List<GroupStep> _steps = new();

    public IReadOnlyList<GroupStep> Steps => _steps;

    public void Add(GroupStepKind kind, PciDevice device, string text) => _steps.Add(new GroupStep(kind, device.Address, text));

    public void Add(GroupStepKind kind, PciAddress device, string text) => _steps.Add(new GroupStep(kind, device, text));

    public void Clear() => _steps.Clear();

    /// <summary>Short address for sentences: <c>00:1c.4</c> in domain 0, the full form elsewhere.</summary>
    internal static string A(PciDevice d) => d.Address.ToShortString();

    /// <summary>A requester ID as <c>bb:dd.f</c>.</summary>
    internal static string Rid(ushort rid) => $"{rid >> 8:x2}:{(rid >> 3) & 0x1f:x2}.{rid & 7:x}";
}
