using System.Collections.Concurrent;
using System.Diagnostics;
using IommuKit.Core;
using IommuKit.Simulation;
using Xunit;
using static IommuKit.Tests.Core.CoreRig;

namespace IommuKit.Tests.Core;

/// <summary>
/// Threads bind, unbind, claim, release, attach, change types and hot-plug at once on one core; after every step the
/// invariants must hold, and every thread must finish (a deadlock fails the test through the join timeout). The devices
/// sit behind an emulated unit, and one more thread churns domains on its own device past the 65,536 domain ids a unit
/// has, so ids must be reused while everything else changes around them.
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
        var hw = new IommuHardware(name: "unit0");
        var drv = new TestDriver { Hardware = new Dictionary<string, IommuHardware> { ["unit0"] = hw } };
        int nextStreamId = 0;
        IommuDevice UnitDev(string name) => new(name, IommuBusKind.Platform, instance: "unit0", streamIds: [(uint)Interlocked.Increment(ref nextStreamId)]);
        var devices = new List<IommuDevice>();
        var churnDev = UnitDev("churn");
        for (int i = 0; i < 12; i++)
        {
            var d = UnitDev($"d{i}");
            // Shared groups plus some groups of one (the 5.11-6.3 type rules only change those).
            drv.GroupKey[d.Name] = i % 4 == 3 ? d.Name : $"g{i % 5}";
            if (i % 4 == 0) drv.Regions[d.Name] = [Region(0x100_0000UL * (ulong)(i + 1), 0x100_0000UL * (ulong)(i + 1) + 0x3fff, ReservedRegionType.DirectRelaxable)];
            devices.Add(d);
        }
        Boot(core, drv, [.. devices, churnDev]);
        var live = new ConcurrentDictionary<IommuDevice, bool>(devices.Select(d => KeyValuePair.Create(d, true)));
        var failures = new ConcurrentQueue<string>();
        var ops = new ConcurrentDictionary<string, int>();
        var succeeded = new ConcurrentDictionary<string, int>();
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
                    bool ok = false;
                    switch (op)
                    {
                        case 0: ok = core.BindDriver(dev, Drivers[rng.Next(Drivers.Length)]).IsOk; break;
                        case 1: core.UnbindDriver(dev); break;
                        case 2: ok = group is not null && core.GroupClaimDmaOwner(group, cookie).IsOk; break;
                        case 3: if (group is not null && ReferenceEquals(group.Owner, cookie)) core.GroupReleaseDmaOwner(group); break;
                        case 4: ok = core.DeviceClaimDmaOwner(dev, cookie).IsOk; break;
                        case 5: if (group is not null && ReferenceEquals(group.Owner, cookie)) core.DeviceReleaseDmaOwner(dev); break;
                        case 6:
                            if (group is not null && core.AllocPagingDomain(dev, out var dom).IsOk)
                            {
                                if (ok = core.AttachGroup(dom!, group).IsOk) myDomains.Add((dom!, group));
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
                        case 8: ok = group is not null && core.StoreType(group, Types[rng.Next(Types.Length)]).IsOk; break;
                        case 9:
                        {
                            var n = UnitDev($"h{Interlocked.Increment(ref nextDevice)}");
                            lock (drv.GroupKey) drv.GroupKey[n.Name] = rng.Next(2) == 0 ? n.Name : $"g{rng.Next(7)}";
                            if (ok = core.HotplugAdd(n).IsOk) live[n] = true;
                            else core.RemoveDevice(n);
                            break;
                        }
                        case 10:
                            if (ok = live.Count > 4 && live.TryRemove(dev, out _)) core.RemoveDevice(dev);
                            break;
                        default:
                            if (group is not null) _ = core.ReadReservedRegions(group);
                            break;
                    }
                    ops.AddOrUpdate(name, 1, (_, c) => c + 1);
                    if (ok) succeeded.AddOrUpdate(name, 1, (_, c) => c + 1);
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

        // Domain churn: allocate, attach, detach, free on a device the other workers never pick, past the id space of a
        // unit. Bounded by its count, and in time by the join below.
        const int ChurnAllocations = (1 << 16) + 1000;
        int churned = 0;
        void Churn()
        {
            try
            {
                var group = churnDev.Group!;
                while (churned < ChurnAllocations && failures.IsEmpty)
                {
                    var a = core.AllocPagingDomain(churnDev, out var dom);
                    if (!a.IsOk) { failures.Enqueue($"churn alloc {churned}: {a}"); break; }
                    churned++;
                    var r = core.AttachGroup(dom!, group);
                    if (!r.IsOk) { failures.Enqueue($"churn attach {churned}: {r}"); break; }
                    if (hw.GetContext((ushort)churnDev.StreamIds[0]) is not { Kind: IommuContextKind.Translated } ctx || ctx.Table != dom!.PageTable)
                    {
                        failures.Enqueue($"churn {churned}: the unit does not translate through the attached domain");
                        break;
                    }
                    core.DetachGroup(dom!, group);
                    core.FreeDomain(dom!);
                }
            }
            catch (Exception ex)
            {
                failures.Enqueue($"churn: {ex}");
            }
        }

        var threads = Enumerable.Range(1, 4).Select(i => new Thread(() => Worker(i * 7919)) { IsBackground = true }).ToList();
        threads.Add(new Thread(Churn) { IsBackground = true });
        foreach (var t in threads) t.Start();
        foreach (var t in threads)
            Assert.True(t.Join(TimeSpan.FromSeconds(120)), "a worker did not finish: deadlock or livelock");
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(10)));
        Assert.Equal(ChurnAllocations, churned);
        Assert.Empty(core.CheckInvariants());
        Assert.True(ops.Count >= 10, $"only {string.Join(", ", ops.Keys)} ran");
        // Not vacuous: every kind of state change did happen (a run where all claims or type writes fail proves nothing).
        foreach (var kind in new[] { "bind", "group-claim", "device-claim", "attach", "type", "hotplug", "remove" })
            Assert.True(succeeded.GetValueOrDefault(kind) > 0, $"no {kind} succeeded: {string.Join(", ", succeeded.Select(kv => $"{kv.Key}={kv.Value}"))}");
    }
}

