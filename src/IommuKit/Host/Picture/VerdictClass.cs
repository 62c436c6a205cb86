using IommuKit.Pci;

namespace IommuKit.Host.Picture;

/// <summary>
/// What a VFIO check means for someone who wants to give a device to a VM, in five classes (the report colours its
/// groups by them, <c>fleet</c> counts them). Derived from a <see cref="VfioReport"/> by <see cref="VerdictClasses.Of"/>.
/// </summary>
public enum VerdictClass
{
    /// <summary>The group can be handed to VFIO as the source shows it, and holds only the target's own card.</summary>
    Ready,
    /// <summary>Only drivers stand in the way: bind the members to vfio-pci (or unbind them) and it goes.</summary>
    NeedsBinding,
    /// <summary>The group holds functions of another card (other than bridges): the card cannot go alone.</summary>
    SharesGroup,
    /// <summary>VFIO cannot take it at all: no group, a direct (RMRR) region, no interrupt remapping.</summary>
    NotAssignable,
    /// <summary>No IOMMU is active.</summary>
    NoIommu,
}

/// <summary>Classifies VFIO reports (<see cref="VerdictClass"/>) and words the classes.</summary>
public static class VerdictClasses
{
    /// <summary>
    /// The class of a check: no IOMMU first, then no group or a group-wide blocker (not assignable), then another card
    /// in the group (shares group), then viable (ready), else the drivers of the members (needs binding). A card is a
    /// slot (domain, bus, device number); bridges do not count as another card, VFIO takes them along.
    /// </summary>
    public static VerdictClass Of(VfioReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        if (report.Outcome == VfioOutcome.NoIommu) return VerdictClass.NoIommu;
        if (report.Group is null || report.Verdict is null || report.Verdict.Problems.Count > 0) return VerdictClass.NotAssignable;
        if (Cards(report.Group.Devices, report.Target) > 1) return VerdictClass.SharesGroup;
        return report.Outcome == VfioOutcome.Viable ? VerdictClass.Ready : VerdictClass.NeedsBinding;
    }

    /// <summary>How many cards (slots) hold the group's non-bridge members, counting the target's card even when it is a bridge.</summary>
    private static int Cards(IReadOnlyList<PciDevice> devices, PciAddress? target)
    {
        var slots = new HashSet<(int, int, int)>();
        if (target is { } t) slots.Add((t.Domain, t.Bus, t.Device));
        foreach (var d in devices)
            if (!d.IsBridge) slots.Add((d.Address.Domain, d.Address.Bus, d.Address.Device));
        return slots.Count;
    }

    /// <summary>The class as one word: <c>ready</c>, <c>needs-binding</c>, <c>shares-group</c>, <c>not-assignable</c>, <c>no-iommu</c>.</summary>
    public static string Word(this VerdictClass c) => c switch
    {
        VerdictClass.Ready => "ready",
        VerdictClass.NeedsBinding => "needs-binding",
        VerdictClass.SharesGroup => "shares-group",
        VerdictClass.NotAssignable => "not-assignable",
        _ => "no-iommu",
    };
}
