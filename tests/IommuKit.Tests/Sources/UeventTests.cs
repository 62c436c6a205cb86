using System.Globalization;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Sources;

/// <summary>
/// Issue 11 reads a device's ids from its <c>uevent</c> (one file, drivers/pci/pci-driver.c <c>pci_uevent</c>) instead
/// of five attribute files when the directory has one, as every live sysfs does. These pin down the parse, that the
/// answer is the attributes' answer on every captured machine, and that a uevent which is not the kernel's leaves the
/// attributes in charge.
/// </summary>
public class UeventTests
{
    public static TheoryData<string> Machines() => new(Fixtures.OracleMachines());

    // A bound function and a driver-less one, as this project's CI host printed them.
    private const string Bound = "DRIVER=virtio-pci\nPCI_CLASS=FFFF00\nPCI_ID=1AF4:1045\nPCI_SUBSYS_ID=1AF4:1045\n" +
                                 "PCI_SLOT_NAME=0000:00:01.0\nMODALIAS=pci:v00001AF4d00001045sv00001AF4sd00001045bcFFscFFi00\n";
    private const string HostBridge = "PCI_CLASS=60000\nPCI_ID=8086:0D57\nPCI_SUBSYS_ID=0000:0000\nPCI_SLOT_NAME=0000:00:00.0\n" +
                                      "MODALIAS=pci:v00008086d00000D57sv00000000sd00000000bc06sc00i00\n";

    [Fact]
    public void TheKernelsLinesGiveTheIds()
    {
        Assert.True(PciUevent.TryParse(Bound, out var a));
        Assert.Equal(new PciUevent(0x1af4, 0x1045, 0x1af4, 0x1045, 0xffff00, "virtio-pci"), a);
        // "%04X" of a class below 0x100000 prints five digits: still the 24-bit class.
        Assert.True(PciUevent.TryParse(HostBridge, out var b));
        Assert.Equal(new PciUevent(0x8086, 0x0d57, 0, 0, 0x060000), b);
        Assert.Null(b.Driver); // no DRIVER= line: nothing said about a driver
    }

    [Theory]
    [InlineData("PCI_ID=8086:0D57\nPCI_SUBSYS_ID=0000:0000\n")]                          // no class
    [InlineData("PCI_CLASS=60000\nPCI_SUBSYS_ID=0000:0000\n")]                           // no id
    [InlineData("PCI_CLASS=60000\nPCI_ID=8086:0D57\n")]                                  // no subsystem
    [InlineData("PCI_CLASS=60000\nPCI_CLASS=60000\nPCI_ID=8086:0D57\nPCI_SUBSYS_ID=0000:0000\n")] // twice
    [InlineData("PCI_CLASS=0x60000\nPCI_ID=8086:0D57\nPCI_SUBSYS_ID=0000:0000\n")]       // a prefix the kernel never prints
    [InlineData("PCI_CLASS=1060000\nPCI_ID=8086:0D57\nPCI_SUBSYS_ID=0000:0000\n")]       // more than 24 bits
    [InlineData("PCI_CLASS=60000\nPCI_ID=8086-0D57\nPCI_SUBSYS_ID=0000:0000\n")]         // not a pair
    [InlineData("PCI_CLASS=60000\nPCI_ID=8086:D57\nPCI_SUBSYS_ID=0000:0000\n")]          // not four digits
    [InlineData("PCI_CLASS=60000\nPCI_ID= 8086:0D57\nPCI_SUBSYS_ID=0000:0000\n")]        // a blank
    [InlineData("PCI_CLASS=\nPCI_ID=8086:0D57\nPCI_SUBSYS_ID=0000:0000\n")]              // empty
    [InlineData("DRIVER=a\nDRIVER=b\nPCI_CLASS=60000\nPCI_ID=8086:0D57\nPCI_SUBSYS_ID=0000:0000\n")] // two drivers
    [InlineData("")]
    public void AnythingButTheKernelsFormatIsNotAnAnswer(string text) => Assert.False(PciUevent.TryParse(text, out _));

    [Fact]
    public void OtherLinesAndCrLfAreIgnored() =>
        Assert.True(PciUevent.TryParse("MAJOR=1\r\nPCI_CLASS=60000\r\nnoise\r\nPCI_ID=8086:0D57\r\nPCI_SUBSYS_ID=0000:0000\r\n", out _));

