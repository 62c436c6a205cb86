using IommuKit.Core;
using IommuKit.Drivers;
using IommuKit.Paging;
using IommuKit.Simulation;
using Xunit;
using static IommuKit.Tests.Core.CoreRig;

namespace IommuKit.Tests.Core;

/// <summary>With an emulated unit attached, the core's domain switches program the unit's context entries.</summary>
public class HardwareContextTests
{
    private static (IommuCore Core, IommuHardware Hw, IommuDevice Lpc, IommuDevice Nic, VtdDriver Drv) Boot(KernelVersion k)
    {
        var topo = PciTopo(("0000:00:1f.0", 0x060100, 0x8086, 0x2918, false), ("0000:00:02.0", 0x020000, 0x8086, 0x10d3, false));
        var core = NewCore(kernel: k);
        var hw = new IommuHardware(name: "dmar0");
        var drv = new VtdDriver([new VtdUnit("dmar0", [], IncludeAll: true)], f => IoPageTables.Create(f)) { Hardware = new Dictionary<string, IommuHardware> { ["dmar0"] = hw } };
        var devs = topo.Devices.Select(p => IommuDevice.FromPci(p)).ToArray();
        CoreRig.Boot(core, drv, devs);
        return (core, hw, devs.Single(d => d.Name == "0000:00:1f.0"), devs.Single(d => d.Name == "0000:00:02.0"), drv);
    }

    [Fact]
    public void BootProgramsEveryDeviceWithItsGroupsDefaultDomainAndDirectRegionsTranslate()
    {
        var (_, hw, lpc, nic, drv) = Boot(KernelVersion.V6_12);
        var ctx = hw.GetContext(lpc.Pci!.Address.RequesterId)!;
        Assert.Equal(IommuContextKind.Translated, ctx.Kind);
        Assert.Equal(drv.DomainIdOn("dmar0", lpc.Group!.DefaultDomain!), ctx.DomainId);
        var t = hw.Translate(lpc.Pci.Address.RequesterId, 0x12_3456, write: true); // inside the ISA 0-16 MiB direct region
        Assert.True(t.IsMemory);
        Assert.Equal(0x12_3456UL, t.Phys);
        var miss = hw.Translate(nic.Pci!.Address.RequesterId, 0x12_3456, write: true); // nothing mapped for the NIC yet
        Assert.Equal(DmaTranslationKind.Fault, miss.Kind);
    }

    [Fact]
    public void ClaimBlocksTheDeviceAndReleaseRestoresTranslation()
    {
        var (core, hw, _, nic, _) = Boot(KernelVersion.V6_12);
        ushort rid = nic.Pci!.Address.RequesterId;
        Assert.True(core.GroupClaimDmaOwner(nic.Group!, new object()).IsOk);
        Assert.Equal(IommuContextKind.Blocked, hw.GetContext(rid)!.Kind);
        core.GroupReleaseDmaOwner(nic.Group!);
        Assert.Equal(IommuContextKind.Translated, hw.GetContext(rid)!.Kind);
    }

    [Fact]
    public void IdentityTypeProgramsPassThroughAndRemovalClearsTheContext()
    {
        var (core, hw, _, nic, _) = Boot(KernelVersion.V6_12);
        ushort rid = nic.Pci!.Address.RequesterId;
        Assert.True(core.StoreType(nic.Group!, "identity").IsOk);
        Assert.Equal(IommuContextKind.Identity, hw.GetContext(rid)!.Kind);
        Assert.Equal(0x4000_1234UL, hw.Translate(rid, 0x4000_1234, write: false).Phys);
        core.RemoveDevice(nic);
        Assert.Null(hw.GetContext(rid));
    }

    [Fact]
    public void UserDomainMappingsAreWhatTheDeviceSees()
    {
        var (core, hw, _, nic, _) = Boot(KernelVersion.V6_1);
        ushort rid = nic.Pci!.Address.RequesterId;
        Assert.True(core.GroupClaimDmaOwner(nic.Group!, new object()).IsOk);
        // 6.1 has no static blocked domain: an empty paging domain blocks everything.
        Assert.Equal(DmaTranslationKind.Fault, hw.Translate(rid, 0x1000, write: false).Kind);
        Assert.True(core.AllocPagingDomain(nic, out var user).IsOk);
        Assert.Equal(Errno.Ok, user!.Map(0x1_0000, 0x8000_0000, 0x1000, IommuProt.Read | IommuProt.Write));
        Assert.True(core.AttachGroup(user, nic.Group!).IsOk);
        var t = hw.Translate(rid, 0x1_0010, write: true);
        Assert.True(t.IsMemory);
        Assert.Equal(0x8000_0010UL, t.Phys);
    }
}
