using IommuKit.Core;
using IommuKit.Drivers;
using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>An IOMMU unit as the kernel registers it: from the firmware's DMAR/IVRS, or inferred from what the source shows.</summary>
/// <param name="Name">For messages: <c>DRHD 1 (00:02.0)</c>, <c>IVHD 00:00.2</c>, <c>inferred gfx unit (00:02.0)</c>.</param>
/// <param name="Inferred">True when no firmware table stated it (see docs/grouping.md, "Platform shapes").</param>
public sealed record PlatformUnit(string Name, bool IncludeAll, bool Inferred);

/// <summary>
/// The firmware facts the kernel's probe depends on, per device: which IOMMU unit owns it (none: the kernel gives it
/// no group), the units in registration order and whether the kernel probes unit by unit, and whether the group
/// numbers are predictable from the source. Built by <see cref="Derive"/> from the machine's DMAR/IVRS (decoded by
/// Sources/Acpi) or, without them, from a table of platform shapes derived from 370 real DMARs and 171 IVRSs
/// (docs/grouping.md). ProbeOrder uses it; it orders nothing itself.
/// </summary>
public sealed class FirmwarePlatform
{
    private readonly int[] _unitOf;
    private readonly string?[] _noGroupReason;

    private FirmwarePlatform(int count)
    {
        _unitOf = new int[count];
        _noGroupReason = new string?[count];
    }

    /// <summary>Units in registration order (index = the unit number <see cref="UnitOf"/> returns); empty when no rule applies.</summary>
    public IReadOnlyList<PlatformUnit> Units { get; private set; } = [];

    /// <summary>
    /// The kernel probes devices unit by unit in <see cref="Units"/> order (VT-d from 6.1: <c>iommu_device_register</c>
    /// probes the bus once per unit and <c>intel_iommu_probe_device</c> refuses a device whose unit is not registered
    /// yet); false: one walk of the PCI device list for every unit (<c>bus_set_iommu</c>, before 6.1).
    /// </summary>
    public bool ProbesPerUnit { get; private set; }

    /// <summary>False when the group numbers depend on something the source does not show; <see cref="NumbersReason"/> says what.</summary>
    public bool NumbersPredictable => NumbersReason is null;

    /// <summary>Why the numbers are not predictable, or null.</summary>
    public string? NumbersReason { get; private set; }

    /// <summary>Where the units came from: <c>DMAR</c>, <c>IVRS</c>, <c>inferred</c> or <c>none</c>.</summary>
    public string Basis { get; private set; } = "none";

    /// <summary>The unit that owns <paramref name="d"/> (an index into <see cref="Units"/>), 0 when there is one unit or no rule, -1 when none: no group.</summary>
    public int UnitOf(PciDevice d) => _unitOf[d.ProbeIndex];

    /// <summary>Why the kernel gives <paramref name="d"/> no group (the rule and its kernel function), or null when it gets one.</summary>
    public string? NoGroupReason(PciDevice d) => _noGroupReason[d.ProbeIndex];

    /// <summary>
    /// Derives the platform of <paramref name="machine"/> for the kernel <paramref name="kernel"/> (null: unknown).
    /// <paramref name="unitsKnown"/>: the source lists which devices each unit manages (sysfs <c>iommu</c> links), so
    /// scope rules are not applied on top; only the order is derived.
    /// </summary>
    public static FirmwarePlatform Derive(Machine machine, KernelVersion? kernel, bool unitsKnown)
    {
        var topo = machine.Topology;
        var p = new FirmwarePlatform(topo.Count);
        var fw = machine.Firmware;
        if (fw.Dmar is { } dmar) p.FromDmar(topo, dmar, kernel, unitsKnown);
        else if (fw.Ivrs is { } ivrs) p.FromIvrs(topo, ivrs, unitsKnown);
        else if (!unitsKnown)
        {
            switch (Vendor(machine))
            {
                case IommuKind.Intel: p.InferIntel(topo, kernel); break;
                case IommuKind.Amd: p.InferAmd(topo); break;
                case IommuKind.ArmSmmu: p.InferArm(machine, kernel); break;
            }
        }
        if (p.NumbersReason is null && machine.HostBridges.Count == 0 && RootBusOrderMatters(machine, p, unitsKnown))
            p.NumbersReason = "several PCI root buses and no firmware order: the kernel scans them in ACPI namespace order (acpi_bus_scan), which only a snapshot taken as root records; the numbers assume bus-number order";
        return p;
    }

