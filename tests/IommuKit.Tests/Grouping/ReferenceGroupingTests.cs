using IommuKit.Host;
using IommuKit.Grouping;
using IommuKit.Pci;
using Xunit;

namespace IommuKit.Tests.Grouping;

/// <summary>
/// Differential test of the optimized engine (per-bus indexes, memoized ACS answers, alias-bus filter) against a
/// deliberately naive transcription of spec 2.4-2.6 that scans every device like the kernel's <c>for_each_pci_dev</c>,
/// on random topologies.
/// </summary>
public class ReferenceGroupingTests
{
    private sealed class RefGroup { public int Id; }

    /// <summary>Naive pci_device_group: no memo, no index, whole-machine scans.</summary>
    private static List<(PciDevice Dev, RefGroup Group)> Reference(Machine m, GroupingContext ctx)
    {
        var groupOf = new Dictionary<PciDevice, RefGroup>();
        var result = new List<(PciDevice, RefGroup)>();
        int next = 0;
        bool Acs(PciDevice d) => PciGrouping.Evaluate(d, AcsFlags.Required, ctx).Enabled;
        bool Path(PciDevice start)
        {
            for (var p = start; ; p = p.Bus.Self!)
            {
                if (!Acs(p)) return false;
                if (p.IsOnRootBus || p.Bus.Self is null) return true;
            }
        }
        bool Mf(PciDevice d) => d.IsMultifunction;
        RefGroup? AliasGroup(PciDevice p, bool[] seen)
        {
            if (seen[p.Address.Devfn]) return null;
            seen[p.Address.Devfn] = true;
            if (groupOf.TryGetValue(p, out var g)) return g;
            foreach (var t in m.Topology.Devices)
            {
                if (t == p || t.Bus != p.Bus || !PciGrouping.AreDmaAliases(p, t, ctx)) continue;
                var r = AliasGroup(t, seen) ?? FuncGroup(t, seen);
                if (r is not null) return r;
            }
            return null;
        }
        RefGroup? FuncGroup(PciDevice p, bool[] seen)
        {
            if (!Mf(p) || Acs(p)) return null;
            foreach (var t in m.Topology.Devices)
            {
                if (t == p || t.Bus != p.Bus || t.Address.Device != p.Address.Device || Acs(t)) continue;
                var r = AliasGroup(t, seen);
                if (r is not null) return r;
            }
            return null;
        }
        foreach (var dev in m.Topology.Devices)
        {
            RefGroup? g = null;
            PciDevice last = dev;
            int ret = PciGrouping.ForEachDmaAlias(dev, ctx, (d, _) =>
            {
                last = d;
                return groupOf.TryGetValue(d, out g) ? 1 : 0;
            });
            if (ret == 0)
            {
                var pdev = last;
                for (var bus = pdev.Bus; !bus.IsRoot && g is null; bus = bus.Parent!)
                {
                    if (bus.Self is null) continue;
                    if (Path(bus.Self)) break;
                    pdev = bus.Self;
                    groupOf.TryGetValue(pdev, out g);
                }
                if (g is null)
                {
                    var seen = new bool[256];
                    g = AliasGroup(pdev, seen) ?? FuncGroup(pdev, seen) ?? new RefGroup { Id = next++ };
                }
            }
            groupOf[dev] = g!;
            result.Add((dev, g!));
        }
        return result;
    }

    internal static Machine RandomMachine(int seed)
    {
        var rnd = new Random(seed);
        var t = T.New();
        int nextBus = 1;
        var acsChoices = new (AcsFlags, AcsFlags)?[] { null, T.AcsOn, T.AcsCapOnly, (AcsFlags.Required, AcsFlags.SV | AcsFlags.CR) };
        ushort[] vendors = [T.Other, T.Intel, T.Qemu, 0x1180, 0x1b4b, 0x10b5, AcsQuirks.VendorZhaoxin, AcsQuirks.VendorWangxun];
        void Fill(int bus, int depth)
        {
            int slots = rnd.Next(1, 5);
            for (int s = 0; s < slots; s++)
            {
                int dev = rnd.Next(0, 32);
                int fns = rnd.Next(0, 3) == 0 ? rnd.Next(2, 5) : 1;
                for (int f = 0; f < fns; f++)
                {
                    string a = $"{bus:x2}:{dev:x2}.{f}";
                    if (t.Build().Topology.Find(PciAddress.Parse(a)) is not null) continue;
                    int kind = depth < 3 && nextBus < 200 ? rnd.Next(0, 6) : rnd.Next(0, 3);
                    var acs = acsChoices[rnd.Next(acsChoices.Length)];
                    ushort v = vendors[rnd.Next(vendors.Length)];
                    ushort d = v switch { 0x1180 => (ushort)0xe832, 0x1b4b => (ushort)0x9230, 0x10b5 => (ushort)0x87b0, _ => (ushort)rnd.Next(0, 0x20) };
                    switch (kind)
                    {
                        case 0: t.Dev(a, v, d, PcieType.Endpoint, acs, mf: fns > 1); break;
                        case 1: t.Dev(a, v, d, PcieType.None, mf: fns > 1); break;
                        case 2: t.Dev(a, v, d, bus == 0 ? PcieType.RcEnd : PcieType.Endpoint, acs, mf: fns > 1); break;
                        default:
                        {
                            int sec = nextBus++;
                            var type = bus == 0 ? PcieType.RootPort : kind switch { 3 => PcieType.Downstream, 4 => PcieType.PciBridge, _ => PcieType.Upstream };
                            if (kind == 5 && bus != 0 && rnd.Next(2) == 0) type = PcieType.None;
                            t.Dev(a, v, d, type, type is PcieType.PciBridge or PcieType.None ? null : acs, sec: sec, sub: sec, mf: fns > 1, parent: null);
                            Fill(sec, depth + 1);
                            break;
                        }
                    }
                }
            }
        }
        Fill(0, 0);
        return t.Build();
    }

    [Fact]
    public void OptimizedEngineMatchesANaiveTranscriptionOfTheKernelOnRandomTopologies()
    {
        int devices = 0, shared = 0, aliasQuirks = 0;
        for (int seed = 1; seed <= 150; seed++)
        {
            var m = RandomMachine(seed);
            var r = ModelGrouping.Compute(m);
            devices += m.Topology.Count;
            shared += r.Groups.Count(g => g.Devices.Count > 1);
            aliasQuirks += m.Topology.Devices.Count(d => DmaAliasQuirks.For(d) is not null);
            var ctx = GroupingContext.Create(m, KernelCommandLine.Parse(m.CommandLine), true);
            var reference = Reference(m, ctx);
            foreach (var (dev, g) in reference)
                Assert.True(g.Id == r.GroupOf(dev.Address)!.Id, $"seed {seed}: {dev.Address} reference group {g.Id}, engine {r.GroupOf(dev.Address)!.Id}");
        }
        // The generator must exercise the interesting paths, or the comparison proves little.
        Assert.True(devices > 1000, $"{devices} devices");
        Assert.True(shared > 100, $"{shared} shared groups");
        Assert.True(aliasQuirks > 20, $"{aliasQuirks} alias-quirk devices");
    }
}
