using IommuKit.Passthrough;
using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>
/// The answer to "can I give this card to a VM, and what must I do?" (<see cref="HostAnalysis.VfioCheck"/>): exactly one
/// class. The state of driver binding is a step in the answer, never the verdict.
/// </summary>
public enum VerdictClass
{
    /// <summary>The group is isolated and every member is on vfio-pci, pci-stub, no driver (or a bridge on pcieport): pass it through now.</summary>
    Ready,
    /// <summary>The group holds only the card's functions and its path, but some are on host drivers: the steps bind them.</summary>
    NeedsBinding,
    /// <summary>The group holds other cards or host functions: giving it away costs the host those devices.</summary>
    SharesGroup,
    /// <summary>The asked device is a host function, or the group has a direct (RMRR) region, or interrupt remapping is missing.</summary>
    NotAssignable,
    /// <summary>No IOMMU is active: nothing can be passed through.</summary>
    NoIommu,
}

/// <summary>What a member of the checked group is to the user's request.</summary>
public enum DeviceRole
{
    /// <summary>The device asked about (for <c>--group</c>, the group's first function that is not a host function, else not a bridge).</summary>
    Asked,
    /// <summary>Another function of the same card (same slot: domain, bus and device number).</summary>
    SameCard,
    /// <summary>A bridge or port: interconnect that stays on pcieport (driver_managed_dma) and goes nowhere.</summary>
    Path,
    /// <summary>Another card's function or a host function: the host loses it if the group goes to a VM.</summary>
    Other,
}

/// <summary>One member of the checked group, with its role and what the kernel's ownership rule says about it now.</summary>
/// <param name="Ok">The kernel's rule (5.19+ DMA ownership, or the older viable-group rule) accepts it as it is bound now.</param>
/// <param name="Reason">Why it is accepted or why a step is needed, in the kernel's terms.</param>
/// <param name="HostFunction">The host-function kind, when the device is one (<see cref="HostFunctions"/>).</param>
/// <param name="Loss">What the host stops using with it, when notable.</param>
/// <param name="Uses">What the running host uses it for (<see cref="Machine.HostUses"/>): its root disk, default route, console; empty when nothing or unknown.</param>
public sealed record VerdictMember(PciDevice Device, DeviceRole Role, bool Ok, string Reason, HostFunctionKind? HostFunction, HostLoss? Loss,
    IReadOnlyList<HostUse> Uses)
{
    /// <summary>The member's address.</summary>
    public PciAddress Address => Device.Address;
    /// <summary>The driver bound now, or null.</summary>
    public string? Driver => Device.Driver;
}

/// <summary>A function of the asked card that sits in another group (a GPU's HDMI audio, USB-C, UCSI).</summary>
/// <param name="Group">The group number it sits in, or null when it is in none.</param>
public sealed record RelatedFunction(PciDevice Device, int? Group)
{
    /// <summary>The function's address.</summary>
    public PciAddress Address => Device.Address;
}

public static partial class HostAnalysis
{
    /// <summary>The driver every bind plan moves devices to.</summary>
    public const string VfioPci = "vfio-pci";