    /// <summary>The IOMMU vendor the source implies: its units, else its firmware tables, else its host bridges' vendor.</summary>
    private static IommuKind Vendor(Machine m)
    {
        if (m.IommuKind != IommuKind.Unknown) return m.IommuKind;
        if (m.Firmware.Iort is not null) return IommuKind.ArmSmmu;
        foreach (var d in m.Topology.Devices)
        {
            if (d.VendorId == AmpereVendor) return IommuKind.ArmSmmu;
            if (d.IsOnRootBus && d.Address.Device == 0 && d.Address.Function == 0 && (d.ClassCode >> 8) == 0x0600)
            {
                if (d.VendorId == 0x8086) return IommuKind.Intel;
                if (d.VendorId == 0x1022) return IommuKind.Amd;
            }
        }
        return IommuKind.Unknown;
    }

    private const ushort AmpereVendor = 0x1def;

    // ---- Reserved memory the firmware reports: RMRR (VT-d), IVMD (AMD-Vi) ----

    /// <summary>
    /// The DMAR's RMRRs with their device scopes resolved against the topology (<c>dmar_parse_one_rmrr</c>,
    /// <c>dmar_insert_dev_scope</c>): the VT-d driver reports each as a direct region of the devices in scope, relaxable
    /// for USB and graphics devices (<c>device_rmrr_is_relaxable</c>), in <c>intel_iommu_get_resv_regions</c>.
    /// Empty without a DMAR. Scope entries the topology does not hold are dropped, as the kernel drops them.
    /// </summary>
    public static IReadOnlyList<VtdRmrr> Rmrrs(Machine machine)
    {
        if (machine.Firmware.Dmar is not { } dmar) return [];
        var list = new List<VtdRmrr>(dmar.ReservedMemory.Count);
        foreach (var r in dmar.ReservedMemory)
        {
            var scope = new List<PciAddress>();
            foreach (var s in r.Scopes)
                if (s.Kind is DmarScopeKind.Endpoint or DmarScopeKind.Bridge && Resolve(machine.Topology, r.Segment, s) is { } d) scope.Add(d.Address);
            if (scope.Count > 0) list.Add(new VtdRmrr(r.Base, r.EndInclusive, scope));
        }
        return list;
    }

    /// <summary>
    /// The IVRS's IVMD ranges that the kernel turns into unity maps (<c>init_memory_definitions</c>: the unity-map or
    /// exclusion flag set, a non-zero length), each with the devices of the topology it names (type 0x20 every device,
    /// 0x21 one requester ID, 0x22 a range). Empty without an IVRS.
    /// </summary>
    public static IReadOnlyList<(ulong Start, ulong Last, bool Exclusion, IReadOnlyList<PciAddress> Scope)> Ivmds(Machine machine)
    {
        if (machine.Firmware.Ivrs is not { } ivrs) return [];
        var list = new List<(ulong, ulong, bool, IReadOnlyList<PciAddress>)>();
        foreach (var m in ivrs.MemoryDefinitions)
        {
            if ((m.Flags & 0b1001) == 0 || m.Length == 0 || m.Start > ulong.MaxValue - (m.Length - 1)) continue; // no unity/exclusion flag, empty, or wraps
            var scope = new List<PciAddress>();
            foreach (var d in machine.Topology.Devices)
                if (m.AppliesTo(d.Address.RequesterId)) scope.Add(d.Address);
            if (scope.Count > 0) list.Add((m.Start, m.Start + (m.Length - 1), (m.Flags & 0b1000) != 0, scope));
        }
        return list;
    }

    // ---- Intel VT-d ----

