using IommuKit.Pci;
using Xunit;

namespace IommuKit.Tests.Pci;

public class PciAddressTests
{
    [Theory]
    [InlineData("00:1f.3", 0, 0x00, 0x1f, 3, "0000:00:1f.3")]
    [InlineData("0000:00:1f.3", 0, 0x00, 0x1f, 3, "0000:00:1f.3")]
    [InlineData("10000:e1:00.0", 0x10000, 0xe1, 0, 0, "10000:e1:00.0")]
    [InlineData("0001:ff:1f.7", 1, 0xff, 0x1f, 7, "0001:ff:1f.7")]
    public void ParsesShortAndFullFormsAndPrintsFullForm(string text, int domain, int bus, int dev, int fn, string full)
    {
        var a = PciAddress.Parse(text);
        Assert.Equal(new PciAddress(domain, (byte)bus, (byte)dev, (byte)fn), a);
        Assert.Equal(full, a.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("00:20.0")]
    [InlineData("00:1f.8")]
    [InlineData("100:1f.0")]
    [InlineData("00:1f")]
    [InlineData("zz:00.0")]
    [InlineData("0000:00:1f.3x")]
    public void RejectsMalformedAddresses(string text) => Assert.False(PciAddress.TryParse(text, out _));

    [Fact]
    public void ShortFormOmitsDomainZeroOnly()
    {
        Assert.Equal("00:1f.3", PciAddress.Parse("0000:00:1f.3").ToShortString());
        Assert.Equal("0001:00:1f.3", PciAddress.Parse("0001:00:1f.3").ToShortString());
    }

    [Fact]
    public void RequesterIdPacksBusDeviceFunction()
    {
        var a = PciAddress.Parse("06:1f.7");
        Assert.Equal(0xff, a.Devfn);
        Assert.Equal(0x06ff, a.RequesterId);
        Assert.Equal(a, PciAddress.FromDevfn(0, 6, 0xff));
    }
}