/// <summary>The invariant check the stress test relies on reports each kind of broken state (so the stress test can fail).</summary>
public class InvariantCheckTests
{
    private static (IommuCore Core, TestDriver Drv, IommuDevice A, IommuDevice B) Booted()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = "g";
        drv.Regions["a"] = [Region(0x7000_0000, 0x7000_0fff, ReservedRegionType.DirectRelaxable)];
        var a = Dev("a");
        var b = Dev("b");
        Boot(core, drv, a, b);
        Assert.Empty(core.CheckInvariants());
        return (core, drv, a, b);
    }

    [Fact]
    public void ADeviceOffItsGroupsDomainIsReported()
    {
        var (core, _, a, b) = Booted();
        core.AllocPagingDomain(a, out var other);
        using (new GroupLockScope(a.Group!)) b.AttachedDomain = other;
        Assert.Contains(core.CheckInvariants(), p => p.StartsWith("b is attached to", StringComparison.Ordinal));
    }

    [Fact]
    public void AnOwnerCountThatDoesNotMatchTheBoundDriversIsReported()
    {
        var (core, _, a, _) = Booted();
        Assert.True(core.BindDriver(a, "e1000e").IsOk);
        using (new GroupLockScope(a.Group!)) a.Group!.OwnerCntLocked = 2;
        Assert.Contains(core.CheckInvariants(), p => p.Contains("owner_cnt 2 but 1 DMA-API driver(s) bound", StringComparison.Ordinal));
    }

    [Fact]
    public void AKernelDriverInAUserOwnedGroupIsReported()
    {
        var (core, _, a, b) = Booted();
        Assert.True(core.GroupClaimDmaOwner(a.Group!, new object()).IsOk);
        using (new GroupLockScope(a.Group!)) b.DriverName = "e1000e";
        Assert.Contains(core.CheckInvariants(), p => p.Contains("is user-owned but 1 DMA-API driver(s) are bound", StringComparison.Ordinal));
    }

    [Fact]
    public void AnUnmappedDirectRegionIsReported()
    {
        var (core, _, a, _) = Booted();
        var def = a.Group!.DefaultDomain!;
        Assert.Equal(Errno.Ok, def.PageTable!.Unmap(0x7000_0000, 0x1000));
        Assert.Contains(core.CheckInvariants(), p => p.StartsWith("a: direct region", StringComparison.Ordinal));
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
