using System.Text.Json;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Cli.Tests;

/// <summary>Golden and behaviour tests of <c>iommu devices</c>, <c>export</c> and <c>snapshot</c>.</summary>
public class SourcesCommandTests
{
    [Fact]
    public void DevicesTreeOfTheSwitchMachineMatchesGolden()
    {
        var r = CliRunner.Run("devices", "--source", CliRunner.Oracle("c_switch"));
        Assert.Equal(0, r.Code);
        Assert.Equal("", r.Err);
        CliRunner.AssertGolden("devices-c_switch.txt", r.Out);
    }

    [Fact]
    public void DevicesTreeShowsTheSwitchBelowItsRootPortWithAcsState()
    {
        var lines = CliRunner.Run("devices", "--source", CliRunner.Oracle("c_switch")).Lines;
        Assert.Equal("oracle/c_switch.tar.gz: 20 PCI functions, kernel 6.1.0-56-amd64, IOMMU dmar0 (intel)", lines[0]);
        Assert.Equal("pci0000:00", lines[1]);
        Assert.Contains("├── 0000:00:06.0 [1b36:000c] 0604 Root Port (buses 01-05), ACS cap SV|TB|RR|CR|UF|DT ctl SV|RR|CR|UF, driver pcieport, group 2", lines);
        Assert.Contains("│   └── 0000:01:00.0 [104c:8232] 0604 Upstream Port (buses 02-05), no ACS, driver pcieport, group 5", lines);
        Assert.Contains("│       │   └── 0000:03:00.0 [8086:10d3] 0200 Endpoint, no ACS, driver e1000e, group 6, slot #1", lines);
    }

    [Fact]
    public void DevicesJsonHasOneObjectPerDeviceWithParentAndAcsBitNames()
    {
        var r = CliRunner.Run("devices", "--json", "--source", CliRunner.Oracle("c_switch"));
        Assert.Equal(0, r.Code);
        var devices = r.Json.GetProperty("devices");
        Assert.Equal(20, devices.GetArrayLength());
        var port = devices.EnumerateArray().Single(d => d.GetProperty("address").GetString() == "0000:00:06.0");
        Assert.Equal("0x1b36", port.GetProperty("vendor").GetString());
        Assert.Equal("0x000c", port.GetProperty("device").GetString());
        Assert.Equal("0x060400", port.GetProperty("class").GetString());
        Assert.Equal("root_port", port.GetProperty("pcie_type").GetString());
        Assert.Equal("pcieport", port.GetProperty("driver").GetString());
        Assert.Equal(JsonValueKind.Null, port.GetProperty("parent").ValueKind);
        Assert.Equal(["SrcValid", "TransBlk", "ReqRedir", "CmpltRedir", "UpstreamFwd", "DirectTrans"],
            port.GetProperty("acs").GetProperty("capability").EnumerateArray().Select(x => x.GetString()));
        Assert.Equal(["SrcValid", "ReqRedir", "CmpltRedir", "UpstreamFwd"],
            port.GetProperty("acs").GetProperty("control").EnumerateArray().Select(x => x.GetString()));
        var ep = devices.EnumerateArray().Single(d => d.GetProperty("address").GetString() == "0000:03:00.0");
        Assert.Equal("0000:02:00.0", ep.GetProperty("parent").GetString());
        Assert.Equal("endpoint", ep.GetProperty("pcie_type").GetString());
        Assert.False(ep.GetProperty("acs").GetProperty("present").GetBoolean());
        Assert.Equal(JsonValueKind.Null, ep.GetProperty("acs").GetProperty("capability").ValueKind);
    }