    /// <summary>
    /// The card of <paramref name="target"/> or of the group <paramref name="view"/>: classification, roles, related
    /// functions in other groups, the devices a bind plan moves to vfio-pci, and its steps.
    /// </summary>
    private static VfioPlan Classify(HostReport report, GroupReport? view, VfioVerdict? verdict, PciAddress? target, bool force)
    {
        var machine = report.Machine;
        if (view is null || verdict is null)
        {
            var why = target is { } t0 && HostFunctions.Classify(DeviceOf(machine, t0)) is { } k0 && !(force && HostFunctions.Forceable(k0))
                ? $"{t0.ToShortString()} is {HostFunctions.Describe(k0)}: never passed through"
                : null;
            return new VfioPlan(report.State == IommuState.Off ? VerdictClass.NoIommu : VerdictClass.NotAssignable, null, [], [], [], [],
                why is null ? [] : [why], [], NoIommuCause(report));
        }

        // The asked device: the target, or for a group the first function that is not a bridge (else the first member).
        var asked = target ?? (view.Devices.FirstOrDefault(d => HostFunctions.Classify(d) is null)
            ?? view.Devices.FirstOrDefault(d => HostFunctions.Classify(d) != HostFunctionKind.Bridge) ?? view.Devices[0]).Address;
        // A card is what sits in a slot: the functions of one device behind a port. On a root bus, the functions of one
        // device number are the chipset's or CPU's separate integrated devices (audio, SMBus, LAN of a PCH), not one card.
        var askedDevice = DeviceOf(machine, asked);
        bool card = !askedDevice.IsOnRootBus;
        bool SameCard(PciAddress a) => card && HostFunctions.SameSlot(a, asked);
        var members = new List<VerdictMember>(view.Devices.Count);
        for (int i = 0; i < view.Devices.Count; i++)
        {
            var d = view.Devices[i];
            var dv = verdict.Devices[i];
            var kind = HostFunctions.Classify(d);
            DeviceRole role = d.Address == asked ? DeviceRole.Asked
                : kind == HostFunctionKind.Bridge ? DeviceRole.Path
                : SameCard(d.Address) && kind is null ? DeviceRole.SameCard
                : DeviceRole.Other;
            var uses = machine.HostUses?.Of(d.Address).ToList() ?? [];
            members.Add(new VerdictMember(d, role, dv.Ok, dv.Reason, kind, LossOf(machine, d, uses), uses));
        }

        var reasons = new List<string>();
        var askedMember = members.First(m => m.Role == DeviceRole.Asked);
        if (askedMember.HostFunction is { } k && !(force && HostFunctions.Forceable(k)))
            reasons.Add($"{asked.ToShortString()} is {HostFunctions.Describe(k)}: never passed through");
        reasons.AddRange(verdict.Problems);

        // The card's functions in other groups (ls-iommu -r): part of the plan, with the group they sit in.
        var related = RelatedOf(report, askedDevice, view);

        var others = members.Where(m => m.Role == DeviceRole.Other).ToList();
        VerdictClass cls;
        if (report.State == IommuState.Off) cls = VerdictClass.NoIommu;
        else if (reasons.Count > 0) cls = VerdictClass.NotAssignable;
        else if (others.Count > 0) cls = VerdictClass.SharesGroup;
        else cls = members.TrueForAll(m => m.Ok) ? VerdictClass.Ready : VerdictClass.NeedsBinding;

        // What bind moves to vfio-pci: the card's functions here and in other groups; bridges stay on pcieport.
        // A host function is never a target (the asked one included: its verdict is not-assignable), unless forced.
        var targets = members.Where(m => m.Role is DeviceRole.Asked or DeviceRole.SameCard)
            .Where(m => m.HostFunction is not { } hk || (force && HostFunctions.Forceable(hk))).Select(m => m.Device)
            .Concat(related.Select(r => r.Device)).Where(d => d.Driver is null || !Passthrough.VfioCheck.IsVfioDriver(d.Driver)).ToList();
        var steps = BindSteps(targets);
        // Targets the running host is using (its root disk, default route, console, keyboard): bind refuses them unless forced.
        var held = force || machine.HostUses is not { } facts ? []
            : targets.Where(t => facts.Holds(t.Address)).Select(t => (t.Address, Wording.HostUses(facts.Of(t.Address), facts.Live)!)).ToList();

        var splits = new List<string>();
        if (cls == VerdictClass.SharesGroup) splits.AddRange(SplitAdvice(askedDevice));
        return new VfioPlan(cls, asked, members, related, targets, steps, reasons, splits, NoIommuCause(report)) { Held = held };
    }

    /// <summary>
    /// What the host loses with <paramref name="d"/>: what the source says the host uses it for, when it says
    /// (<see cref="Machine.HostUses"/>), else what its class and driver suggest (<see cref="Passthrough.VfioCheck.HostLossOf"/>).
    /// When the source says and the host uses nothing on it, the hedge about the boot disk or the host's connection is dropped.
    /// </summary>
    private static HostLoss? LossOf(Machine machine, PciDevice d, IReadOnlyList<HostUse> uses)
    {
        if (machine.HostUses is not { } facts) return Passthrough.VfioCheck.HostLossOf(d);
        if (Wording.HostUses(uses, facts.Live) is { } what) return new HostLoss(d.Address, what);
        var generic = Passthrough.VfioCheck.HostLossOf(d);
        if (generic is null) return null;
        string? none = Wording.NoHostUse(d, facts.Live);
        return none is null ? generic : new HostLoss(d.Address, none);
    }

