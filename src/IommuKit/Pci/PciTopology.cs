namespace IommuKit.Pci;

/// <summary>
/// An immutable PCI topology: every function, its bus and bridge, in the kernel's probe order. Built once by
/// <see cref="PciTopologyBuilder"/>; cheap to query.
/// </summary>
public sealed class PciTopology
{
    private readonly Dictionary<PciAddress, PciDevice> _byAddress;

    internal PciTopology(List<PciDevice> probeOrder, List<PciBus> rootBuses, Dictionary<PciAddress, PciDevice> byAddress)
    {
        Devices = probeOrder;
        RootBuses = rootBuses;
        _byAddress = byAddress;
        foreach (var d in probeOrder) d.Topology = this;
    }

    /// <summary>Every function in the order the kernel probes them: root buses by (domain, number), on each bus the
    /// functions in devfn order, then the buses below, depth first (pci_bus_add_devices).</summary>
    public IReadOnlyList<PciDevice> Devices { get; }

    /// <summary>The root buses, ordered by (domain, number).</summary>
    public IReadOnlyList<PciBus> RootBuses { get; }

    /// <summary>Number of functions.</summary>
    public int Count => Devices.Count;

    /// <summary>The device at <paramref name="address"/>, or null when there is none.</summary>
    public PciDevice? Find(PciAddress address) => _byAddress.GetValueOrDefault(address);

    /// <summary>Looks up the device at <paramref name="address"/>; false when there is none.</summary>
    public bool TryFind(PciAddress address, out PciDevice device) => _byAddress.TryGetValue(address, out device!);

    /// <summary>The device at <paramref name="address"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such device; the message names the address.</exception>
    public PciDevice this[PciAddress address] =>
        _byAddress.TryGetValue(address, out var d) ? d : throw new KeyNotFoundException($"no PCI device {address} in this machine");

    /// <summary>Bridges from the device's parent up to the root, nearest first.</summary>
    public static IEnumerable<PciDevice> Ancestors(PciDevice device)
    {
        for (var b = device.Bus; b is not null; b = b.Parent)
        {
            if (b.Self is { } self) yield return self;
        }
    }

    /// <summary>Other functions in the same slot (same domain, bus and device number).</summary>
    public static IEnumerable<PciDevice> SlotSiblings(PciDevice device)
    {
        foreach (var d in device.Bus.Devices)
        {
            if (d != device && d.Address.Device == device.Address.Device) yield return d;
        }
    }

    /// <summary>Every device below a bridge, depth first, not including the bridge.</summary>
    public static IEnumerable<PciDevice> Below(PciDevice bridge)
    {
        if (bridge.Subordinate is null) yield break;
        var stack = new Stack<PciBus>();
        stack.Push(bridge.Subordinate);
        while (stack.Count > 0)
        {
            var bus = stack.Pop();
            foreach (var d in bus.Devices) yield return d;
            for (int i = bus.Children.Count - 1; i >= 0; i--) stack.Push(bus.Children[i]);
        }
    }
}

/// <summary>
/// Builds a <see cref="PciTopology"/> from device facts: finds each bus's bridge from the parent hint or from bridge
/// secondary bus numbers, creates virtual buses for functions on a bus no bridge leads to but one covers (SR-IOV VFs),
/// and root buses for the rest.
/// </summary>
public sealed class PciTopologyBuilder
{
    /// <summary>Hard cap on functions per machine: 65,536 buses x 256 functions would be absurd input; this bounds memory.</summary>
    public const int MaxDevices = 1 << 20;

    /// <summary>VFs looked up per PF: 4,096 is 16 full buses of VFs, more than any real device enables.</summary>
    public const int MaxVfsPerPf = 4096;

    private readonly Dictionary<PciAddress, PciDeviceFacts> _facts = new();

    /// <summary>The input the facts come from (a file path), named by every error <see cref="Add"/> and <see cref="Build"/> throw.</summary>
    public string? Origin { get; init; }

