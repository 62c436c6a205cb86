using System.Formats.Tar;
using System.IO.Compression;
using IommuKit.Pci;
using Xunit;

namespace IommuKit.Tests.Sources;

/// <summary>Builds small in-memory tarballs and compares machines, for the Sources tests.</summary>
internal static class SourceTestKit
{
    public static Member File(string name, byte[] data) => new(name, data);
    public static Member Text(string name, string text) => new(name, System.Text.Encoding.UTF8.GetBytes(text));
    public static Member Link(string name, string target) => new(name, Link: target);
    public static Member Dir(string name) => new(name);

    /// <summary>A gzip'd tar of the members, in the order given.</summary>
    public static byte[] TarGz(IEnumerable<Member> members) => TarMembers.Write(members, gzip: true);

    /// <summary>The members of a fixture tarball (files with data, links with targets, directories).</summary>
    public static List<Member> ReadMembers(string tarGzPath) => TarMembers.Read(tarGzPath);

    /// <summary>A config space: 256 or 4096 bytes with ids, class and header type set.</summary>
    public static byte[] Config(ushort vendor, ushort device, uint classCode, byte headerType = 0, int size = 4096)
    {
        var c = new byte[size];
        c[0] = (byte)vendor; c[1] = (byte)(vendor >> 8);
        c[2] = (byte)device; c[3] = (byte)(device >> 8);
        c[9] = (byte)classCode; c[10] = (byte)(classCode >> 8); c[11] = (byte)(classCode >> 16);
        c[0x0e] = headerType;
        return c;
    }

    /// <summary>
    /// A minimal sysfs tree: one root port 00:1c.0 (bus 01) with an endpoint 01:00.0 and an endpoint 00:02.0 on the root
    /// bus, with optional replacement of any member.
    /// </summary>
    public static List<Member> SmallMachine(byte[]? endpointConfig = null, bool groups = true)
    {
        var port = Config(0x8086, 0xa110, 0x060400, 1);
        port[0x18] = 0; port[0x19] = 1; port[0x1a] = 1;
        var ep = endpointConfig ?? Config(0x8086, 0x10d3, 0x020000);
        var igd = Config(0x8086, 0x3e92, 0x030000);
        var m = new List<Member>
        {
            Text("proc/cmdline", "root=/dev/sda intel_iommu=on\n"),
            Text("proc/sys/kernel/osrelease", "6.1.0-test\n"),
            Link("sys/bus/pci/devices/0000:00:02.0", "../../../devices/pci0000:00/0000:00:02.0"),
            Link("sys/bus/pci/devices/0000:00:1c.0", "../../../devices/pci0000:00/0000:00:1c.0"),
            Link("sys/bus/pci/devices/0000:01:00.0", "../../../devices/pci0000:00/0000:00:1c.0/0000:01:00.0"),
            File("sys/devices/pci0000:00/0000:00:02.0/config", igd),
            File("sys/devices/pci0000:00/0000:00:1c.0/config", port),
            File("sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/config", ep),
            Link("sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/driver", "../../../../bus/pci/drivers/e1000e"),
            Dir("sys/class/iommu"),
        };
        if (groups)
        {
            m.Add(Text("sys/kernel/iommu_groups/3/type", "DMA-FQ\n"));
            m.Add(Text("sys/kernel/iommu_groups/3/reserved_regions", "0x00000000fee00000 0x00000000feefffff msi\n"));
            m.Add(Link("sys/kernel/iommu_groups/3/devices/0000:01:00.0", "../../../../devices/pci0000:00/0000:00:1c.0/0000:01:00.0"));
            m.Add(Link("sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/iommu_group", "../../../../kernel/iommu_groups/3"));
        }
        return m;
    }

    public static Machine Load(IEnumerable<Member> members, string origin = "test.tar.gz") =>
        IommuKit.Sources.MachineSource.LoadBytes(TarGz(members), origin);

