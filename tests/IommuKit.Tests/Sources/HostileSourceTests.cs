using System.Text;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Sources;

/// <summary>
/// Issue 12 at the library's depth: read faults a root cannot make with chmod (the tests run as root) injected through
/// <see cref="DirectoryFileTree.Faults"/>, the atomic snapshot write under a full disk, the root-confined writer,
/// the one escaping function, the linear topology build, and export that always loads back.
/// </summary>
public class HostileSourceTests
{
    private const string Machine = "g_k612_intel_typetest";
    private const string Endpoint = "sys/devices/pci0000:00/0000:00:06.0/0000:01:00.0";

    private static Machine ReadWithFaults(string root, Func<string, string?> faults) =>
        SysfsReader.Read(new DirectoryFileTree(root) { Faults = faults }, root);

    private static void WithRoot(Action<string> body)
    {
        string root = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball(Machine));
        try { body(root); }
        finally { Directory.Delete(root, recursive: true); }
    }

    // ------------------------------------------------------------------ read faults

    [Fact]
    public void AnUnreadableGroupsDirectoryLeavesTheKernelGroupsUnknownNotNoneAndSaysSo()
    {
        WithRoot(root =>
        {
            var m = ReadWithFaults(root, p => p == SysfsReader.GroupsDir ? "permission denied" : null);
            Assert.Null(m.KernelGroups); // unknown, not the empty list that means "IOMMU off"
            Assert.Contains(m.Warnings, w => w.Contains("sys/kernel/iommu_groups: permission denied", StringComparison.Ordinal)
                                             && w.Contains("unknown", StringComparison.Ordinal));
        });
    }

    [Fact]
    public void AnUnreadableConfigReadsTheDeviceFromItsAttributesAndNamesTheFile()
    {
        WithRoot(root =>
        {
            var m = ReadWithFaults(root, p => p == Endpoint + "/config" ? "permission denied" : null);
            var dev = m.Topology[PciAddress.Parse("01:00.0")];
            Assert.Equal(ConfigVisibility.HeaderOnly, dev.Facts.Visibility);
            Assert.Equal((ushort)0x8086, dev.Facts.VendorId);
            Assert.Contains(m.Warnings, w => w.Contains(Endpoint + "/config: permission denied", StringComparison.Ordinal));
        });
    }

    [Fact]
    public void AnUnreadableGroupTypeIsUnknownAndNamedNotReadAsEmpty()
    {
        WithRoot(root =>
        {
            var m = ReadWithFaults(root, p => p == "sys/kernel/iommu_groups/7/type" ? "permission denied" : null);
            var g = m.KernelGroups!.Single(x => x.Id == 7);
            Assert.Null(g.Type);
            Assert.NotEmpty(g.Devices);
            Assert.Contains(m.Warnings, w => w.Contains("iommu_groups/7/type: permission denied", StringComparison.Ordinal));
        });
    }

    [Fact]
    public void AnUnreadableDevicesDirectoryIsAReadErrorNamingIt()
    {
        WithRoot(root =>
        {
            var ex = Assert.Throws<FileReadException>(() => ReadWithFaults(root, p => p.EndsWith("bus/pci/devices", StringComparison.Ordinal) ? "permission denied" : null));
            Assert.Contains("sys/bus/pci/devices: permission denied", ex.Message);
        });
    }

    [Fact]
    public void AnUnreadableAttributeSkipsOnlyThatDeviceNamingTheFile()
    {
        WithRoot(root =>
        {
            var all = SysfsReader.Read(new DirectoryFileTree(root), root);
            var m = ReadWithFaults(root, p => p == Endpoint + "/vendor" ? "Input/output error" : null);
            Assert.Equal(all.Topology.Count - 1, m.Topology.Count);
            Assert.Contains(m.Warnings, w => w.Contains(Endpoint + "/vendor: Input/output error; device skipped", StringComparison.Ordinal));
            Assert.Contains(m.Warnings, w => w.Contains("group 7 lists 0000:01:00.0, which could not be read", StringComparison.Ordinal));
        });
    }

    // ------------------------------------------------------------------ snapshot write under faults

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ASnapshotThatRunsOutOfSpaceLeavesTheTargetAsItWasAndNoTemporaryFile(bool oldFileExists)
    {
        WithRoot(root =>
        {
            string dir = Path.Combine(Path.GetTempPath(), "iommukit-full-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            try
            {
                string output = Path.Combine(dir, "host.tar.gz");
                if (oldFileExists) File.WriteAllText(output, "the old snapshot");
                Assert.Throws<IOException>(() => SnapshotWriter.WriteFile(root, output, overwrite: true, s => new WriteLimitStream(s, 1000, () => new IOException("No space left on device"))));
                if (oldFileExists) Assert.Equal("the old snapshot", File.ReadAllText(output));
                Assert.Equal(oldFileExists ? ["host.tar.gz"] : [], Directory.GetFileSystemEntries(dir).Select(Path.GetFileName));
            }
            finally { Directory.Delete(dir, recursive: true); }
        });
    }

    // ------------------------------------------------------------------ root-confined writer

    [Fact]
    public void TheWriterResolvesAnAbsoluteLinkInsideTheRootAsTheReaderDoes()
    {
        WithRoot(root =>
        {
            string outside = Path.Combine(Path.GetTempPath(), "iommukit-outside-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(outside);
            try
            {
                File.WriteAllText(Path.Combine(outside, "type"), "DMA\n");
                string type = Path.Combine(root, "sys/kernel/iommu_groups/7/type");
                File.Delete(type);
                File.CreateSymbolicLink(type, Path.Combine(outside, "type"));
                var writer = new SysfsWriter(root);
                Assert.Throws<IOException>(() => writer.Write("sys/kernel/iommu_groups/7/type", "identity"));
                Assert.Equal("DMA\n", File.ReadAllText(Path.Combine(outside, "type")));
                // The same absolute link, read from the root as the reader reads it, lands inside the root.
                Directory.CreateDirectory(root + outside);
                File.WriteAllText(Path.Combine(root + outside, "type"), "DMA-FQ\n");
                writer.Write("sys/kernel/iommu_groups/7/type", "identity");
                Assert.Equal("identity", File.ReadAllText(Path.Combine(root + outside, "type")));
                Assert.Equal("DMA\n", File.ReadAllText(Path.Combine(outside, "type")));
                Assert.Equal("identity", writer.ReadCapped("sys/kernel/iommu_groups/7/type"));
            }
            finally { Directory.Delete(outside, recursive: true); }
        });
    }

    [Fact]
    public void TheWriterRefusesALinkClimbingAboveTheRoot()
    {
        WithRoot(root =>
        {
            string type = Path.Combine(root, "sys/kernel/iommu_groups/7/type");
            File.Delete(type);
            File.CreateSymbolicLink(type, "../../../../../../../../../../tmp/escaped-type");
            var ex = Assert.Throws<IOException>(() => new SysfsWriter(root).Write("sys/kernel/iommu_groups/7/type", "identity"));
            Assert.Contains("climbs above the root", ex.Message);
        });
    }

    // ------------------------------------------------------------------ escaping

    [Theory]
    [InlineData("plain text", "plain text")]
    [InlineData("a\u001b[2Jb", "a\\x1b[2Jb")]
    [InlineData("line\nnext\ttab", "line\\x0anext\\x09tab")]
    [InlineData("c1\u009bdel\u007f", "c1\\x9bdel\\x7f")]
    [InlineData("rtl\u202eoverride\u2066", "rtl\\u202eoverride\\u2066")]
    public void EscapeMakesEveryControlCharacterVisible(string input, string expected)
    {
        Assert.Equal(expected, TextSafety.Escape(input));
        Assert.Equal(expected, TextSafety.Escape(TextSafety.Escape(input))); // idempotent
    }

    [Fact]
    public void EscapeKeepingLinesKeepsNewlineAndTabOnly()
    {
        Assert.Equal("a\nb\tc\\x1b\\x0d", TextSafety.EscapeKeepingLines("a\nb\tc\u001b\r"));
    }

    [Fact]
    public void EveryInputExceptionMessageIsOneEscapedLine()
    {
        var ex = InputException.At("evil\u001b]0;x\u0007.tar", "rule\nbroken", device: "dev\r");
        Assert.Equal("evil\\x1b]0;x\\x07.tar: dev\\x0d: rule\\x0abroken", ex.Message);
    }

    // ------------------------------------------------------------------ topology at scale

    [Fact]
    public void AFlatMachineOfOneFunctionPerBusWithoutBridgesHasOneRootBusPerFunction()
    {
        // 150,000 functions, one per bus, no bridge: each bus is a root bus. The covering-bridge lookup used to scan
        // every device for every such bus (quadratic: 318 s at this size); it is now a per-domain table.
        var b = new PciTopologyBuilder();
        int n = 150_000;
        for (int i = 0; i < n; i++)
            b.Add(new PciDeviceFacts { Address = new PciAddress(i / 256, (byte)(i % 256), 0, 0), VendorId = 0x8086, DeviceId = 0x1234 });
        var topo = b.Build();
        Assert.Equal(n, topo.Count);
        Assert.Equal(n, topo.RootBuses.Count);
        Assert.All(topo.Devices, d => Assert.True(d.Bus.IsRoot));
    }

    [Fact]
    public void ABusNoBridgeLeadsToHangsBelowTheInnermostBridgeCoveringIt()
    {
        // 00:01.0 covers 01-08, 01:00.0 covers 02-06: bus 04 (VFs, no bridge leads there) belongs under bus 02.
        var topo = new PciTopologyBuilder()
            .Add(new PciDeviceFacts { Address = PciAddress.Parse("00:01.0"), HeaderLayout = 1, BridgeBuses = (0, 1, 8) })
            .Add(new PciDeviceFacts { Address = PciAddress.Parse("01:00.0"), HeaderLayout = 1, BridgeBuses = (1, 2, 6) })
            .Add(new PciDeviceFacts { Address = PciAddress.Parse("02:00.0") })
            .Add(new PciDeviceFacts { Address = PciAddress.Parse("04:00.0") })
            .Add(new PciDeviceFacts { Address = PciAddress.Parse("07:00.0") })
            .Build();
        Assert.Equal(2, topo[PciAddress.Parse("04:00.0")].Bus.Parent!.Number);
        Assert.Equal(1, topo[PciAddress.Parse("07:00.0")].Bus.Parent!.Number);
    }

    [Fact]
    public void TopologyErrorsNameTheInput()
    {
        var b = new PciTopologyBuilder { Origin = "dump.txt" }.Add(new PciDeviceFacts { Address = PciAddress.Parse("00:01.0") });
        var ex = Assert.Throws<InputException>(() => b.Add(new PciDeviceFacts { Address = PciAddress.Parse("00:01.0") }));
        Assert.StartsWith("dump.txt: ", ex.Message);
    }

    // ------------------------------------------------------------------ export loads back

    /// <summary>Every fixture of every kind: oracle snapshots, real lspci dumps, generated lspci text and hex.</summary>
    public static TheoryData<string> AllFixtures()
    {
        var data = new TheoryData<string>();
        foreach (var m in Fixtures.OracleMachines()) data.Add(Fixtures.OracleTarball(m));
        foreach (var f in Fixtures.LspciDumps()) data.Add(f);
        foreach (var f in Directory.GetFiles(Path.Combine(Fixtures.Root, "lspci-generated"), "*.txt").Where(f => !f.EndsWith("MANIFEST.txt", StringComparison.Ordinal)).Order())
            data.Add(f);
        return data;
    }

    /// <summary>
    /// Asserts the export of <paramref name="m"/> loads back to the same machine: reading the JSON and exporting it
    /// again gives the same text (the origin aside).
    /// </summary>
    internal static void AssertExportLoadsBack(Machine m)
    {
        foreach (bool config in new[] { true, false })
        {
            string json = MachineJson.ToJson(m, includeConfig: config);
            var back = MachineJson.Read(Encoding.UTF8.GetBytes(json), "export.json");
            Assert.Equal(json, MachineJson.ToJson(back with { Origin = m.Origin }, includeConfig: config));
        }
    }

    [Theory]
    [MemberData(nameof(AllFixtures))]
    public void TheExportOfEveryFixtureLoadsBackToTheSameMachine(string path)
    {
        Machine m;
        try { m = MachineSource.Load(path); }
        catch (InputException) { return; } // not loadable: nothing to export
        AssertExportLoadsBack(m);
    }
}