    /// <summary>Number of functions added so far.</summary>
    public int Count => _facts.Count;

    private InputException Error(string rule) => InputException.At(Origin, rule);

    /// <summary>Adds a function. A duplicate address is bad input.</summary>
    /// <exception cref="InputException">The address was already added, or the cap was reached.</exception>
    public PciTopologyBuilder Add(PciDeviceFacts facts)
    {
        if (_facts.Count >= MaxDevices)
            throw Error($"more than {MaxDevices} PCI functions: refusing to build a topology that large");
        if (!_facts.TryAdd(facts.Address, facts))
            throw Error($"{facts.Address}: the same PCI function appears twice");
        return this;
    }

    /// <summary>True when a function with this address was already added.</summary>
    public bool Contains(PciAddress address) => _facts.ContainsKey(address);

    /// <summary>Builds the immutable topology: buses, bridges, probe order and SR-IOV VFs from the added facts.</summary>
    /// <exception cref="InputException">Bridge bus numbers form a loop.</exception>
    public PciTopology Build()
    {
        var sorted = _facts.Values.OrderBy(f => f.Address).ToList();
        var devices = new Dictionary<PciAddress, PciDevice>(sorted.Count);
        foreach (var f in sorted) devices[f.Address] = new PciDevice(f, -1);

        // Bridges by (domain, secondary bus). The first bridge (in address order) claiming a bus wins.
        var bridgeFor = new Dictionary<(int, byte), PciDevice>();
        foreach (var d in devices.Values)
        {
            if (d.Facts.BridgeBuses is { } b && b.Secondary != 0 && b.Secondary > d.Address.Bus)
                bridgeFor.TryAdd((d.Address.Domain, b.Secondary), d);
        }

        var hintFor = new Dictionary<(int, byte), PciDevice>();
        foreach (var f in sorted)
        {
            if (f.ParentHint is { } hint && devices.TryGetValue(hint, out var hinted))
                hintFor.TryAdd((f.Address.Domain, f.Address.Bus), hinted);
        }

        // The bridge whose range covers a bus no bridge leads to: of the bridges with secondary < bus <= subordinate, the one
        // with the highest secondary (the innermost). Tabulated once per domain that has bridges, 256 entries, so a
        // machine of many bridgeless buses (one function per bus, 150k functions) costs one pass, not one scan of every
        // device per bus.
        var bridgesByDomain = new Dictionary<int, List<PciDevice>>();
        foreach (var d in devices.Values)
        {
            if (d.Facts.BridgeBuses is { } b && b.Secondary > d.Address.Bus)
            {
                if (!bridgesByDomain.TryGetValue(d.Address.Domain, out var list)) bridgesByDomain[d.Address.Domain] = list = new List<PciDevice>();
                list.Add(d);
            }
        }
        var coverTables = new Dictionary<int, PciDevice?[]>();
        PciDevice? CoverOf(int domain, byte number)
        {
            if (!bridgesByDomain.TryGetValue(domain, out var bridges)) return null;
            if (!coverTables.TryGetValue(domain, out var table))
            {
                table = new PciDevice?[256];
                foreach (var d in bridges) // address order: the first of equal secondaries wins, as the scan it replaces did
                {
                    var b = d.Facts.BridgeBuses!.Value;
                    for (int n = b.Secondary + 1; n <= b.Subordinate; n++)
                    {
                        if (table[n] is not { } c || b.Secondary > c.Facts.BridgeBuses!.Value.Secondary) table[n] = d;
                    }
                }
                coverTables[domain] = table;
            }
            return table[number];
        }

        var buses = new Dictionary<(int, byte), PciBus>();
        PciBus GetBus(int domain, byte number, HashSet<(int, byte)> visiting)
        {
            if (buses.TryGetValue((domain, number), out var bus)) return bus;
            if (!visiting.Add((domain, number)))
                throw Error($"{domain:x4}:{number:x2}: bridge bus numbers form a loop");
            // A parent hint from a device on this bus names the bridge directly; otherwise bus numbers decide.
            PciDevice? self = hintFor.GetValueOrDefault((domain, number)) ?? bridgeFor.GetValueOrDefault((domain, number));
            PciBus? parent = null;
            if (self is not null)
            {
                parent = GetBus(domain, self.Address.Bus, visiting);
            }
            else
            {
                // No bridge leads here: a virtual bus if some bridge's range covers it (SR-IOV VFs on a bus of their own).
                if (CoverOf(domain, number) is { } cover) parent = GetBus(domain, cover.Facts.BridgeBuses!.Value.Secondary, visiting);
            }
            bus = new PciBus(domain, number, self, parent);
            buses[(domain, number)] = bus;
            if (self is not null) self.Subordinate = bus;
            parent?._children.Add(bus);
            return bus;
        }

        var perBus = sorted.GroupBy(f => (f.Address.Domain, f.Address.Bus));
        foreach (var g in perBus)
        {
            var bus = GetBus(g.Key.Domain, g.Key.Bus, new HashSet<(int, byte)>());
            foreach (var f in g) // already in devfn order
            {
                var d = devices[f.Address];
                d.Bus = bus;
                bus._devices.Add(d);
            }
        }

        // SR-IOV: each PF's capability says where its enabled VFs sit (pci_iov_add_virtfn). Capped per PF: the
        // capability allows 65,535 VFs, which would let one hostile dump cost billions of lookups.
        foreach (var pf in sorted)
        {
            if (pf.Sriov is not { NumVfs: > 0 } sr) continue;
            int count = Math.Min((int)sr.NumVfs, MaxVfsPerPf);
            var pfDevice = devices[pf.Address];
            for (int k = 0; k < count; k++)
            {
                if (sr.VfAddress(pf.Address, k) is { } va && va != pf.Address && devices.TryGetValue(va, out var vf) && vf.PhysicalFunction is null)
                {
                    vf.PhysicalFunction = pfDevice;
                    vf.VfIndex = k;
                }
            }
        }

        // Kernel multifunction flag (pci_scan_slot / pci_setup_device): fn 0 from the header bit, any other function
        // always; a VF never (pci_iov_add_virtfn leaves it clear). Without the header byte, other (non-VF) functions
        // in the slot imply the bit was set, since the kernel only scans them when it is.
        foreach (var d in devices.Values)
        {
            bool? bit = d.Facts.MultifunctionBit;
            d.IsMultifunction = !d.IsVirtualFunction &&
                (d.Address.Function > 0 || (bit ?? PciTopology.SlotSiblings(d).Any(s => !s.IsVirtualFunction)));
        }

        // Child buses in the order the kernel adds them: bridges in devfn order, then virtual buses by number.
        foreach (var bus in buses.Values)
        {
            bus._children.Sort((a, b) =>
            {
                int ka = a.Self is null ? 1 : 0, kb = b.Self is null ? 1 : 0;
                if (ka != kb) return ka.CompareTo(kb);
                if (a.Self is not null && b.Self is not null) return a.Self.Address.CompareTo(b.Self.Address);
                return a.Number.CompareTo(b.Number);
            });
        }

        var roots = buses.Values.Where(b => b.IsRoot).OrderBy(b => b.Domain).ThenBy(b => b.Number).ToList();
        var order = new List<PciDevice>(devices.Count);
        var stack = new Stack<PciBus>();
        foreach (var root in roots)
        {
            stack.Push(root);
            while (stack.Count > 0)
            {
                var bus = stack.Pop();
                foreach (var d in bus.Devices)
                {
                    d.ProbeIndex = order.Count;
                    order.Add(d);
                }
                for (int i = bus.Children.Count - 1; i >= 0; i--) stack.Push(bus.Children[i]);
            }
        }
        return new PciTopology(order, roots, devices);
    }
}