    [Fact]
    public void DevicesOnAnUnprivilegedReadSayAcsUnknownAndWarnOnce()
    {
        string dir = ExtractTemp("a_rootcomplex");
        try
        {
            // Walk the real device directories only: sysfs links (driver, iommu, iommu_group) form cycles.
            var options = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint };
            foreach (var cfg in Directory.GetFiles(Path.Combine(dir, "sys", "devices"), "config", options))
                File.WriteAllBytes(cfg, File.ReadAllBytes(cfg)[..64]);
            var r = CliRunner.Run("devices", "--source", dir);
            Assert.Equal(0, r.Code);
            Assert.All(r.Lines.Where(l => l.Contains("── ")), l => Assert.Contains("type unknown, ACS unknown", l));
            var warning = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith("warning: 12 of 12 devices show only the 64-byte config header", warning);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void ExportThenReadBackGivesTheSameExport()
    {
        var first = CliRunner.Run("export", "--source", CliRunner.Oracle("g_k612_virtio_pt"));
        Assert.Equal(0, first.Code);
        using (var doc = JsonDocument.Parse(first.Out))
        {
            Assert.Equal("iommukit-machine", doc.RootElement.GetProperty("format").GetString());
            Assert.Equal(1, doc.RootElement.GetProperty("version").GetInt32());
        }
        string path = Path.Combine(Path.GetTempPath(), $"iommukit-export-{Guid.NewGuid():n}.json");
        try
        {
            File.WriteAllText(path, first.Out);
            var second = CliRunner.Run("export", "--source", path);
            Assert.Equal(0, second.Code);
            Assert.Equal(first.Out.Replace("\"source\": \"oracle/g_k612_virtio_pt.tar.gz\"", ""), second.Out.Replace($"\"source\": \"{path}\"", ""));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void ExportWithoutConfigLeavesOutTheHex()
    {
        var r = CliRunner.Run("export", "--no-config", "--source", CliRunner.Oracle("a_rootcomplex"));
        Assert.Equal(0, r.Code);
        Assert.DoesNotContain("\"config\"", r.Out);
        Assert.Contains("\"pcie_type\": \"rc_integrated_endpoint\"", r.Out);
    }

    [Fact]
    public void SnapshotOfAnExtractedRootLoadsToTheSameDevicesAndRefusesToOverwrite()
    {
        string dir = ExtractTemp("c_switch");
        string output = dir + ".tar.gz";
        try
        {
            var r = CliRunner.Run("snapshot", "-o", output, "--root", dir);
            Assert.Equal(0, r.Code);
            // The capture holds exactly the oracle's members (directories, files and links alike).
            int oracleMembers = 0;
            using (var fs = File.OpenRead(CliRunner.Oracle("c_switch")))
            using (var gz = new System.IO.Compression.GZipStream(fs, System.IO.Compression.CompressionMode.Decompress))
            using (var tar = new System.Formats.Tar.TarReader(gz))
            {
                while (tar.GetNextEntry() is not null) oracleMembers++;
            }
            Assert.Equal($"{output}: 20 PCI functions, {oracleMembers} members", r.Out.TrimEnd());
            var fromSnapshot = CliRunner.Run("devices", "--source", output).Lines[1..];
            var fromOracle = CliRunner.Run("devices", "--source", CliRunner.Oracle("c_switch")).Lines[1..];
            Assert.Equal(fromOracle, fromSnapshot);

            byte[] before = File.ReadAllBytes(output);
            var again = CliRunner.Run("snapshot", "-o", output, "--root", dir);
            Assert.Equal(4, again.Code);
            Assert.Equal($"iommu: {output}: already exists; use --force to replace it\n", again.Err);
            Assert.Equal(before, File.ReadAllBytes(output));
            Assert.Equal(0, CliRunner.Run("snapshot", "-o", output, "--root", dir, "--force").Code);
            Assert.Equal(before, File.ReadAllBytes(output)); // deterministic
        }
        finally
        {
            File.Delete(output);
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void SnapshotOfARootWithoutPciSysfsIsBadInput()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"iommukit-nosys-{Guid.NewGuid():n}");
        Directory.CreateDirectory(dir);
        try
        {
            var r = CliRunner.Run("snapshot", "-o", Path.Combine(dir, "out.tar.gz"), "--root", dir);
            Assert.Equal(3, r.Code);
            Assert.Contains("no sys/bus/pci/devices", r.Err);
            Assert.False(File.Exists(Path.Combine(dir, "out.tar.gz")));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData("devices")]
    [InlineData("export")]
    public void BadSourceExitsThreeWithOneLineNamingTheFile(string command)
    {
        string path = Path.Combine(Path.GetTempPath(), $"iommukit-bad-{Guid.NewGuid():n}.tar.gz");
        try
        {
            var noise = new byte[2000];
            new Random(5).NextBytes(noise);
            noise[0] = 0x1f; noise[1] = 0x8b;
            File.WriteAllBytes(path, noise);
            var r = CliRunner.Run(command, "--source", path);
            Assert.Equal(3, r.Code);
            Assert.Equal("", r.Out);
            var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith($"iommu: {path}: ", line);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void MissingSourceExitsThree()
    {
        var r = CliRunner.Run("devices", "--source", "/nonexistent/host.tar.gz");
        Assert.Equal(3, r.Code);
        Assert.Equal("iommu: /nonexistent/host.tar.gz: no such file or directory\n", r.Err);
    }

    [Fact]
    public void HelpNamesTheInputCaps()
    {
        var r = CliRunner.Run("devices", "--help");
        Assert.Contains($"{SourceLimits.MaxEntries} entries", r.Out);
        Assert.Contains("MiB uncompressed", r.Out);
    }

    [Fact]
    public void BundledExampleMachineLoads()
    {
        var m = SourceResolver.LoadExample();
        Assert.Equal(SourceResolver.ExampleOrigin, m.Origin);
        Assert.Equal(31, m.Topology.Count);
        Assert.Empty(m.Warnings);
    }

    [Fact]
    public void HostWithoutPciSysfsFallsBackToTheBundledMachineWithANoteOnStderr()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"iommukit-nopci-{Guid.NewGuid():n}");
        Directory.CreateDirectory(Path.Combine(dir, "sys", "bus"));
        try
        {
            var o = new StringWriter();
            var e = new StringWriter();
            var m = SourceResolver.Resolve(null, new CliConsole(o, e, color: false), hostRoot: dir);
            Assert.Equal(SourceResolver.ExampleOrigin, m.Origin);
            Assert.StartsWith("note: this host has no PCI sysfs", e.ToString());
            Assert.Equal("", o.ToString());
            // Text output says it loudly as its first line on stdout; JSON output (above) keeps stdout pure.
            var loud = new StringWriter();
            SourceResolver.Resolve(null, new CliConsole(loud, new StringWriter(), color: false), hostRoot: dir, loud: true);
            Assert.StartsWith("THIS HOST HAS NO PCI SYSFS: SHOWING AN EXAMPLE MACHINE", loud.ToString());
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void HostWithPciSysfsIsReadWithoutANote()
    {
        string dir = ExtractTemp("f_no_viommu");
        try
        {
            var e = new StringWriter();
            var m = SourceResolver.Resolve(null, new CliConsole(new StringWriter(), e, color: false), hostRoot: dir);
            Assert.Equal(13, m.Topology.Count);
            Assert.Equal("", e.ToString());
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void UnprivilegedHostGetsOneWarningSayingWhatItCostsAndGroupsSayTheyAreAGuess()
    {
        string dir = ExtractTemp("a_rootcomplex");
        try
        {
            // As a non-root user reads sysfs: 64 bytes of each config, and no kernel groups to fall back on.
            var options = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint };
            foreach (var cfg in Directory.GetFiles(Path.Combine(dir, "sys", "devices"), "config", options))
                File.WriteAllBytes(cfg, File.ReadAllBytes(cfg)[..64]);
            Directory.Delete(Path.Combine(dir, "sys", "kernel", "iommu_groups"), recursive: true);

            var e = new StringWriter();
            var m = SourceResolver.Resolve(null, new CliConsole(new StringWriter(), e, color: false), hostRoot: dir);
            Assert.Equal(12, m.Topology.Count);
            var warning = Assert.Single(e.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith("warning: 12 of 12 devices show only the 64-byte config header", warning);
            Assert.Contains("ACS", warning);
            Assert.Contains("run as root", warning);

            var groups = CliRunner.Run("groups", "--source", dir);
            Assert.Equal(0, groups.Code);
            Assert.Contains("depend on facts the source does not show", groups.Err);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static string ExtractTemp(string name)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"iommukit-cli-{Guid.NewGuid():n}");
        Directory.CreateDirectory(dir);
        using var fs = File.OpenRead(CliRunner.Oracle(name));
        using var gz = new System.IO.Compression.GZipStream(fs, System.IO.Compression.CompressionMode.Decompress);
        System.Formats.Tar.TarFile.ExtractToDirectory(gz, dir, overwriteFiles: false);
        return dir;
    }
}
