using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Passthrough;

public class PciIdsTests
{
    private const string Sample =
        "# comment\n" +
        "8086  Intel Corporation\n" +
        "\t1901  6th-10th Gen Core Processor PCIe Controller (x16)\n" +
        "\t\t1043 8694  PRIME H310M-D\n" +
        "10de  NVIDIA Corporation\n" +
        "C 03  Display controller\n" +
        "\t00  VGA compatible controller\n" +
        "\t\t00  VGA controller\n" +
        "C 06  Bridge\n" +
        "\t04  PCI bridge\n";

    [Fact]
    public void VendorDeviceAndSubclassNamesAreFound()
    {
        var ids = PciIds.Parse(Sample);
        Assert.Equal("Intel Corporation", ids.Vendor(0x8086));
        Assert.Equal("6th-10th Gen Core Processor PCIe Controller (x16)", ids.Device(0x8086, 0x1901));
        Assert.Equal("PCI bridge", ids.Class(0x060400));
        Assert.Equal("VGA compatible controller", ids.Class(0x030000));
    }

    [Fact]
    public void UnknownSubclassFallsBackToTheBaseClassNameLikePciutils()
    {
        var ids = PciIds.Parse(Sample);
        Assert.Equal("Bridge", ids.Class(0x060000));
        Assert.Null(ids.Class(0x020000));
    }

    [Fact]
    public void SubsystemLinesDoNotBecomeDevices()
    {
        var ids = PciIds.Parse(Sample);
        Assert.Equal(1, ids.DeviceCount);
        Assert.Null(ids.Device(0x8086, 0x1043));
    }

    [Fact]
    public void NameCombinesVendorAndDeviceOrSaysDevice()
    {
        var ids = PciIds.Parse(Sample);
        Assert.Equal("Intel Corporation 6th-10th Gen Core Processor PCIe Controller (x16)", ids.Name(0x8086, 0x1901));
        Assert.Equal("NVIDIA Corporation Device", ids.Name(0x10de, 0x1b80));
        Assert.Null(ids.Name(0x1234, 0x1111));
    }

    [Fact]
    public void MalformedLinesAreSkipped()
    {
        var ids = PciIds.Parse("zzzz  Bad\n80  short\n\tabcd  orphan device\n1af4  Red Hat, Inc.\n\tXYZW  bad\n");
        Assert.Equal(1, ids.VendorCount);
        Assert.Equal(0, ids.DeviceCount);
    }

    [Fact]
    public void MissingFileLoadsAsNull() => Assert.Null(PciIds.TryLoad("/nonexistent/pci.ids"));
}