    /// <summary>Asserts two machines hold the same facts (origin and warnings aside).</summary>
    public static void AssertSameMachine(Machine expected, Machine actual)
    {
        Assert.Equal(expected.KernelRelease, actual.KernelRelease);
        Assert.Equal(expected.CommandLine, actual.CommandLine);
        Assert.Equal(expected.Topology.Count, actual.Topology.Count);
        for (int i = 0; i < expected.Topology.Count; i++)
        {
            var e = expected.Topology.Devices[i];
            var a = actual.Topology.Devices[i];
            Assert.Equal(e.Address, a.Address);
            Assert.Equal(e.Parent?.Address, a.Parent?.Address);
            Assert.Equal(e.IsMultifunction, a.IsMultifunction);
            AssertSameFacts(e.Facts, a.Facts);
        }
        Assert.Equal(expected.IommuUnits.Count, actual.IommuUnits.Count);
        for (int i = 0; i < expected.IommuUnits.Count; i++)
        {
            var e = expected.IommuUnits[i];
            var a = actual.IommuUnits[i];
            Assert.Equal(e.Name, a.Name);
            Assert.Equal(e.Kind, a.Kind);
            Assert.Equal(e.Devices, a.Devices);
            Assert.Equal(e.Registers.OrderBy(kv => kv.Key), a.Registers.OrderBy(kv => kv.Key));
        }
        Assert.Equal(expected.KernelGroups is null, actual.KernelGroups is null);
        if (expected.KernelGroups is not null)
        {
            Assert.Equal(expected.KernelGroups.Count, actual.KernelGroups!.Count);
            for (int i = 0; i < expected.KernelGroups.Count; i++)
            {
                var e = expected.KernelGroups[i];
                var a = actual.KernelGroups[i];
                Assert.Equal(e.Id, a.Id);
                Assert.Equal(e.Type, a.Type);
                Assert.Equal(e.Name, a.Name);
                Assert.Equal(e.Devices, a.Devices);
                Assert.Equal(e.ReservedRegions, a.ReservedRegions);
            }
        }
        Assert.Equal(expected.Slots.OrderBy(kv => kv.Key), actual.Slots.OrderBy(kv => kv.Key));
    }

    public static void AssertSameFacts(PciDeviceFacts e, PciDeviceFacts a, bool compareConfig = true)
    {
        Assert.Equal(e.Address, a.Address);
        Assert.Equal(e.VendorId, a.VendorId);
        Assert.Equal(e.DeviceId, a.DeviceId);
        Assert.Equal(e.SubsystemVendorId, a.SubsystemVendorId);
        Assert.Equal(e.SubsystemDeviceId, a.SubsystemDeviceId);
        Assert.Equal(e.ClassCode, a.ClassCode);
        Assert.Equal(e.Revision, a.Revision);
        Assert.Equal(e.HeaderLayout, a.HeaderLayout);
        Assert.Equal(e.MultifunctionBit, a.MultifunctionBit);
        Assert.Equal(e.BridgeBuses, a.BridgeBuses);
        Assert.Equal(e.Pcie, a.Pcie);
        Assert.Equal(e.Acs, a.Acs);
        Assert.Equal(e.Ari, a.Ari);
        Assert.Equal(e.Sriov, a.Sriov);
        Assert.Equal(e.Capabilities, a.Capabilities);
        Assert.Equal(e.Visibility, a.Visibility);
        Assert.Equal(e.Driver, a.Driver);
        Assert.Equal(e.KernelGroup, a.KernelGroup);
        Assert.Equal(e.IommuUnit, a.IommuUnit);
        Assert.Equal(e.ParentHint, a.ParentHint);
        Assert.Equal(e.ExternalFacing, a.ExternalFacing);
        Assert.Equal(e.Untrusted, a.Untrusted);
        Assert.Equal(e.PhysicalSlot, a.PhysicalSlot);
        if (compareConfig)
        {
            Assert.Equal(e.Config is null, a.Config is null);
            if (e.Config is not null) Assert.True(e.Config.Bytes.SequenceEqual(a.Config!.Bytes), $"{e.Address}: config bytes differ");
        }
    }

    /// <summary>Extracts a fixture tarball into a fresh temp directory (the caller deletes it).</summary>
    public static string ExtractToTemp(string tarGz)
    {
        string dir = Path.Combine(Path.GetTempPath(), "iommukit-test-" + Guid.NewGuid().ToString("n"));
        Directory.CreateDirectory(dir);
        using var fs = System.IO.File.OpenRead(tarGz);
        using var gz = new GZipStream(fs, CompressionMode.Decompress);
        TarFile.ExtractToDirectory(gz, dir, overwriteFiles: false);
        return dir;
    }
}
