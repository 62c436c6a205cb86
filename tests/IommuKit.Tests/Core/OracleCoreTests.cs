using Xunit;
using System.Text.Json;
using IommuKit.Host;
using IommuKit.Core;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Tests.Core;

/// <summary>
/// The core against the kernel: for every captured machine, each group's predicted <c>type</c> and
/// <c>reserved_regions</c> equal the kernel's, and every recorded <c>type</c> write is reproduced in order.
/// </summary>
public class OracleCoreTests
{
    /// <summary>
    /// e_cachingmode was captured without the unit's cap register, so the caching-mode bit that makes VT-d strict is
    /// not in the snapshot; h_cachingmode_regs is the same boot with the registers and is checked instead.
    /// </summary>
    private const string KnownGapNoCapRegister = "e_cachingmode";

    public static IEnumerable<object[]> Machines() => Fixtures.OracleMachines().Where(m => m != KnownGapNoCapRegister).Select(m => new object[] { m });

    public static IEnumerable<object[]> TypeWriteMachines() =>
        Fixtures.OracleMachines().Where(m => Expected(m).RootElement.GetProperty("type_writes").GetArrayLength() > 0).Select(m => new object[] { m });

    internal static JsonDocument Expected(string name) => JsonDocument.Parse(File.ReadAllText(Fixtures.OracleExpected(name)));

    /// <summary>
    /// Devices the capture hot-plugged after boot (tests/fixtures/oracle/MACHINES.md: the init ran QEMU device_add into
    /// root ports 00:08.0 and 00:09.0 after the kernel booted); a snapshot does not record arrival times.
    /// </summary>
    private static readonly Dictionary<string, PciAddress[]> HotplugAfterBoot = new()
    {
        ["h_hotplug_igfx"] = [PciAddress.Parse("0000:02:00.0"), PciAddress.Parse("0000:03:00.0")],
        ["h_k612_hotplug_igfx"] = [PciAddress.Parse("0000:02:00.0"), PciAddress.Parse("0000:03:00.0")],
    };

    internal static HostModel Model(string name, GroupSource grouping = GroupSource.Recorded) =>
        HostModel.FromMachine(MachineSource.Load(Fixtures.OracleTarball(name)),
            options: new HostModelOptions(Groups: grouping, HotplugAfterBoot: HotplugAfterBoot.GetValueOrDefault(name)));

