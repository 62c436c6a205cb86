using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>
/// What <c>iommu bind</c> (or <c>unbind</c>) would do for a verdict: the devices it moves, the sysfs writes, the
/// persistent setup, the host functions the host loses, or why it refuses. The CLI renders it and, with
/// <c>--apply</c>, performs it through <see cref="HostAnalysis.ApplyBind"/> / <see cref="HostAnalysis.ApplyUnbind"/>.
/// </summary>
/// <param name="Bind">True for bind (to vfio-pci), false for unbind (back to the host).</param>
/// <param name="Verdict">The verdict the plan follows.</param>
/// <param name="Targets">The devices moved: the verdict's targets for bind, <see cref="HostAnalysis.GiveBackTargets"/> for unbind.</param>
/// <param name="Steps">The writes, in order (empty when there is nothing to do).</param>
/// <param name="Persistent">The vfio-pci.ids= / modprobe setup for bind (the card's functions); empty for unbind.</param>
/// <param name="Refusal">Why bind refuses (the group is shared, or a host function / forbidding region is in it); null when it does not.</param>
/// <param name="Losses">The card's functions among the targets the host uses for something it would lose.</param>
/// <param name="Held">
/// Why <c>bind --apply</c> refuses without <c>--force</c>: a target the running host is using (root disk, default route,
/// console, keyboard; <see cref="HostAnalysis.BindRefusal"/>); null when none is, and always for unbind.
/// </param>
public sealed record BindPlan(bool Bind, VfioReport Verdict, IReadOnlyList<PciDevice> Targets, IReadOnlyList<HostAction> Steps,
    PersistentBinding Persistent, string? Refusal, IReadOnlyList<VerdictMember> Losses, string? Held);

public static partial class HostAnalysis
{
    /// <summary>
    /// The plan of <c>iommu bind</c> (<paramref name="bind"/>) or <c>iommu unbind</c> for a verdict. Bind refuses a
    /// shared group (the host would lose the other devices) and a not-assignable one; unbind never refuses (giving a
    /// device back is always safe). The persistent setup covers the asked card's functions, so the ids it warns about
    /// (<see cref="PersistentBinding.AlsoTaken"/>) are those of other cards.
    /// </summary>
    public static BindPlan PlanBind(VfioReport verdict, bool bind)
    {
        ArgumentNullException.ThrowIfNull(verdict);
        string? refusal = !bind ? null : verdict.Class switch
        {
            VerdictClass.NotAssignable => string.Join("; ", verdict.Reasons),
            VerdictClass.SharesGroup => "the group also holds " +
                string.Join(", ", verdict.Members.Where(m => m.Role == DeviceRole.Other).Select(m => m.Address.ToShortString())) + ", which the host would lose",
            _ => null,
        };
        var targets = bind ? verdict.Targets : GiveBackTargets(verdict);
        var steps = bind ? verdict.Steps : UnbindSteps(targets);
        var card = bind
            ? targets.Concat(verdict.Members.Where(m => m.Role is DeviceRole.Asked or DeviceRole.SameCard).Select(m => m.Device)).Distinct().ToList()
            : [];
        var moved = targets.Select(t => t.Address).ToHashSet();
        var losses = bind
            ? verdict.Members.Where(m => m.Role != DeviceRole.Other && m.Loss is not null && moved.Contains(m.Address)).ToList()
            : [];
        return new BindPlan(bind, verdict, targets, steps, Persistent(verdict.Report.Machine, card), refusal, losses,
            bind ? BindRefusal(verdict) : null);
    }
}