    private void FromDmar(PciTopology topo, DmarTable dmar, KernelVersion? kernel, bool unitsKnown)
    {
        Basis = "DMAR";
        var order = dmar.RegistrationOrder;
        var units = new List<PlatformUnit>(order.Count);
        var scopeDevices = new List<HashSet<PciDevice>>(order.Count);
        foreach (var u in order)
        {
            var set = new HashSet<PciDevice>();
            foreach (var s in u.Scopes)
                if (s.Kind is DmarScopeKind.Endpoint or DmarScopeKind.Bridge && Resolve(topo, u.Segment, s) is { } d) set.Add(d);
            scopeDevices.Add(set);
            units.Add(new PlatformUnit($"DRHD {u.Index}{(u.IncludePciAll ? " (INCLUDE_PCI_ALL)" : $" ({string.Join(", ", set.Select(x => x.Address.ToShortString()))})")}", u.IncludePciAll, false));
        }
        Units = units;
        foreach (var d in topo.Devices)
        {
            // dmar_find_matched_drhd_unit / device_lookup_iommu: units in list order; a unit owns the device when the
            // device (its PF for a VF: pci_physfn) or a bridge above it is in its scope, or it is INCLUDE_PCI_ALL for the segment.
            var dev = d.PhysicalFunction ?? d;
            int owner = -1;
            for (int i = 0; i < order.Count && owner < 0; i++)
            {
                for (var x = dev; x is not null && owner < 0; x = x.Parent)
                    if (scopeDevices[i].Contains(x)) owner = i;
                if (owner < 0 && order[i].IncludePciAll && order[i].Segment == dev.Address.Domain) owner = i;
            }
            _unitOf[d.ProbeIndex] = owner;
            if (owner < 0 && !unitsKnown)
                _noGroupReason[d.ProbeIndex] = "no DMAR unit's device scope covers it and no unit of its segment has INCLUDE_PCI_ALL (dmar_find_matched_drhd_unit): the kernel gives it no group";
            if (unitsKnown && owner < 0) _unitOf[d.ProbeIndex] = order.Count - 1; // the source's iommu links decide; order it last
        }
        SetIntelOrder(kernel);
    }

    /// <summary>
    /// The device a DMAR device scope names (VT-d spec §8.3.1; <c>dmar_insert_dev_scope</c>): the first step on the
    /// start bus, each further step on the secondary bus of the bridge the previous step named. Null when the path
    /// leaves the topology (a device the firmware describes but the source does not have).
    /// </summary>
    internal static PciDevice? Resolve(PciTopology topo, int segment, DmarDeviceScope scope)
    {
        int bus = scope.StartBus;
        PciDevice? d = null;
        foreach (var step in scope.Path)
        {
            if (d is not null)
            {
                if (d.Subordinate is not { } sub) return null;
                bus = sub.Number;
            }
            if (!topo.TryFind(new PciAddress(segment, (byte)bus, step.Device, step.Function), out var next)) return null;
            d = next;
        }
        return d;
    }

    private void SetIntelOrder(KernelVersion? kernel)
    {
        ProbesPerUnit = kernel is not { } k || k >= KernelVersion.V6_1;
        if (kernel is null && Units.Count > 1)
            NumbersReason = $"kernel release unknown and {Units.Count} VT-d units: from 6.1 the kernel probes unit by unit in registration order (iommu_device_register, intel_iommu_probe_device), before 6.1 in one walk (bus_set_iommu); the numbers assume 6.1 or later";
    }