    /// <summary>What pci_uevent prints for the ids the attribute files of <paramref name="dir"/> hold.</summary>
    private static string UeventOf(string dir)
    {
        uint Hex(string name) => uint.Parse(File.ReadAllText(Path.Combine(dir, name)).Trim()[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        string? link = new FileInfo(Path.Combine(dir, "driver")).LinkTarget;
        string driver = link is null ? "" : $"DRIVER={Path.GetFileName(link)}\n";
        return driver + $"PCI_CLASS={Hex("class"):X4}\nPCI_ID={Hex("vendor"):X4}:{Hex("device"):X4}\n" +
               $"PCI_SUBSYS_ID={Hex("subsystem_vendor"):X4}:{Hex("subsystem_device"):X4}\nPCI_SLOT_NAME={Path.GetFileName(dir)}\n";
    }

    // The directories the device links of sys/bus/pci/devices lead to (a recursive search of sys/devices would follow
    // the tree's directory links round in circles).
    private static IEnumerable<string> DeviceDirs(string root)
    {
        string devices = Path.Combine(root, SysfsReader.DevicesDir);
        foreach (var entry in Directory.GetFileSystemEntries(devices))
        {
            string? target = new FileInfo(entry).LinkTarget;
            string dir = target is null ? entry : Path.GetFullPath(Path.Combine(devices, target));
            if (File.Exists(Path.Combine(dir, "vendor")) && File.Exists(Path.Combine(dir, "class"))) yield return dir;
        }
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void EveryCapturedMachineReadsTheSameWithTheUeventsALiveSysfsHas(string name)
    {
        string dir = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball(name));
        try
        {
            var before = SysfsReader.Read(new DirectoryFileTree(dir, name), name);
            int written = 0;
            foreach (var d in DeviceDirs(dir))
            {
                File.WriteAllText(Path.Combine(d, "uevent"), UeventOf(d));
                written++;
            }
            Assert.True(written > 0, $"{name}: no device directory with id attributes");
            var after = SysfsReader.Read(new DirectoryFileTree(dir, name), name);
            SourceTestKit.AssertSameMachine(before, after);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void TheUeventIsWhatIsReadWhenPresentAndTheAttributesWhenItIsNotTheKernels()
    {
        string name = Fixtures.OracleMachines().First();
        string dir = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball(name));
        try
        {
            string device = DeviceDirs(dir).First();
            var address = PciAddress.Parse(Path.GetFileName(device));
            var files = Facts(dir, name, address);
            // A uevent stating other ids than the files (never so on a live host): it is the one read...
            File.WriteAllText(Path.Combine(device, "uevent"), "PCI_CLASS=C0330\nPCI_ID=ABCD:1234\nPCI_SUBSYS_ID=5678:9ABC\n");
            var fromUevent = Facts(dir, name, address);
            Assert.Equal((0xabcd, 0x1234, 0x5678, 0x9abc, 0x0c0330u),
                (fromUevent.VendorId, fromUevent.DeviceId, fromUevent.SubsystemVendorId, fromUevent.SubsystemDeviceId, fromUevent.ClassCode));
            Assert.Equal(files.Revision, fromUevent.Revision); // not in uevent: still the attribute
            Assert.Equal(files.Driver, fromUevent.Driver);     // no DRIVER= line: the link
            // A DRIVER= line names the bound driver (dev_uevent prints dev->driver->name, the link's last component):
            // it is the one read, not the link.
            File.WriteAllText(Path.Combine(device, "uevent"), "DRIVER=other-driver\nPCI_CLASS=C0330\nPCI_ID=ABCD:1234\nPCI_SUBSYS_ID=5678:9ABC\n");
            Assert.Equal("other-driver", Facts(dir, name, address).Driver);
            // One that names no driver is bad input naming the uevent, as a link naming none names the link.
            File.WriteAllText(Path.Combine(device, "uevent"), "DRIVER=../x\nPCI_CLASS=C0330\nPCI_ID=ABCD:1234\nPCI_SUBSYS_ID=5678:9ABC\n");
            var bad = Assert.Throws<InputException>(() => Facts(dir, name, address));
            Assert.Contains("uevent", bad.Message);
            Assert.Contains("DRIVER=", bad.Message);
            // ...and one that is not the kernel's format leaves every id to the attribute files.
            File.WriteAllText(Path.Combine(device, "uevent"), "PCI_CLASS=C0330\nPCI_ID=ABCD:1234\n");
            var fallback = Facts(dir, name, address);
            Assert.Equal((files.VendorId, files.DeviceId, files.SubsystemVendorId, files.SubsystemDeviceId, files.ClassCode),
                (fallback.VendorId, fallback.DeviceId, fallback.SubsystemVendorId, fallback.SubsystemDeviceId, fallback.ClassCode));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static PciDeviceFacts Facts(string dir, string name, PciAddress address)
    {
        Assert.True(SysfsReader.Read(new DirectoryFileTree(dir, name), name).Topology.TryFind(address, out var node));
        return node!.Facts;
    }
}