    /// <summary>
    /// Why <see cref="ApplyBind"/> refuses <paramref name="plan"/> before writing anything, or null: a target the running
    /// host is using (its root, /boot or swap disk, the default route's NIC, the boot VGA device or console framebuffer,
    /// a keyboard's controller), unless the plan was made with <c>force</c>.
    /// </summary>
    public static string? BindRefusal(VfioReport plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        return plan.Plan.Held.Count == 0 ? null : Wording.HeldRefusal(plan.Plan.Held);
    }

    /// <summary>
    /// The functions of the cards in <paramref name="group"/> that sit in other groups (ls-iommu <c>-r</c>): for every
    /// member that is a card's function (behind a port, not a host function), the other functions of its slot that are
    /// not members, with the group they sit in; in address order, each once. The same rule as a verdict's related functions.
    /// </summary>
    public static IReadOnlyList<RelatedFunction> RelatedFunctions(HostReport report, GroupReport group)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(group);
        var seen = new HashSet<PciAddress>();
        var all = new List<RelatedFunction>();
        foreach (var d in group.Devices)
            if (HostFunctions.Classify(d) is null)
                foreach (var r in RelatedOf(report, d, group))
                    if (seen.Add(r.Address)) all.Add(r);
        all.Sort((a, b) => a.Address.CompareTo(b.Address));
        return all;
    }

    /// <summary>
    /// The functions of <paramref name="card"/>'s slot outside <paramref name="view"/> that a VM would take with it (not
    /// host functions), with their groups. A card is what sits in a slot: on a root bus the functions of one device
    /// number are the chipset's separate integrated devices, so a device there has none.
    /// </summary>
    private static List<RelatedFunction> RelatedOf(HostReport report, PciDevice card, GroupReport view)
    {
        var related = new List<RelatedFunction>();
        if (card.IsOnRootBus) return related;
        foreach (var d in card.Bus.Devices)
        {
            if (!HostFunctions.SameSlot(d.Address, card.Address) || view.Contains(d.Address) || HostFunctions.Classify(d) is not null) continue;
            related.Add(new RelatedFunction(d, report.GroupOf(d.Address)?.Id));
        }
        related.Sort((a, b) => a.Address.CompareTo(b.Address));
        return related;
    }

    /// <summary>
    /// The writes that move <paramref name="devices"/> to vfio-pci the way libvirt (virPCIDeviceBindToStub) and Proxmox
    /// do: unbind from the current driver, set <c>driver_override</c> so only vfio-pci may claim it, and ask the PCI core
    /// to probe it again (<c>drivers_probe</c>). Never by vendor:device id, which would also take identical devices.
    /// </summary>
    public static IReadOnlyList<HostAction> BindSteps(IEnumerable<PciDevice> devices)
    {
        ArgumentNullException.ThrowIfNull(devices);
        var steps = new List<HostAction>();
        foreach (var d in devices)
        {
            string a = d.Address.ToString();
            if (d.Driver is { } drv) steps.Add(HostAction.Unbind(a, drv));
            steps.Add(HostAction.Override(a, VfioPci));
            steps.Add(HostAction.Probe(a));
        }
        return steps;
    }

    /// <summary>
    /// The writes that give <paramref name="devices"/> back to the host: unbind from vfio-pci, clear
    /// <c>driver_override</c>, and probe again so the host's driver claims it.
    /// </summary>
    public static IReadOnlyList<HostAction> UnbindSteps(IEnumerable<PciDevice> devices)
    {
        ArgumentNullException.ThrowIfNull(devices);
        var steps = new List<HostAction>();
        foreach (var d in devices)
        {
            string a = d.Address.ToString();
            if (d.Driver is { } drv) steps.Add(HostAction.Unbind(a, drv));
            steps.Add(HostAction.Override(a, ""));
            steps.Add(HostAction.Probe(a));
        }
        return steps;
    }

    /// <summary>What would give the asked device a group of its own: another slot, ACS on the port, the override patch.</summary>
    private static List<string> SplitAdvice(PciDevice asked)
    {
        var advice = new List<string>();
        if (asked.IsOnRootBus)
            advice.Add($"{asked.Address.ToShortString()} is built into the chipset or CPU: it cannot move, and its group is fixed by the platform's ACS; " +
                       "a plug-in card behind a port with ACS is the reliable alternative");
        else advice.Add(
            "move the card to a slot behind a port with ACS (usually a CPU root port) so it gets a group of its own: `iommu whatif --move " +
            asked.Address.ToShortString() + "=PORT` predicts the group it would get there");
        for (var p = asked.Parent; p is not null; p = p.Parent)
        {
            if (p.Acs is null && p.IsPcie && p.PcieType is PcieType.RootPort or PcieType.Downstream)
            {
                advice.Add($"the port {p.Address.ToShortString()} above it has no ACS capability: a firmware option that enables ACS there (some boards offer one) would split the group");
                break;
            }
        }
        advice.Add("pcie_acs_override=downstream,multifunction (a patch carried by Proxmox and some distribution kernels, not mainline) " +
                   "makes the kernel split the group anyway; the hardware still lets those devices reach each other by DMA, so a guest " +
                   "that controls the card can attack the host devices it was grouped with");
        return advice;
    }

    /// <summary>Why there is no IOMMU, naming the actual cause; null when one is active.</summary>
    private static string? NoIommuCause(HostReport report)
    {
        if (report.State != IommuState.Off) return null;
        var sw = IommuSwitches.Parse(report.CommandLine);
        if (sw.IntelOff || sw.AmdOff || sw.IommuOff) return report.EnableAdvice;
        if (LooksVirtual(report.Machine))
            return "This is a virtual machine without a virtual IOMMU: give it one (QEMU -device intel-iommu,intremap=on or virtio-iommu; libvirt <iommu model='intel'/>).";
        return report.EnableAdvice;
    }

    /// <summary>QEMU's chipsets (i440FX 8086:1237, Q35 8086:29c0) or a Red Hat/virtio device: a guest, not a host.</summary>
    private static bool LooksVirtual(Machine m) => m.Topology.Devices.Any(d =>
        d.VendorId is 0x1af4 or 0x1b36 || (d.VendorId == 0x8086 && d.DeviceId is 0x1237 or 0x29c0 && d.Address.Bus == 0 && d.Address.Device == 0));

    /// <summary>
    /// The persistent setup for the targets: the <c>vfio-pci.ids=</c> kernel parameter and the modprobe.d line, and the
    /// other devices of the machine the same ids would also take (a second identical NIC).
    /// </summary>
    public static PersistentBinding Persistent(Machine machine, IReadOnlyList<PciDevice> targets)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(targets);
        var ids = targets.Select(d => $"{d.VendorId:x4}:{d.DeviceId:x4}").Distinct().ToList();
        var mine = targets.Select(d => d.Address).ToHashSet();
        var alsoTaken = machine.Topology.Devices
            .Where(d => !mine.Contains(d.Address) && ids.Contains($"{d.VendorId:x4}:{d.DeviceId:x4}"))
            .Select(d => d.Address).Order().ToList();
        string list = string.Join(",", ids);
        return new PersistentBinding(ids, ids.Count == 0 ? null : $"vfio-pci.ids={list}", ids.Count == 0 ? null : $"options vfio-pci ids={list}", alsoTaken);
    }
}

