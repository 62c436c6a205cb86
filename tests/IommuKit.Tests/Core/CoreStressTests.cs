using System.Collections.Concurrent;
using System.Diagnostics;
using IommuKit.Core;
using Xunit;
using static IommuKit.Tests.Core.CoreRig;

namespace IommuKit.Tests.Core;

/// <summary>
/// Threads bind, unbind, claim, release, attach, change types and hot-plug at once on one core; after every step the
/// invariants must hold, and every thread must finish (a deadlock fails the test through the join timeout).
/// </summary>
public class CoreStressTests
{
    private static readonly string[] Drivers = ["e1000e", "virtio-pci", "vfio-pci", "pcieport", "pci-stub"];
    private static readonly string[] Types = ["identity", "DMA", "DMA-FQ", "auto", "bogus"];

    [Theory]
    [InlineData(12, 1500)]
    [InlineData(1, 1000)]
    public void ConcurrentBindClaimAttachTypeChangeAndHotplugKeepTheInvariants(int minor, int milliseconds)
    {
        var core = NewCore(kernel: new KernelVersion(6, minor));
        var drv = new TestDriver();
        var devices = new List<IommuDevice>();
        for (int i = 0; i < 12; i++)
        {
            var d = Dev($"d{i}");
            drv.GroupKey[d.Name] = $"g{i % 5}";
            if (i % 4 == 0) drv.Regions[d.Name] = [Region(0x100_0000UL * (ulong)(i + 1), 0x100_0000UL * (ulong)(i + 1) + 0x3fff, ReservedRegionType.DirectRelaxable)];
            devices.Add(d);
        }
        Boot(core, drv, devices.ToArray());
        var live = new ConcurrentDictionary<IommuDevice, bool>(devices.Select(d => KeyValuePair.Create(d, true)));
        var failures = new ConcurrentQueue<string>();
        var ops = new ConcurrentDictionary<string, int>();
        int nextDevice = 100;
        var stop = Stopwatch.StartNew();

        void Worker(int seed)
        {
            var rng = new Random(seed);
            var cookie = new object();
            var myDomains = new List<(IommuDomain Domain, IommuGroup Group)>();
            try
            {
                while (stop.ElapsedMilliseconds < milliseconds && failures.IsEmpty)
                {
                    var all = live.Keys.ToArray();
                    if (all.Length == 0) break;
                    var dev = all[rng.Next(all.Length)];
                    var group = dev.Group;
                    int op = rng.Next(12);
                    string name = op switch
                    {
                        0 => "bind", 1 => "unbind", 2 => "group-claim", 3 => "group-release", 4 => "device-claim", 5 => "device-release",
                        6 => "attach", 7 => "detach", 8 => "type", 9 => "hotplug", 10 => "remove", _ => "regions",
                    };
                    switch (op)
                    {
                        case 0: core.BindDriver(dev, Drivers[rng.Next(Drivers.Length)]); break;
                        case 1: core.UnbindDriver(dev); break;
                        case 2: if (group is not null) core.GroupClaimDmaOwner(group, cookie); break;
                        case 3: if (group is not null && ReferenceEquals(group.Owner, cookie)) core.GroupReleaseDmaOwner(group); break;
                        case 4: core.DeviceClaimDmaOwner(dev, cookie); break;
                        case 5: if (group is not null && ReferenceEquals(group.Owner, cookie)) core.DeviceReleaseDmaOwner(dev); break;
                        case 6:
                            if (group is not null && core.AllocPagingDomain(dev, out var dom).IsOk)
                            {
                                if (core.AttachGroup(dom!, group).IsOk) myDomains.Add((dom!, group));
                                else core.FreeDomain(dom!);
                            }
                            break;
                        case 7:
                            if (myDomains.Count > 0)
                            {
                                var (d, g) = myDomains[^1];
                                myDomains.RemoveAt(myDomains.Count - 1);
                                if (g.Domain == d) core.DetachGroup(d, g);
                                if (g.Domain != d) core.FreeDomain(d);
                                else myDomains.Insert(0, (d, g));
                            }
                            break;
                        case 8: if (group is not null) core.StoreType(group, Types[rng.Next(Types.Length)]); break;
                        case 9:
                        {
                            var n = Dev($"h{Interlocked.Increment(ref nextDevice)}");
                            lock (drv.GroupKey) drv.GroupKey[n.Name] = $"g{rng.Next(7)}";
                            if (core.HotplugAdd(n).IsOk) live[n] = true;
                            else core.RemoveDevice(n);
                            break;
                        }
                        case 10:
                            if (live.Count > 4 && live.TryRemove(dev, out _)) core.RemoveDevice(dev);
                            break;
                        default:
                            if (group is not null) _ = core.ReadReservedRegions(group);
                            break;
                    }
                    ops.AddOrUpdate(name, 1, (_, c) => c + 1);
                    foreach (var p in core.CheckInvariants()) failures.Enqueue($"after {name} on {dev.Name}: {p}");
                }
                foreach (var (d, g) in myDomains)
                {
                    if (g.Domain == d) core.DetachGroup(d, g);
                }
            }
            catch (Exception ex)
            {
                failures.Enqueue($"thread {seed}: {ex}");
            }
        }

        var threads = Enumerable.Range(1, 4).Select(i => new Thread(() => Worker(i * 7919)) { IsBackground = true }).ToList();
        foreach (var t in threads) t.Start();
        foreach (var t in threads)
            Assert.True(t.Join(TimeSpan.FromSeconds(60)), "a worker did not finish: deadlock or livelock");
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(10)));
        Assert.Empty(core.CheckInvariants());
        Assert.True(ops.Count >= 10, $"only {string.Join(", ", ops.Keys)} ran");
    }
}

public class LockOrderCheckerTests
{
#if DEBUG
    private static void TakeGroup(IommuGroup g)
    {
        using (new GroupLockScope(g)) { }
    }

    private static void TakeDevice(IommuDevice d)
    {
        using (new DeviceLockScope(d)) { }
    }

    [Fact]
    public void DebugBuildsRefuseTwoGroupLocksAndADeviceLockTakenUnderAGroupLock()
    {
        var core = NewCore();
        var drv = new TestDriver();
        var a = Dev("a");
        var b = Dev("b");
        Boot(core, drv, a, b);
        using (new GroupLockScope(a.Group!))
        {
            TakeGroup(a.Group!); // re-entering the same group is fine
            Assert.Throws<InvalidOperationException>(() => TakeGroup(b.Group!));
            Assert.Throws<InvalidOperationException>(() => TakeDevice(b));
            Assert.Throws<InvalidOperationException>(() => core.BindDriver(b, "e1000e"));
        }
        Assert.True(core.BindDriver(b, "e1000e").IsOk);
    }
#endif
}