    /// <summary>
    /// Intel without a DMAR (an lspci dump, an unprivileged snapshot): the units the survey of 370 real DMARs shows for
    /// what the source has, in table order: a unit for the iGPU 00:02.0 (250+ tables), one for the IPU 00:05.0
    /// (Raptor Lake-P/H), one per Thunderbolt root port 00:07.x (Tiger Lake and later), then the INCLUDE_PCI_ALL unit.
    /// </summary>
    private void InferIntel(PciTopology topo, KernelVersion? kernel)
    {
        Basis = "inferred";
        var scoped = new List<(string Name, PciDevice Device)>();
        if (Find(topo, 0, 2, 0) is { } gfx && gfx.VendorId == 0x8086 && (gfx.ClassCode >> 16) == 0x03)
            scoped.Add(("inferred gfx unit (00:02.0)", gfx));
        if (Find(topo, 0, 5, 0) is { } ipu && ipu.VendorId == 0x8086 && (ipu.ClassCode >> 8) == 0x0480)
            scoped.Add(("inferred IPU unit (00:05.0)", ipu));
        for (byte f = 0; f < 8; f++)
            if (Find(topo, 0, 7, f) is { } rp && rp.VendorId == 0x8086 && TigerLakeThunderboltPorts.Contains(rp.DeviceId))
                scoped.Add(($"inferred Thunderbolt unit (00:07.{f})", rp));
        // dmar_register_drhd_unit: scoped units at the head (reverse table order), INCLUDE_PCI_ALL at the tail.
        scoped.Reverse();
        var units = scoped.Select(s => new PlatformUnit(s.Name, false, true)).ToList();
        units.Add(new PlatformUnit("inferred INCLUDE_PCI_ALL unit", true, true));
        Units = units;
        foreach (var d in topo.Devices)
        {
            var dev = d.PhysicalFunction ?? d;
            int owner = units.Count - 1;
            for (int i = 0; i < scoped.Count && owner == units.Count - 1; i++)
                for (var x = dev; x is not null; x = x.Parent)
                    if (x == scoped[i].Device) { owner = i; break; }
            _unitOf[d.ProbeIndex] = owner;
        }
        SetIntelOrder(kernel);
    }

    /// <summary>
    /// Tiger Lake's integrated Thunderbolt 4 root ports (TGL-LP 9a23/9a25/9a27/9a29, TGL-H 9a2b/9a2d/9a2f/9a31): the
    /// only platform whose DMAR gives each its own unit (all 27 such tables of the survey are 11th-generation
    /// machines; Ice Lake's 00:07.x ports share the INCLUDE_PCI_ALL unit).
    /// </summary>
    private static readonly HashSet<ushort> TigerLakeThunderboltPorts = [0x9a23, 0x9a25, 0x9a27, 0x9a29, 0x9a2b, 0x9a2d, 0x9a2f, 0x9a31];

    private static PciDevice? Find(PciTopology topo, byte bus, byte dev, byte fn) =>
        topo.TryFind(new PciAddress(0, bus, dev, fn), out var d) ? d : null;

    // ---- AMD-Vi ----

    private void FromIvrs(PciTopology topo, IvrsTable ivrs, bool unitsKnown)
    {
        Basis = "IVRS";
        var blocks = ivrs.EffectiveBlocks;
        Units = blocks.Select(b => new PlatformUnit($"IVHD {b.IommuAddress.ToShortString()}", false, false)).ToList();
        foreach (var d in topo.Devices)
        {
            int owner = -1;
            bool self = false;
            for (int i = 0; i < blocks.Count && owner < 0; i++)
            {
                if (blocks[i].Segment != d.Address.Domain) continue;
                if (d.Address.RequesterId == blocks[i].IommuRequesterId) { self = true; continue; }
                if (blocks[i].Covers(d.Address.RequesterId)) owner = i;
            }
            _unitOf[d.ProbeIndex] = owner;
            if (owner < 0 && !unitsKnown)
                _noGroupReason[d.ProbeIndex] = self
                    ? "it is the AMD IOMMU's own function: init_iommu_one_late clears its entry, so check_device refuses it and the kernel gives it no group"
                    : "no IVHD device entry of the IVRS covers its requester ID (check_device): the kernel gives it no group";
            if (unitsKnown && owner < 0) _unitOf[d.ProbeIndex] = 0;
        }
    }

