using IommuKit.Core;
using IommuKit.Pci;

namespace IommuKit.Passthrough;

/// <summary>One IOMMU group as the passthrough check sees it: its number, members and reserved regions.</summary>
/// <param name="Id">The group number (the kernel's, or the model's prediction of it).</param>
/// <param name="Devices">Every member of the group.</param>
/// <param name="ReservedRegions">The group's <c>reserved_regions</c> lines (kernel's or predicted); null when unknown.</param>
public sealed record PassthroughGroup(int Id, IReadOnlyList<PciAddress> Devices, IReadOnlyList<ReservedRegionText>? ReservedRegions);

/// <summary>The verdict on one member of the group.</summary>
/// <param name="Ok">True when this device does not stop the group from being handed to VFIO.</param>
/// <param name="Reason">One line: why it is OK, or what blocks.</param>
public sealed record DeviceVerdict(PciAddress Address, string? Driver, bool Ok, string Reason);

/// <summary>Something the host stops using when the whole group goes to a VM.</summary>
public sealed record HostLoss(PciAddress Address, string What);

/// <summary>The answer of <see cref="VfioCheck.Evaluate"/>.</summary>
/// <param name="Viable">True when VFIO could take the group as the source shows it (no changes needed).</param>
/// <param name="Rule">Which rule generation was applied: <c>dma-ownership</c> (5.19+) or <c>viable-group</c> (before).</param>
/// <param name="Kernel">The source's kernel version, or null when unknown (then the 5.19+ rule is assumed).</param>
/// <param name="Devices">Per member, in the group's order.</param>
/// <param name="Problems">Group-wide blockers (direct regions, interrupt remapping), one line each.</param>
/// <param name="HostLosses">What the host would lose, as far as the source shows it.</param>
/// <param name="Fixes">Concrete steps, most direct first.</param>
/// <param name="Notes">Facts worth knowing that do not change the verdict.</param>
public sealed record VfioVerdict(
    int GroupId,
    bool Viable,
    string Rule,
    KernelVersion? Kernel,
    IReadOnlyList<DeviceVerdict> Devices,
    IReadOnlyList<string> Problems,
    IReadOnlyList<HostLoss> HostLosses,
    IReadOnlyList<string> Fixes,
    IReadOnlyList<string> Notes);

/// <summary>
/// Can a group be given to a VM through VFIO? The kernel's answer for the source's kernel generation:
/// <list type="bullet">
/// <item>5.19 and later (spec section 7, <c>iommu_group_claim_dma_owner</c>): the claim fails with EPERM while any member
/// is bound to a driver that uses the kernel DMA API; drivers that set <c>driver_managed_dma</c> (vfio-pci and its
/// variants, pci-stub, pcieport) do not count.</item>
/// <item>Before 5.19 (<c>vfio_dev_viable</c> in drivers/vfio/vfio.c): every member must be driver-less, bound to a vfio
/// driver, bound to an allowed driver (pci-stub), or have a non-type-0 header (a bridge, whatever its driver).</item>
/// </list>
/// Both generations refuse a group with a <c>direct</c> reserved region (an RMRR): attaching the blocking or user domain
/// fails with EINVAL (spec sections 7 and 8.3; "ineligible for IOMMU domain attach due to platform RMRR requirement" in
/// older VT-d). vfio_iommu_type1 refuses a platform without interrupt remapping unless
/// <c>vfio_iommu_type1.allow_unsafe_interrupts=1</c>.
/// </summary>
public static class VfioCheck
{
    /// <summary>5.19: <c>iommu_group_claim_dma_owner</c> and <c>driver_managed_dma</c> replace VFIO's viability rule.</summary>
    public static readonly KernelVersion DmaOwnershipKernel = new(5, 19);

    /// <summary>
    /// True for vfio-pci and its variant drivers (<c>mlx5_vfio_pci</c>…): the core's definition,
    /// <see cref="IommuDevice.IsVfioDriver"/>, so the verdict and the core's ownership model cannot disagree.
    /// </summary>
    public static bool IsVfioDriver(string driver) => IommuDevice.IsVfioDriver(driver);

