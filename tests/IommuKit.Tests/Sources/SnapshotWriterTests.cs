using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Sources;

public class SnapshotWriterTests
{
    [Theory]
    [InlineData("c_switch")]
    [InlineData("g_k612_virtio_typetest")]
    [InlineData("f_intel_iommu_off")]
    public void SnapshotOfAnExtractedTreeLoadsToTheSameMachine(string name)
    {
        string tar = Fixtures.OracleTarball(name);
        string dir = SourceTestKit.ExtractToTemp(tar);
        try
        {
            using var ms = new MemoryStream();
            var result = SnapshotWriter.Capture(dir, ms);
            Assert.Empty(result.Warnings);
            var original = MachineSource.Load(tar);
            Assert.Equal(original.Topology.Count, result.Devices);
            ms.Position = 0;
            SourceTestKit.AssertSameMachine(original, MachineSource.LoadTarball(ms, "snapshot.tar.gz"));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void SnapshotHoldsExactlyTheOracleMembersWithTheirModes()
    {
        string tar = Fixtures.OracleTarball("g_k612_intel_mixed");
        string dir = SourceTestKit.ExtractToTemp(tar);
        try
        {
            using var ms = new MemoryStream();
            SnapshotWriter.Capture(dir, ms);
            string outPath = Path.Combine(dir, "..", Path.GetFileName(dir) + ".tar.gz");
            File.WriteAllBytes(outPath, ms.ToArray());
            try
            {
                var expected = SourceTestKit.ReadMembers(tar).Select(m => (m.Name.TrimEnd('/'), m.Link, m.Data is null ? null : Convert.ToHexString(m.Data))).ToList();
                var actual = SourceTestKit.ReadMembers(outPath).Select(m => (m.Name.TrimEnd('/'), m.Link, m.Data is null ? null : Convert.ToHexString(m.Data))).ToList();
                Assert.Equal(expected, actual);
            }
            finally { File.Delete(outPath); }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void TwoCapturesOfTheSameTreeAreByteIdentical()
    {
        string dir = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball("a_rootcomplex"));
        try
        {
            using var a = new MemoryStream();
            using var b = new MemoryStream();
            SnapshotWriter.Capture(dir, a);
            SnapshotWriter.Capture(dir, b);
            Assert.Equal(a.ToArray(), b.ToArray());
            Assert.Equal(new byte[] { 0x1f, 0x8b }, a.ToArray()[..2]);
            Assert.Equal(new byte[4], a.ToArray()[4..8]); // gzip MTIME is 0
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void WriteFileRefusesToReplaceAnExistingFileUnlessAsked()
    {
        string dir = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball("a_rootcomplex"));
        string output = dir + ".out.tar.gz";
        try
        {
            File.WriteAllText(output, "keep me");
            Assert.Throws<IOException>(() => SnapshotWriter.WriteFile(dir, output, overwrite: false));
            Assert.Equal("keep me", File.ReadAllText(output));
            SnapshotWriter.WriteFile(dir, output, overwrite: true);
            Assert.Equal(12, MachineSource.Load(output).Topology.Count);
        }
        finally
        {
            File.Delete(output);
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void LinksThatLeaveTheRootAreLeftOutOfTheSnapshotWithAWarning()
    {
        string dir = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball("a_rootcomplex"));
        try
        {
            string link = Path.Combine(dir, "sys/devices/pci0000:00/0000:00:02.0/driver");
            File.Delete(link);
            File.CreateSymbolicLink(link, "../../../../../../../../etc");
            using var ms = new MemoryStream();
            var result = SnapshotWriter.Capture(dir, ms);
            Assert.Contains(result.Warnings, w => w.Contains("0000:00:02.0/driver") && w.Contains("leaves the root"));
            ms.Position = 0;
            Assert.Null(MachineSource.LoadTarball(ms, "s.tar.gz").Topology[IommuKit.Pci.PciAddress.Parse("0000:00:02.0")].Driver);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}

/// <summary>Issue 9: the snapshot carries the firmware's IOMMU tables and the host bridges' ACPI devices, and loads them back.</summary>
public class SnapshotFirmwareTests
{
    private static string AcpiFixture(string file) => Path.Combine(Fixtures.Root, "acpi", file);

    [Fact]
    public void SnapshotCarriesTheDmarAndTheHostBridgeFirmwareNodeAndLoadsThemBack()
    {
        string dir = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball("b_rootports"));
        try
        {
            string tables = Path.Combine(dir, "sys/firmware/acpi/tables");
            Directory.CreateDirectory(tables);
            File.Copy(AcpiFixture("dell-xps-13-9380-e27420be3a8a-DMAR.dat"), Path.Combine(tables, "DMAR"));
            string node = Path.Combine(dir, "sys/devices/LNXSYSTM:00/LNXSYBUS:00/PNP0A08:00");
            Directory.CreateDirectory(node);
            File.WriteAllText(Path.Combine(node, "path"), "\\_SB_.PCI0\n");
            File.CreateSymbolicLink(Path.Combine(dir, "sys/devices/pci0000:00/firmware_node"), "../LNXSYSTM:00/LNXSYBUS:00/PNP0A08:00");

            using var ms = new MemoryStream();
            var result = SnapshotWriter.Capture(dir, ms);
            Assert.Empty(result.Warnings);
            ms.Position = 0;
            var m = MachineSource.LoadTarball(ms, "snapshot.tar.gz");
            var dmar = Assert.IsType<IommuKit.Pci.DmarTable>(m.Firmware.Dmar);
            Assert.Equal(2, dmar.Units.Count);
            Assert.True(dmar.Units[1].IncludePciAll);
            Assert.Null(m.Firmware.Ivrs);
            var hb = Assert.Single(m.HostBridges);
            Assert.Equal((0, (byte)0, "PNP0A08:00", "\\_SB_.PCI0"), (hb.Domain, hb.Bus, hb.AcpiDevice, hb.AcpiPath));
            Assert.Empty(m.Warnings);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void TableReadableByRootOnlyIsLeftOutWithANoteNamingWhy()
    {
        string dir = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball("a_rootcomplex"));
        try
        {
            string tables = Path.Combine(dir, "sys/firmware/acpi/tables");
            Directory.CreateDirectory(tables);
            File.WriteAllBytes(Path.Combine(tables, "IVRS"), []); // what an unprivileged read of the 0400 file gives
            using var ms = new MemoryStream();
            var result = SnapshotWriter.Capture(dir, ms);
            var note = Assert.Single(result.Warnings);
            Assert.Contains("readable by root only", note, StringComparison.Ordinal);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void TableThatDoesNotDecodeIsLeftOutOfTheMachineWithTheDecodersMessage()
    {
        string dir = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball("a_rootcomplex"));
        try
        {
            string tables = Path.Combine(dir, "sys/firmware/acpi/tables");
            Directory.CreateDirectory(tables);
            var bytes = File.ReadAllBytes(AcpiFixture("asrock-x300-itx-400bc68b0f41-IVRS.dat"));
            File.WriteAllBytes(Path.Combine(tables, "IVRS"), bytes[..60]);
            var m = MachineSource.Load(dir);
            Assert.Null(m.Firmware.Ivrs);
            Assert.Contains(m.Warnings, w => w.StartsWith("sys/firmware/acpi/tables/IVRS: offset 0x4: IVRS table length", StringComparison.Ordinal) && w.EndsWith("; table left out", StringComparison.Ordinal));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