    /// <summary>
    /// AMD without an IVRS: every I/O hub with an AMD IOMMU function (class 0x0806) at xx:00.2 is a Zen-era hub,
    /// whose IVRS ranges start at xx:01.0 or xx:00.3 in every one of the 166 Zen-era tables of the survey: the root
    /// complex xx:00.0 and the IOMMU function xx:00.2 get no group.
    /// </summary>
    private void InferAmd(PciTopology topo)
    {
        var hubs = new List<PciDevice>();
        foreach (var d in topo.Devices)
            if (d.VendorId == 0x1022 && d.ClassCode >> 8 == 0x0806 && d.IsOnRootBus && d.Address is { Device: 0, Function: 2 })
                hubs.Add(d);
        if (hubs.Count == 0) return;
        Basis = "inferred";
        Units = hubs.Select(h => new PlatformUnit($"inferred IVHD {h.Address.ToShortString()}", false, true)).ToList();
        foreach (var d in topo.Devices)
        {
            foreach (var h in hubs)
            {
                if (d.Address.Domain != h.Address.Domain || d.Address.Bus != h.Address.Bus) continue;
                if (d == h)
                    _noGroupReason[d.ProbeIndex] = "it is the AMD IOMMU's own function: init_iommu_one_late clears its entry, so check_device refuses it and the kernel gives it no group (inferred: the source has no IVRS)";
                else if (d.Address is { Device: 0, Function: 0 } && d.VendorId == 0x1022 && d.ClassCode >> 8 == 0x0600)
                    _noGroupReason[d.ProbeIndex] = "it is the I/O hub's root complex, which the IVHD device ranges of Zen-era firmware leave out (they start at xx:00.3 or xx:01.0; check_device): the kernel gives it no group (inferred: the source has no IVRS)";
            }
            _unitOf[d.ProbeIndex] = _noGroupReason[d.ProbeIndex] is null ? 0 : -1;
        }
    }

    // ---- Arm SMMU ----

    /// <summary>
    /// Arm (Ampere Altra) without an IORT: each PCI domain's host bridge gets no group before 6.15 (the SMMU probe ran
    /// at driver probe time, <c>acpi_dma_configure_id</c> from <c>really_probe</c>, and no driver binds a host
    /// bridge); the function at devfn 0 on the bus below a PCIe-to-PCI bridge, whose stream ID repeats the one its
    /// bridge's alias gives, is refused by <c>arm_smmu_insert_master</c> (kernels 5.13 to the 2025 fix, taken as 6.15:
    /// UNVERIFIED). Numbers follow driver bind order before 6.15: not predictable.
    /// </summary>
    private void InferArm(Machine machine, KernelVersion? kernel)
    {
        var topo = machine.Topology;
        Basis = machine.Firmware.Iort is null ? "inferred" : "IORT";
        Units = [new PlatformUnit(machine.Firmware.Iort is null ? "inferred SMMUv3" : "IORT SMMU", false, machine.Firmware.Iort is null)];
        bool before615 = kernel is not { } k || k < new KernelVersion(6, 15);
        bool sidRepeat = kernel is not { } k2 || k2 >= new KernelVersion(5, 13) && k2 < new KernelVersion(6, 15);
        var iort = machine.Firmware.Iort;
        foreach (var d in topo.Devices)
        {
            if (iort is not null && !IortMapsToSmmu(iort, d))
                _noGroupReason[d.ProbeIndex] = "no IORT root complex of its segment maps its requester ID to an SMMU (iort_node_map_id): no IOMMU translates for it and the kernel gives it no group";
            else if (before615 && d.IsOnRootBus && d.ClassCode >> 8 == 0x0600)
                _noGroupReason[d.ProbeIndex] = "a host bridge: before 6.15 the SMMU probes a device when a driver binds it (acpi_dma_configure_id from really_probe) and none binds a host bridge, so the kernel gives it no group";
            else if (sidRepeat && d.Parent is { PcieType: PcieType.PciBridge } && d.Address.Devfn == 0)
                _noGroupReason[d.ProbeIndex] = "behind a PCIe-to-PCI bridge at devfn 0, its stream ID repeats the alias of its bridge and arm_smmu_insert_master refuses the duplicate (5.13 to the 2025 fix): the kernel gives it no group";
            _unitOf[d.ProbeIndex] = _noGroupReason[d.ProbeIndex] is null ? 0 : -1;
        }
        if (before615)
            NumbersReason = "Arm SMMU before 6.15: devices join groups as their drivers bind (acpi_dma_configure_id from really_probe), an order no source records";
    }