    private static void AssertGroupsMatch(string name, HostModel model)
    {
        using var doc = Expected(name);
        var groups = doc.RootElement.GetProperty("groups");
        var predicted = model.Core.Groups.Where(g => g.Devices.Count > 0).ToList();
        Assert.Equal(groups.GetArrayLength(), predicted.Count);
        foreach (var g in groups.EnumerateArray())
        {
            var devs = g.GetProperty("devices").EnumerateArray().Select(d => d.GetString()!).ToList();
            var group = model.GroupOf(PciAddress.Parse(devs[0]));
            Assert.True(group is not null, $"{name}: {devs[0]} has no predicted group");
            Assert.Equal(devs, group!.Devices.Select(d => d.Name).Order().ToList());
            Assert.Equal(g.GetProperty("type").GetString(), model.Core.ReadType(group));
            var regions = g.GetProperty("reserved_regions").EnumerateArray()
                .Select(r => $"{r.GetProperty("start").GetString()} {r.GetProperty("end").GetString()} {r.GetProperty("type").GetString()}").ToList();
            Assert.Equal(regions, model.Core.ReadReservedRegions(group));
        }
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void ARecordedReplayNumbersEveryGroupAsTheKernelDid(string name)
    {
        var machine = MachineSource.Load(Fixtures.OracleTarball(name));
        if (machine.KernelGroups is not { Count: > 0 } kg) return;
        // Reverse the numbers, so agreement cannot come from the model happening to probe in the kernel's order.
        int top = kg.Max(g => g.Id);
        var reversed = machine with { KernelGroups = kg.Select(g => g with { Id = top - g.Id }).ToList() };
        foreach (var m in new[] { machine, reversed })
        {
            var model = HostModel.FromMachine(m, options: new HostModelOptions(Groups: GroupSource.Recorded,
                HotplugAfterBoot: HotplugAfterBoot.GetValueOrDefault(name)));
            foreach (var g in m.KernelGroups!)
            {
                var group = model.GroupOf(g.Devices[0]);
                Assert.True(group is not null, $"{name}: {g.Devices[0]} has no group");
                Assert.Equal(g.Id, group!.Id);
                Assert.Same(group, model.ResolveGroup(g.Id));
            }
        }
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void PredictedTypeAndReservedRegionsEqualTheKernelsForEveryGroup(string name) =>
        AssertGroupsMatch(name, Model(name, GroupSource.Recorded));

    [Theory]
    [MemberData(nameof(Machines))]
    public void PredictionWithTheModelsGroupingEqualsTheKernelsGroupsTypesAndRegions(string name) =>
        AssertGroupsMatch(name, Model(name, GroupSource.Model));

    [Fact]
    public void CachingModeCaptureWithoutCapRegisterIsReportedAsAnAssumption()
    {
        var model = Model(KnownGapNoCapRegister);
        Assert.Contains(model.Notes, n => n.Contains("no cap register", StringComparison.Ordinal));
    }

    [Fact]
    public void CachingModeBitInTheCapRegisterMakesEveryGroupStrictDma()
    {
        var model = Model("h_cachingmode_regs");
        Assert.False(model.Core.Defaults.DmaStrict); // strict comes from the driver (caching mode), not the command line
        Assert.True(model.Core.DmaStrict);
        Assert.All(model.Core.Groups, g => Assert.Equal("DMA", model.Core.ReadType(g)));
        Assert.Contains(model.Core.Log, l => l.Contains("IOMMU batching disallowed due to virtualization", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(TypeWriteMachines))]
    public void EveryRecordedTypeWriteIsReproducedInOrderWithUnbindAndRebind(string name)
    {
        using var doc = Expected(name);
        var model = Model(name);
        var core = model.Core;
        var tests = doc.RootElement.GetProperty("type_test_groups").EnumerateArray().ToDictionary(t => t.GetProperty("first").GetString()!);
        int n = 0;
        foreach (var w in doc.RootElement.GetProperty("type_writes").EnumerateArray())
        {
            string first = w.GetProperty("device").GetString()!;
            var dev = model.Device(PciAddress.Parse(first))!;
            var group = dev.Group!;
            var t = tests[first];
            string state = w.GetProperty("state").GetString()!;
            if (state == "unbound" && dev.DriverName is not null) core.UnbindDriver(dev);
            if (state == "rebound" && dev.DriverName is null)
            {
                var rebind = t.GetProperty("rebind");
                Assert.True(core.BindDriver(dev, rebind.GetProperty("driver").GetString()!).IsOk);
                Assert.Equal(rebind.GetProperty("type_now").GetString(), core.ReadType(group));
            }
            string where = $"{name} write #{n} to group {w.GetProperty("group").GetInt32()} ({first}, {state}) of \"{w.GetProperty("value").GetString()}\"";
            Assert.True(w.GetProperty("before").GetString() == core.ReadType(group), $"{where}: type before");
            var r = core.StoreType(group, w.GetProperty("value").GetString()!);
            string result = r.IsOk ? "ok" : r.Errno.ToString();
            Assert.True(w.GetProperty("result").GetString() == result, $"{where}: expected {w.GetProperty("result").GetString()}, got {r}");
            Assert.True(w.GetProperty("after").GetString() == core.ReadType(group), $"{where}: type after");
            Assert.Empty(core.CheckInvariants());
            n++;
        }
        Assert.True(n > 0);
    }
}
