using IommuKit.Core;
using IommuKit.Drivers;
using IommuKit.Grouping;
using IommuKit.Paging;
using IommuKit.Pci;
using Xunit;
using IommuKit.Tests.Grouping;

namespace IommuKit.Tests.Core;

/// <summary>What the boot looks up once instead of per device keeps the per-device answers: the DMAR unit of a device
/// (device_lookup_iommu) and the group callbacks of the kernel's pci_device_group resolver.</summary>
public class ProbeLookupTests
{
    private static IommuDevice Dev(string bdf) =>
        IommuDevice.FromPci(T.New().Dev(bdf, T.Qemu, 0x0001, PcieType.Endpoint).Build().Topology.Devices[0]);

    [Fact]
    public void ADeviceBelongsToTheFirstUnitInDrhdOrderWhoseScopeListsItElseToTheIncludeAllUnit()
    {
        var a = PciAddress.Parse("0000:00:02.0");
        var b = PciAddress.Parse("0000:00:03.0");
        var drv = new VtdDriver(
        [
            new VtdUnit("dmar0", [a]),
            new VtdUnit("dmar1", [], IncludeAll: true),
            new VtdUnit("dmar2", [a, b]),
            new VtdUnit("dmar3", [], IncludeAll: true),
        ], f => IoPageTables.Create(f));
        Assert.Equal("dmar0", drv.UnitOf(Dev("00:02.0"))!.Name); // listed by dmar0 and dmar2: the first
        Assert.Equal("dmar2", drv.UnitOf(Dev("00:03.0"))!.Name); // an explicit scope wins over an earlier INCLUDE_ALL
        Assert.Equal("dmar1", drv.UnitOf(Dev("00:04.0"))!.Name); // no scope lists it: the first INCLUDE_ALL unit

        var scopedOnly = new VtdDriver([new VtdUnit("dmar0", [a])], f => IoPageTables.Create(f));
        Assert.Null(scopedOnly.UnitOf(Dev("00:04.0")));
        Assert.Equal(Errno.ENODEV, scopedOnly.ProbeDevice(Dev("00:04.0")).Errno);
    }

    [Fact]
    public void OneKernelResolverSharedByTheDriversOfTwoCoresGivesEachCoreItsOwnGroups()
    {
        // Two functions of one slot without ACS share a group (pci_device_group's function search), which only works
        // when each core's lookups reach that core's groups.
        var machine = T.New().RootPort("00:1c.0", sec: 1, sub: 1, acs: T.AcsOn)
            .Dev("01:00.0", T.Qemu, 0x0001, PcieType.Endpoint, mf: true)
            .Dev("01:00.1", T.Qemu, 0x0001, PcieType.Endpoint, mf: true).Build();
        var cmd = KernelCommandLine.Parse("");
        var resolver = PciGroupResolvers.Kernel(GroupingContext.Create(machine, cmd, iommuActive: true));
        IommuCore Boot()
        {
            var core = new IommuCore(KernelVersion.V6_12, cmd);
            var drv = new VtdDriver([new VtdUnit("dmar0", [], IncludeAll: true)], f => IoPageTables.Create(f), resolver);
            CoreRig.Boot(core, drv, [.. machine.Topology.Devices.Select(p => IommuDevice.FromPci(p))]);
            return core;
        }
        var first = Boot();
        var second = Boot();
        foreach (var core in (IommuCore[])[first, second])
        {
            var f0 = core.FindDevice(PciAddress.Parse("0000:01:00.0"))!;
            var f1 = core.FindDevice(PciAddress.Parse("0000:01:00.1"))!;
            Assert.Same(f0.Group, f1.Group);
            Assert.Same(f0.Group, core.FindGroup(f0.Group!.Id));
        }
        Assert.NotSame(first.FindDevice(PciAddress.Parse("0000:01:00.0"))!.Group, second.FindDevice(PciAddress.Parse("0000:01:00.0"))!.Group);
    }

    [Fact]
    public void ADriversContextsTakenBeforeRegistrationShowTheContextsItProgramsAtBoot()
    {
        // Registration sizes the driver's context table for the core's devices; the view handed out earlier follows it.
        var drv = new VtdDriver([new VtdUnit("dmar0", [], IncludeAll: true)], f => IoPageTables.Create(f));
        var contexts = drv.Contexts;
        Assert.Empty(contexts);
        var core = new IommuCore(KernelVersion.V6_12, KernelCommandLine.Parse(""));
        var devs = new[] { Dev("00:02.0"), Dev("00:03.0") };
        CoreRig.Boot(core, drv, devs);
        Assert.Equal(2, contexts.Count);
        Assert.All(devs, d => Assert.Same(d.Group!.Domain, contexts[d]));
        Assert.True(contexts.TryGetValue(devs[0], out var dom) && dom == devs[0].AttachedDomain);
    }
}
