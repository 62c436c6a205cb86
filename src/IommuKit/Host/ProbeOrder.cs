using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>
/// The devices of a machine in the order the kernel hands them to <c>iommu_probe_device</c>: every boot-time device
/// (<see cref="Boot"/>) in bus order, then the devices that appear after boot (<see cref="Late"/>): SR-IOV virtual
/// functions as their PFs enable them, then hot-plugged devices in arrival order.
/// </summary>
/// <param name="Boot">Probed by the registration scan (<c>bus_iommu_probe</c>): groups get their default domain only after all of them.</param>
/// <param name="Late">Probed one by one after boot (<c>BUS_NOTIFY_ADD_DEVICE</c>): a device joining a group takes its domain as it is.</param>
public sealed record ProbeSequence(IReadOnlyList<PciDevice> Boot, IReadOnlyList<PciDevice> Late)
{
    /// <summary>Each device's position in <see cref="Boot"/> followed by <see cref="Late"/>, by <see cref="PciDevice.ProbeIndex"/>; -1 when absent.</summary>
    public required int[] Rank { get; init; }

    /// <summary>The firmware facts the order followed (unit scopes and registration order, root-bus order), and whether the numbers are predictable.</summary>
    public required FirmwarePlatform Platform { get; init; }
}

/// <summary>
/// The kernel's probe order and the IOMMU units that take part in it, stated once. Every consumer (the core's boot in
/// <see cref="HostModel"/>, the explanation replay of <see cref="GroupingResult.Explain"/>) takes the order from here, so
/// the ordering rules of real firmware (per-unit registration, root-bus order) have one place to live.
/// </summary>
public static class ProbeOrder
{
    /// <summary>
    /// The probe sequence of <paramref name="machine"/>: boot-time functions in <see cref="PciTopology.Devices"/> order
    /// (the PCI bus walk of <c>bus_iommu_probe</c>, kernel-model spec 11.1); then SR-IOV VFs, which come into being after
    /// boot when <c>sriov_numvfs</c> is written, PF by PF in <paramref name="vfEnableOrder"/> (PFs not listed follow in
    /// bus order) and VF index by VF index; then <paramref name="hotplug"/> in arrival order.
    /// The boot order follows the firmware (issue 9, <see cref="FirmwarePlatform"/>): root buses in ACPI namespace order
    /// when the source records it (<see cref="Machine.HostBridges"/>; <c>acpi_bus_scan</c> creates the root buses in that
    /// order), and on VT-d from 6.1 unit by unit in registration order (<c>iommu_device_register</c> probing the bus per
    /// unit, <c>intel_iommu_probe_device</c> refusing a device whose unit is not registered yet), each unit's devices in
    /// bus order.
    /// </summary>
    /// <param name="kernel">The kernel modelled; null when the source does not say (the order then assumes a current kernel and <see cref="FirmwarePlatform.NumbersReason"/> says so where it matters).</param>
    public static ProbeSequence Of(Machine machine, IReadOnlyList<PciAddress>? vfEnableOrder = null, IReadOnlyList<PciAddress>? hotplug = null, Core.KernelVersion? kernel = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        var topo = machine.Topology;
        var devices = topo.Devices;
        var platform = FirmwarePlatform.Derive(machine, kernel, unitsKnown: machine.IommuUnits.Count > 0);
        var late = new HashSet<PciAddress>(hotplug ?? []);
        var boot = new List<PciDevice>(devices.Count);
        List<PciDevice>? vfs = null;
        foreach (var d in devices)
        {
            if (late.Contains(d.Address)) continue;
            if (d.IsVirtualFunction) (vfs ??= new List<PciDevice>()).Add(d);
            else boot.Add(d);
        }
        OrderBootByFirmware(machine, platform, boot);
        var after = new List<PciDevice>();
        if (vfs is not null)
        {
            var pfRank = new Dictionary<int, int>();
            if (vfEnableOrder is not null)
                for (int i = 0; i < vfEnableOrder.Count; i++)
                    if (topo.Find(vfEnableOrder[i]) is { } pf) pfRank.TryAdd(pf.ProbeIndex, i);
            int listed = vfEnableOrder?.Count ?? 0;
            int Key(PciDevice vf)
            {
                int pf = vf.PhysicalFunction!.ProbeIndex;
                return pfRank.TryGetValue(pf, out int r) ? r : listed + pf;
            }
            vfs.Sort((a, b) =>
            {
                int c = Key(a).CompareTo(Key(b));
                return c != 0 ? c : a.VfIndex.CompareTo(b.VfIndex);
            });
            after.AddRange(vfs);
        }
        foreach (var a in hotplug ?? [])
            if (topo.Find(a) is { } d && !after.Contains(d)) after.Add(d);

        var rank = new int[devices.Count];
        Array.Fill(rank, -1);
        int n = 0;
        foreach (var d in boot) rank[d.ProbeIndex] = n++;
        foreach (var d in after) rank[d.ProbeIndex] = n++;
        return new ProbeSequence(boot, after) { Rank = rank, Platform = platform };
    }