    /// <summary>
    /// Evaluates a group. <paramref name="target"/> is the device the user asked about (for the fixes' wording); null for
    /// the whole group. <paramref name="commandLine"/> overrides the machine's (for <c>allow_unsafe_interrupts</c>).
    /// </summary>
    /// <exception cref="InputException">A member of the group is not in the machine's topology.</exception>
    public static VfioVerdict Evaluate(Machine machine, PassthroughGroup group, PciAddress? target = null, KernelCommandLine? commandLine = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(group);
        var cmdline = commandLine ?? KernelCommandLine.Parse(machine.CommandLine);
        KernelVersion? kernel = KernelVersion.TryParse(machine.KernelRelease, out var kv) ? kv : null;
        bool ownership = kernel is null || kernel.Value >= DmaOwnershipKernel;
        var notes = new List<string>();
        if (kernel is null) notes.Add("kernel version unknown: the DMA-ownership rule of 5.19 and later is applied");

        var members = new List<PciDevice>(group.Devices.Count);
        foreach (var a in group.Devices)
        {
            if (!machine.Topology.TryFind(a, out var dev))
                throw new InputException($"{machine.Origin}: group {group.Id} lists {a}, which is not in the PCI topology");
            members.Add(dev);
        }

        var devices = new List<DeviceVerdict>(members.Count);
        foreach (var d in members) devices.Add(ownership ? JudgeOwnership(d) : JudgeViable(d));

        var problems = new List<string>();
        var fixes = new List<string>();

        // Direct (RMRR) regions: the blocking/user domain attach fails with EINVAL (spec 7 "take ownership", 8.3 require_direct).
        if (group.ReservedRegions is { } regions)
        {
            foreach (var r in regions)
            {
                if (r.Type == "direct")
                    problems.Add($"direct region 0x{r.Start:x}-0x{r.End:x} (firmware RMRR): the kernel refuses a blocking or VM domain for the group (EINVAL)");
                else if (r.Type == "direct-relaxable")
                    notes.Add($"direct-relaxable region 0x{r.Start:x}-0x{r.End:x}: relaxed when the group is assigned, not a blocker");
            }
        }
        else
        {
            notes.Add("reserved regions unknown: direct (RMRR) regions could not be checked");
        }
        if (problems.Count > 0)
            fixes.Add("a direct region is firmware's: update or reconfigure the firmware (e.g. disable legacy USB or shared graphics memory), or use a device outside this group");

        // Interrupt remapping (vfio_iommu_type1: "No interrupt remapping support", EPERM) where the source shows it.
        const string unsafeParam = "vfio_iommu_type1.allow_unsafe_interrupts";
        bool unsafeAllowed = cmdline.Has(unsafeParam) && KernelCommandLine.ParseBool(cmdline.LastValue(unsafeParam)) == true;
        string? noIr = MissingInterruptRemapping(machine, cmdline);
        if (noIr is not null)
        {
            if (unsafeAllowed) notes.Add($"{noIr}; allowed by vfio_iommu_type1.allow_unsafe_interrupts=1 (a VM can then forge interrupts)");
            else
            {
                problems.Add($"{noIr}: vfio_iommu_type1 refuses the group (EPERM)");
                fixes.Add("enable interrupt remapping (firmware x2APIC/VT-d option; remove intremap=off), or accept the risk with vfio_iommu_type1.allow_unsafe_interrupts=1");
            }
        }

        // Driver steps are not fixes of the group: the Host layer's plan (HostAnalysis.VfioCheck) binds the card's functions.
        var losses = new List<HostLoss>();
        foreach (var d in members)
        {
            var loss = HostLossOf(d);
            if (loss is not null) losses.Add(loss);
        }

        bool viable = problems.Count == 0 && devices.TrueForAll(v => v.Ok);
        return new VfioVerdict(group.Id, viable, ownership ? "dma-ownership" : "viable-group", kernel, devices, problems, losses, fixes, notes);
    }

