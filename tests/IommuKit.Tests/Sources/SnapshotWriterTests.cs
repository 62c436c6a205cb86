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