    /// <summary>
    /// Whether the IORT routes the device's requester ID to an SMMU (<c>iort_node_map_id</c>): the root complex node of
    /// its segment, the ID mapping whose input range holds the RID (or a single mapping), and the node that mapping
    /// outputs to, followed while it is neither an SMMU nor an ITS group (at most 8 hops, as the kernel's
    /// <c>MAX_NR_ID_MAPPINGS</c>-bounded walk).
    /// </summary>
    internal static bool IortMapsToSmmu(IortTable iort, PciDevice d)
    {
        IortNode? node = null;
        foreach (var n in iort.Nodes)
            if (n.Kind == IortNodeKind.RootComplex && n.Segment == d.Address.Domain) { node = n; break; }
        uint id = d.Address.RequesterId;
        for (int hop = 0; node is not null && hop < 8; hop++)
        {
            if (node.Kind is IortNodeKind.Smmu or IortNodeKind.SmmuV3) return true;
            IortIdMapping? hit = null;
            foreach (var m in node.Mappings)
                if (m.SingleMapping || id >= m.InputBase && id - m.InputBase <= m.IdCount) { hit = m; break; }
            if (hit is not { } h) return false;
            id = h.SingleMapping ? h.OutputBase : h.OutputBase + (id - h.InputBase);
            node = iort.NodeAt(h.OutputReference);
        }
        return false;
    }

    /// <summary>
    /// Whether the firmware's root-bus order can change the numbers: more than one root bus holds a device some unit
    /// manages. On a QEMU guest (host bridge 00:00.0 with the Red Hat/QEMU subsystem vendor 1af4) the DSDT defines
    /// PCI0 (bus 0) before every expander bridge (pxb), so only several managed expander buses leave the order open:
    /// the expanders themselves are not in bus order (a q35 capture with pxb buses 0x20 then 0x40 on the command line
    /// names them PNP0A08:02 and PNP0A08:01, tests/fixtures/acpi/qemu72-pxb-capture.txt).
    /// </summary>
    private static bool RootBusOrderMatters(Machine machine, FirmwarePlatform p, bool unitsKnown)
    {
        var topo = machine.Topology;
        if (topo.RootBuses.Count < 2) return false;
        HashSet<PciAddress>? listed = null;
        if (unitsKnown)
        {
            listed = new HashSet<PciAddress>();
            foreach (var u in machine.IommuUnits) foreach (var a in u.Devices) listed.Add(a);
        }
        bool qemu = topo.TryFind(new PciAddress(0, 0, 0, 0), out var hb) && hb.Facts.SubsystemVendorId == 0x1af4;
        bool noUnitLists = machine.IommuUnits.All(u => u.Devices.Count == 0);
        // One pass over the devices (not one per root bus: a machine of many PCI domains made this quadratic): the
        // root buses with at least one device behind the IOMMU.
        var roots = new HashSet<PciBus>(topo.RootBuses, ReferenceEqualityComparer.Instance);
        var managedRoots = new HashSet<PciBus>(ReferenceEqualityComparer.Instance);
        int managedBuses = 0;
        foreach (var d in topo.Devices)
        {
            var root = d.Bus;
            while (root.Parent is { } up) root = up;
            if (!roots.Contains(root) || (qemu && root.Domain == 0 && root.Number == 0)) continue;
            if (managedRoots.Contains(root)) continue;
            bool managed = unitsKnown
                ? listed!.Contains(d.Address) || d.Facts.IommuUnit is not null || noUnitLists
                : p.UnitOf(d) >= 0;
            if (!managed) continue;
            managedRoots.Add(root);
            if (++managedBuses > 1) break;
        }
        return managedBuses > 1;
    }
}
