using IommuKit.Pci;
using Xunit;

namespace IommuKit.Tests.Pci;

public class PciTopologyBuilderTests
{
    private static PciDeviceFacts Fn(string address, bool? mfBit = null, (byte, byte, byte)? buses = null, SriovInfo? sriov = null) => new()
    {
        Address = PciAddress.Parse(address),
        VendorId = 0x8086,
        DeviceId = 0x1234,
        HeaderLayout = buses is null ? 0 : 1,
        MultifunctionBit = mfBit,
        BridgeBuses = buses,
        Sriov = sriov,
    };

    [Fact]
    public void DevicesOfABusAreProbedBeforeTheBusesBelowIt()
    {
        var topo = new PciTopologyBuilder()
            .Add(Fn("00:01.0", buses: (0, 1, 2)))
            .Add(Fn("00:02.0"))
            .Add(Fn("01:00.0", buses: (1, 2, 2)))
            .Add(Fn("02:00.0"))
            .Build();
        Assert.Equal(["00:01.0", "00:02.0", "01:00.0", "02:00.0"], topo.Devices.Select(d => d.Address.ToShortString()));
        Assert.Equal("01:00.0", topo[PciAddress.Parse("02:00.0")].Parent!.Address.ToShortString());
        Assert.Equal(["01:00.0", "00:01.0"], PciTopology.Ancestors(topo[PciAddress.Parse("02:00.0")]).Select(d => d.Address.ToShortString()));
    }

    [Fact]
    public void FunctionsAboveZeroAreMultifunctionAndFunctionZeroFollowsItsHeaderBit()
    {
        var topo = new PciTopologyBuilder()
            .Add(Fn("00:03.0", mfBit: true)).Add(Fn("00:03.1", mfBit: false))
            .Add(Fn("00:04.0", mfBit: false))
            .Build();
        Assert.True(topo[PciAddress.Parse("00:03.0")].IsMultifunction);
        Assert.True(topo[PciAddress.Parse("00:03.1")].IsMultifunction);   // pci_scan_slot marks every later function
        Assert.False(topo[PciAddress.Parse("00:04.0")].IsMultifunction);
    }

    [Fact]
    public void WithoutTheHeaderByteSiblingFunctionsImplyMultifunction()
    {
        var topo = new PciTopologyBuilder().Add(Fn("00:05.0")).Add(Fn("00:05.2")).Add(Fn("00:06.0")).Build();
        Assert.True(topo[PciAddress.Parse("00:05.0")].IsMultifunction);
        Assert.False(topo[PciAddress.Parse("00:06.0")].IsMultifunction);
    }

    [Fact]
    public void VirtualFunctionsKnowTheirPfAndAreNeverMultifunction()
    {
        // PF 00:05.0 with two VFs enabled at offset 1, stride 1: 00:05.1 and 00:05.2 (as QEMU's SR-IOV NVMe places them).
        var sriov = new SriovInfo(0x160, TotalVfs: 4, NumVfs: 2, FirstVfOffset: 1, VfStride: 1, VfDeviceId: 0x0010);
        var topo = new PciTopologyBuilder()
            .Add(Fn("00:05.0", sriov: sriov)).Add(Fn("00:05.1")).Add(Fn("00:05.2"))
            .Build();
        var pf = topo[PciAddress.Parse("00:05.0")];
        var vf1 = topo[PciAddress.Parse("00:05.1")];
        var vf2 = topo[PciAddress.Parse("00:05.2")];
        Assert.Same(pf, vf1.PhysicalFunction);
        Assert.Equal(1, vf2.VfIndex);
        Assert.False(vf1.IsMultifunction);                 // pci_iov_add_virtfn leaves the flag clear
        Assert.False(vf2.IsMultifunction);
        Assert.False(pf.IsVirtualFunction);
        Assert.False(pf.IsMultifunction);                  // only VFs beside it: not a multifunction slot
    }

    [Fact]
    public void AHostileVfCountStillPlacesTheVfsThatExist()
    {
        var sriov = new SriovInfo(0x160, TotalVfs: 0xffff, NumVfs: 0xffff, FirstVfOffset: 1, VfStride: 1, VfDeviceId: 0);
        var topo = new PciTopologyBuilder().Add(Fn("00:05.0", sriov: sriov)).Add(Fn("00:05.1")).Build();
        // NumVfs 65,535 is walked only up to PciTopologyBuilder.MaxVfsPerPf; the VF that exists is still found.
        Assert.True(topo[PciAddress.Parse("00:05.1")].IsVirtualFunction);
    }

    [Fact]
    public void TheSameAddressTwiceIsBadInput()
    {
        var b = new PciTopologyBuilder().Add(Fn("00:01.0"));
        var ex = Assert.Throws<InputException>(() => b.Add(Fn("00:01.0")));
        Assert.Contains("0000:00:01.0", ex.Message);
    }
}