/// <summary>The persistent form of a bind: what to add to the kernel command line or /etc/modprobe.d/vfio.conf.</summary>
/// <param name="Ids">vendor:device ids, in target order.</param>
/// <param name="KernelParameter"><c>vfio-pci.ids=…</c>, or null when there is nothing to bind.</param>
/// <param name="ModprobeLine"><c>options vfio-pci ids=…</c>, or null.</param>
/// <param name="AlsoTaken">Other devices with the same ids: the persistent form would take them too.</param>
public sealed record PersistentBinding(IReadOnlyList<string> Ids, string? KernelParameter, string? ModprobeLine, IReadOnlyList<PciAddress> AlsoTaken);

/// <summary>The classified answer inside a <see cref="VfioReport"/>.</summary>
public sealed record VfioPlan(
    VerdictClass Class,
    PciAddress? Asked,
    IReadOnlyList<VerdictMember> Members,
    IReadOnlyList<RelatedFunction> Related,
    IReadOnlyList<PciDevice> Targets,
    IReadOnlyList<HostAction> Steps,
    IReadOnlyList<string> Reasons,
    IReadOnlyList<string> Splits,
    string? NoIommuCause)
{
    /// <summary>Targets the running host is using, with what for (empty when forced or unknown): <see cref="HostAnalysis.BindRefusal"/>.</summary>
    public IReadOnlyList<(PciAddress Device, string What)> Held { get; init; } = [];
}