    /// <summary>
    /// Reorders the boot devices (stable, so bus order stays within each key): by the namespace rank of their root bus
    /// when the source records host bridges, then, when the kernel probes per unit, by registration rank of their unit.
    /// </summary>
    private static void OrderBootByFirmware(Machine machine, FirmwarePlatform platform, List<PciDevice> boot)
    {
        Dictionary<(int, byte), int>? rootRank = null;
        if (machine.HostBridges.Count > 1)
        {
            rootRank = new Dictionary<(int, byte), int>();
            for (int i = 0; i < machine.HostBridges.Count; i++) rootRank.TryAdd((machine.HostBridges[i].Domain, machine.HostBridges[i].Bus), i);
        }
        bool perUnit = platform is { ProbesPerUnit: true, Units.Count: > 1 };
        if (rootRank is null && !perUnit) return;
        int RootOf(PciDevice d)
        {
            var bus = d.Bus;
            while (bus.Parent is { } p) bus = p;
            return rootRank is not null && rootRank.TryGetValue((bus.Domain, bus.Number), out int r) ? r : int.MaxValue;
        }
        int UnitOf(PciDevice d) => !perUnit ? 0 : platform.UnitOf(d) is int u && u >= 0 ? u : int.MaxValue;
        var ordered = boot.Select((d, i) => (d, i)).OrderBy(x => UnitOf(x.d)).ThenBy(x => RootOf(x.d)).ThenBy(x => x.i).Select(x => x.d).ToList();
        boot.Clear();
        boot.AddRange(ordered);
    }

    /// <summary>
    /// The IOMMU units to model for <paramref name="machine"/>: its own when the source lists them; otherwise, when
    /// <paramref name="assume"/> is set (the IOMMU is predicted on, or the source cannot say), one catch-all unit of
    /// <paramref name="kind"/> (AMD-Vi when the kind says so or the host bridge is AMD's, else VT-d) covering every PCI
    /// function except the IOMMU's own (class 0x0806, which is never behind itself: AMD's <c>check_device</c>).
    /// <paramref name="assumedUnits"/> tells whether the units are such a guess.
    /// </summary>
    public static IReadOnlyList<IommuUnit> Units(Machine machine, bool assume, IommuKind kind, out bool assumedUnits)
    {
        ArgumentNullException.ThrowIfNull(machine);
        assumedUnits = false;
        if (machine.IommuUnits.Count > 0) return WithLinkedDevices(machine);
        if (!assume) return machine.IommuUnits;
        assumedUnits = true;
        if (kind is not (IommuKind.Intel or IommuKind.Amd)) kind = HostBridgeVendor(machine) == 0x1022 ? IommuKind.Amd : IommuKind.Intel;
        // The firmware's scopes (DMAR/IVRS, or the inferred platform shape: AMD root complex and IOMMU function, Arm
        // host bridges) leave some devices to no unit; the kernel gives them no group (FirmwarePlatform.NoGroupReason).
        var platform = FirmwarePlatform.Derive(machine, Core.KernelVersion.TryParse(machine.KernelRelease, out var kv) ? kv : null, unitsKnown: false);
        var devices = new List<PciAddress>(machine.Topology.Count);
        foreach (var d in machine.Topology.Devices)
            if ((d.ClassCode >> 8) != 0x0806 && platform.UnitOf(d) >= 0) devices.Add(d.Address);
        bool amd = kind == IommuKind.Amd;
        return [new IommuUnit(amd ? "ivhd0" : "dmar0", kind, devices, new Dictionary<string, string>())];
    }

    /// <summary>
    /// The machine's units with each one's scope completed by the devices whose <c>iommu</c> link names it: the kernel
    /// creates that link for every device it probed, so a source that shows links but no per-unit device list still
    /// says exactly which devices each unit manages. Without any link, a unit without a device list stays a catch-all
    /// (empty list); with links, such a unit probed nothing and is left out.
    /// </summary>
    private static IReadOnlyList<IommuUnit> WithLinkedDevices(Machine machine)
    {
        var linked = new Dictionary<string, List<PciAddress>>(StringComparer.Ordinal);
        foreach (var d in machine.Topology.Devices)
            if (d.Facts.IommuUnit is { } u) (linked.TryGetValue(u, out var l) ? l : linked[u] = new List<PciAddress>()).Add(d.Address);
        if (linked.Count == 0) return machine.IommuUnits;
        var units = new List<IommuUnit>(machine.IommuUnits.Count);
        foreach (var unit in machine.IommuUnits)
        {
            if (!linked.TryGetValue(unit.Name, out var extra))
            {
                // Links exist but none names this unit: it probed nothing (an empty list would read as a catch-all).
                if (unit.Devices.Count > 0) units.Add(unit);
                continue;
            }
            var scope = new List<PciAddress>(unit.Devices);
            var seen = new HashSet<PciAddress>(scope);
            foreach (var a in extra) if (seen.Add(a)) scope.Add(a);
            units.Add(unit with { Devices = scope });
        }
        return units;
    }

    private static ushort HostBridgeVendor(Machine machine)
    {
        foreach (var root in machine.Topology.RootBuses)
            foreach (var d in root.Devices)
                if (d.ClassCode >> 8 == 0x0600) return d.VendorId;
        return 0;
    }
}
