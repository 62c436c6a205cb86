using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>Derived machines for predictions and what-ifs: the same facts with something changed, rebuilt into a new topology.</summary>
public static class MachineRewrite
{
    /// <summary>The machine with the kernel's groups removed (<see cref="Machine.KernelGroups"/> null, no <c>KernelGroup</c> facts).</summary>
    public static Machine WithoutKernelGroups(Machine machine)
    {
        var b = new PciTopologyBuilder();
        foreach (var d in machine.Topology.Devices) b.Add(d.Facts with { KernelGroup = null });
        return machine with { Topology = b.Build(), KernelGroups = null };
    }

    /// <summary>The machine with another command line (as if the source had booted with it; facts unchanged).</summary>
    public static Machine WithCommandLine(Machine machine, string commandLine) => machine with { CommandLine = commandLine };

    /// <summary>
    /// The number of the bus below <paramref name="bridge"/>: its subordinate bus, or for a bridge with nothing below it
    /// (an empty slot) the secondary bus number its bus registers name; null when neither is known.
    /// </summary>
    public static byte? SecondaryBus(PciDevice bridge)
    {
        ArgumentNullException.ThrowIfNull(bridge);
        if (bridge.Subordinate is { } sub) return sub.Number;
        return bridge.IsBridge && bridge.Facts.BridgeBuses is { } b && b.Secondary > bridge.Address.Bus ? b.Secondary : null;
    }

    /// <summary>
    /// Moves the card in <paramref name="slot"/> (every function of that bus:device, and everything below its bridges)
    /// to device number <paramref name="newDevice"/> on the bus below <paramref name="targetBridge"/>. Buses below the
    /// moved functions are renumbered above every bus in use. The result has no kernel groups (they would be stale).
    /// </summary>
    /// <param name="addressMap">Old address to new address of every moved device.</param>
    /// <exception cref="InputException">No such device or bridge, the target is inside the moved subtree, or the slot is taken.</exception>
    public static Machine MoveSlot(Machine machine, PciAddress slot, PciAddress targetBridge, int newDevice,
        out IReadOnlyDictionary<PciAddress, PciAddress> addressMap)
    {
        var topo = machine.Topology;
        if (!topo.TryFind(slot, out var card)) throw new InputException($"{slot}: no such device to move");
        if (!topo.TryFind(targetBridge, out var bridge) || !bridge.IsBridge || SecondaryBus(bridge) is not { } targetBus)
            throw new InputException($"{targetBridge}: not a bridge with a bus below it; cannot move a card there");
        if (newDevice is < 0 or > 31) throw new InputException($"device number {newDevice} is outside 0..31");

        var functions = card.Bus.Devices.Where(d => d.Address.Device == card.Address.Device).ToList();
        var moved = new HashSet<PciDevice>();
        foreach (var f in functions)
        {
            moved.Add(f);
            foreach (var below in PciTopology.Below(f)) moved.Add(below);
        }
        if (moved.Contains(bridge)) throw new InputException($"{targetBridge} is inside the card being moved");
        int domain = bridge.Address.Domain;
        foreach (var d in targetBus == card.Address.Bus && domain == card.Address.Domain ? [] : bridge.Subordinate?.Devices ?? [])
        {
            if (d.Address.Device == newDevice) throw new InputException($"{d.Address}: slot {newDevice:x2} on bus {targetBus:x2} is taken");
        }

        // New bus numbers for buses inside the moved subtree.
        int nextBus = 0;
        foreach (var d in topo.Devices)
        {
            if (d.Address.Domain != domain) continue;
            nextBus = Math.Max(nextBus, d.Address.Bus + 1);
            if (d.Facts.BridgeBuses is { } bb) nextBus = Math.Max(nextBus, bb.Subordinate + 1);
        }
        var busMap = new Dictionary<(int, byte), byte>();
        busMap[(card.Address.Domain, card.Address.Bus)] = targetBus;
        foreach (var d in topo.Devices)
        {
            if (!moved.Contains(d) || d.Subordinate is null) continue;
            if (nextBus > 255) throw new InputException("no free bus numbers left for the moved card");
            busMap[(d.Address.Domain, d.Subordinate.Number)] = (byte)nextBus++;
        }

        var map = new Dictionary<PciAddress, PciAddress>();
        var b = new PciTopologyBuilder();
        foreach (var d in topo.Devices)
        {
            var f = d.Facts with { KernelGroup = null };
            if (moved.Contains(d))
            {
                byte nb = busMap[(d.Address.Domain, d.Address.Bus)];
                byte dev = functions.Contains(d) ? (byte)newDevice : d.Address.Device;
                var na = new PciAddress(domain, nb, dev, d.Address.Function);
                map[d.Address] = na;
                PciAddress? parent = functions.Contains(d) ? bridge.Address : null;
                f = f with { Address = na, ParentHint = parent };
                if (d.Subordinate is not null && f.BridgeBuses is { } bb)
                {
                    byte sec = busMap[(d.Address.Domain, d.Subordinate.Number)];
                    f = f with { BridgeBuses = (nb, sec, sec) };
                }
            }
            b.Add(f);
        }
        // Second pass: parent hints inside the moved subtree point at the moved bridges' new addresses.
        var b2 = new PciTopologyBuilder();
        var built = b.Build();
        var reverse = new Dictionary<PciAddress, PciAddress>();
        foreach (var kv in map) reverse[kv.Value] = kv.Key;
        foreach (var d in built.Devices)
        {
            var f = d.Facts;
            if (reverse.TryGetValue(d.Address, out var orig) && f.ParentHint is null)
            {
                // The original device's parent, at its new address.
                var op = topo[orig].Parent;
                if (op is not null && map.TryGetValue(op.Address, out var np)) f = f with { ParentHint = np };
            }
            else if (!reverse.ContainsKey(d.Address) && f.ParentHint is { } h && map.TryGetValue(h, out var nh))
            {
                f = f with { ParentHint = nh };
            }
            b2.Add(f);
        }
        addressMap = map;
        var units = machine.IommuUnits.Select(u => u with { Devices = u.Devices.Select(a => map.TryGetValue(a, out var na) ? na : a).ToList() }).ToList();
        return machine with { Topology = b2.Build(), IommuUnits = units, KernelGroups = null };
    }
}