    /// <summary>5.19+: <c>pci_dma_configure</c> counts a binding unless the driver sets <c>driver_managed_dma</c>.</summary>
    private static DeviceVerdict JudgeOwnership(PciDevice d)
    {
        var drv = d.Driver;
        if (drv is null) return new(d.Address, null, true, "no driver bound");
        if (IsVfioDriver(drv)) return new(d.Address, drv, true, $"bound to {drv} (VFIO)");
        if (IommuDevice.IsDriverManagedDma(drv))
            return new(d.Address, drv, true, drv == "pcieport" ? "bridge/port handled by pcieport (driver_managed_dma)" : $"bound to {drv} (driver_managed_dma)");
        return new(d.Address, drv, false, $"driver {drv} uses the DMA API (the group claim fails with EPERM)");
    }

    /// <summary>
    /// Before 5.19, <c>vfio_dev_viable</c> (drivers/vfio/vfio.c): OK when driver-less, registered with the VFIO group
    /// (vfio-pci and its variants), or allowed by <c>vfio_dev_driver_allowed</c>: a header other than
    /// <c>PCI_HEADER_TYPE_NORMAL</c> (a bridge, whatever its driver) or a driver on <c>vfio_driver_allowed</c> (only
    /// "pci-stub"). Anything else makes the group not viable (-EINVAL when a device is opened).
    /// </summary>
    private static DeviceVerdict JudgeViable(PciDevice d)
    {
        var drv = d.Driver;
        if (drv is null) return new(d.Address, null, true, "no driver bound");
        if (IsVfioDriver(drv)) return new(d.Address, drv, true, $"bound to {drv} (VFIO)");
        if (IommuDevice.VfioDriverAllowedBefore519(d, drv))
            return d.Facts.HeaderLayout != 0
                ? new(d.Address, drv, true, $"PCI interconnect (header type {d.Facts.HeaderLayout}), allowed with {drv}")
                : new(d.Address, drv, true, "bound to pci-stub (allowed driver)");
        return new(d.Address, drv, false, $"driver {drv} is not VFIO or an allowed driver (group not viable)");
    }

    /// <summary>"interrupt remapping ..." when the source shows it missing, else null.</summary>
    private static string? MissingInterruptRemapping(Machine machine, KernelCommandLine cmdline)
    {
        // intremap=off turns it off on x86 whatever the hardware (drivers/iommu/irq_remapping.c setup_irqremap).
        if (string.Equals(cmdline.LastValue("intremap"), "off", StringComparison.Ordinal))
            return "interrupt remapping is disabled on the command line (intremap=off)";
        foreach (var u in machine.IommuUnits)
        {
            // VT-d ECAP bit 3: Interrupt Remapping support.
            if (u.Kind == IommuKind.Intel && u.IntelEcap is { } ecap && (ecap & (1UL << 3)) == 0)
                return $"IOMMU unit {u.Name} has no interrupt remapping (ECAP.IR clear)";
        }
        return null;
    }

    /// <summary>What the host stops using with this device, as far as the source shows it; null for nothing notable.</summary>
    public static HostLoss? HostLossOf(PciDevice d)
    {
        uint cls = d.ClassCode;
        var drv = d.Driver;
        if (drv is not null && IsVfioDriver(drv)) return null; // already not the host's
        // A VGA device can hold the firmware's console without any driver; everything else matters only while a host
        // driver (not pci-stub, which just parks it) uses it.
        bool hostDriver = drv is not null && drv != "pci-stub";
        if (PciClasses.IsVga(cls))
            return new(d.Address, hostDriver
                ? $"VGA controller (driver {drv}): the console display if it is the boot VGA device"
                : "VGA controller: the console display if firmware booted on it");
        if (!hostDriver) return null;
        if (PciClasses.IsStorage(cls))
            return new(d.Address, $"storage controller (driver {drv}): every disk behind it, including the boot disk if it is there");
        if (PciClasses.IsNetwork(cls))
            return new(d.Address, $"network controller (driver {drv}): its network link, including the host's own connection if it uses it");
        if (PciClasses.IsGpu(cls))
            return new(d.Address, $"display controller (driver {drv}): the displays it drives");
        if (PciClasses.IsUsb(cls))
            return new(d.Address, $"USB controller (driver {drv}): every USB device on it, the keyboard and mouse if they are there");
        return null;
    }
}
