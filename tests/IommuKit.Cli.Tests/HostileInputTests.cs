using System.Text;
using Xunit;
using static IommuKit.Cli.Tests.CliRunner;
using static IommuKit.Cli.Tests.HostileKit;

namespace IommuKit.Cli.Tests;

/// <summary>
/// Issue 12: each hole the attack found, as the user meets it through the <c>iommu</c> command. Every bad input is one
/// line on stderr naming the file (exit 3), never a stack trace (exit 70), a hang, or a wrong answer.
/// </summary>
public class HostileInputTests
{
    private const string Machine = "g_k612_intel_typetest";
    private const string Endpoint = "sys/devices/pci0000:00/0000:00:06.0/0000:01:00.0";

    private static void AssertOneLineInputError(Result r, params string[] mentions)
    {
        Assert.True(r.Code == 3, $"exit {r.Code}: {r.Err}");
        Assert.Equal("", r.Out);
        string[] lines = r.Err.TrimEnd('\n').Split('\n');
        Assert.True(lines.Length == 1, $"not one line: {r.Err}");
        Assert.StartsWith("iommu: ", lines[0]);
        Assert.DoesNotContain("internal error", lines[0]);
        Assert.DoesNotContain('\u001b', lines[0]);
        foreach (var m in mentions) Assert.Contains(m, lines[0]);
    }

    private static string ExportJson(string machine = Machine)
    {
        var r = Run("export", "--source", Oracle(machine));
        Assert.Equal(0, r.Code);
        return r.Out;
    }

    private static Result RunOnFile(byte[] bytes, string name, params string[] args)
    {
        string dir = TempDir();
        try
        {
            string path = Path.Combine(dir, name);
            File.WriteAllBytes(path, bytes);
            return Run([.. args, "--source", path]);
        }
        finally { Cleanup(dir); }
    }

    private static Result RunOnJson(string json, params string[] args) => RunOnFile(Encoding.UTF8.GetBytes(json), "machine.json", args);

    // ------------------------------------------------------------------ crashes

    [Fact]
    public void GnuSparseTarMemberIsBadInputNotACrash()
    {
        var tar = Tar(ReadMembers(Oracle(Machine)));
        var offsets = HeaderOffsets(tar);
        int h = offsets.First(o => tar[o + 156] == (byte)'0'); // first regular file
        tar[h + 156] = (byte)'S';
        FixChecksum(tar, h);
        var r = RunOnFile(Gzip(tar), "sparse.tar.gz", "groups");
        AssertOneLineInputError(r, "sparse.tar.gz");
    }

    [Fact]
    public void InvalidUtf8InsideAJsonStringIsBadInputNamingThePath()
    {
        string json = ExportJson();
        var bytes = Encoding.UTF8.GetBytes(json.Replace("\"kernel_release\": \"", "\"kernel_release\": \"@@"));
        int at = bytes.AsSpan().IndexOf("@@"u8);
        bytes[at] = 0xff; bytes[at + 1] = 0xfe;
        var r = RunOnFile(bytes, "bad-utf8.json", "groups");
        AssertOneLineInputError(r, "bad-utf8.json", "kernel_release");
    }

    [Theory]
    [InlineData("driver")]
    [InlineData("kernel_release")]
    [InlineData("description")]
    public void ALoneSurrogateEscapeInAJsonStringIsBadInputNamingThePath(string field)
    {
        string json = ExportJson();
        json = field == "description"
            ? json.Replace("\"address\": \"0000:01:00.0\",", "\"address\": \"0000:01:00.0\", \"description\": \"\\ud800\",")
            : field == "driver" ? json.Replace("\"driver\": \"e1000e\"", "\"driver\": \"e1000e\\ud800\"")
            : json.Replace("\"kernel_release\": \"", "\"kernel_release\": \"\\udc00");
        var r = RunOnJson(json, "groups");
        AssertOneLineInputError(r, field);
    }

    [Theory]
    [InlineData("")]
    [InlineData("..")]
    [InlineData("a/b")]
    public void ADriverNameThatIsNotOnePathComponentIsBadInputInJson(string driver)
    {
        string json = ExportJson().Replace("\"driver\": \"e1000e\"", $"\"driver\": \"{driver}\"");
        var r = RunOnJson(json, "vfio-check", "01:00.0");
        AssertOneLineInputError(r, "machine.json", ".driver");
    }

    [Fact]
    public void ADriverLinkResolvingToTheRootIsBadInputNamingTheLink()
    {
        string root = ExtractOracle(Machine);
        try
        {
            MakeLink(Path.Combine(root, Endpoint, "driver"), "/");
            var r = Run("vfio-check", "01:00.0", "--source", root);
            AssertOneLineInputError(r, "0000:01:00.0/driver");
        }
        finally { Cleanup(root); }
    }

    [Fact]
    public void SnapshotToAnEmptyOutputPathIsAUsageError()
    {
        string root = ExtractOracle(Machine);
        try
        {
            var r = Run("snapshot", "-o", "", "--root", root);
            Assert.Equal(4, r.Code);
            Assert.Contains("--output", r.Err);
            Assert.DoesNotContain("internal error", r.Err);
        }
        finally { Cleanup(root); }
    }

    [Fact]
    public void AnUnexpectedExceptionBecomesOneInternalErrorLineAndExit70()
    {
        var err = new StringWriter { NewLine = "\n" };
        int code = Program.Run(["groups", "--source", Oracle(Machine)], new CliConsole(new ThrowingWriter(), err, color: false));
        Assert.Equal(70, code);
        string[] lines = err.ToString().TrimEnd('\n').Split('\n');
        Assert.Single(lines);
        Assert.StartsWith("iommu: internal error: System.InvalidOperationException: simulated bug\\x0awith a second line (please report this", lines[0]);
    }

    [Fact]
    public void RootHelpListsExitCodes6And70()
    {
        var r = Run("--help");
        Assert.Contains("6 host left changed", r.Out);
        Assert.Contains("70 internal error", r.Out);
    }

    // ------------------------------------------------------------------ hangs and unbounded reads

    [Fact]
    public void AFifoAsSourceIsRefusedAtOnceNamingIt()
    {
        string dir = TempDir();
        try
        {
            string fifo = Path.Combine(dir, "machine.tar.gz");
            MakeFifo(fifo);
            var r = RunBounded(dir, "groups", "--source", fifo);
            AssertOneLineInputError(r, fifo, "FIFO");
        }
        finally { Cleanup(dir); }
    }

    [Fact]
    public void DevZeroAsSourceIsRefusedAtOnceAsACharacterDevice()
    {
        var r = RunBounded(null, "groups", "--source", "/dev/zero");
        AssertOneLineInputError(r, "/dev/zero", "character device");
    }

    [Theory]
    [InlineData("fifo")]
    [InlineData("/dev/zero")]
    public void APciIdsFileThatIsNotARegularFileIsBadInput(string kind)
    {
        string dir = TempDir();
        try
        {
            string ids = kind == "fifo" ? Path.Combine(dir, "pci.ids") : kind;
            if (kind == "fifo") MakeFifo(ids);
            var r = RunBounded(dir, "groups", "--source", Oracle(Machine), "--pci-ids", ids);
            Assert.True(r.Code == 3, $"exit {r.Code}: {r.Err}");
            Assert.Contains("--pci-ids", r.Err);
        }
        finally { Cleanup(dir); }
    }

    [Theory]
    [InlineData(Endpoint + "/config", "0000:01:00.0/config")]
    [InlineData(Endpoint + "/vendor", "0000:01:00.0/vendor")]
    [InlineData("proc/cmdline", "proc/cmdline")]
    [InlineData("sys/kernel/iommu_groups/7/type", "iommu_groups/7/type")]
    public void AFifoInASysfsRootIsReportedNamingItNeverBlocks(string member, string named)
    {
        string root = ExtractOracle(Machine);
        try
        {
            MakeFifo(Path.Combine(root, member));
            var r = RunBounded(root, "groups", "--source", root);
            Assert.NotEqual(70, r.Code);
            Assert.Contains(named, r.Err);
            Assert.Contains("FIFO", r.Err);
        }
        finally { Cleanup(root); }
    }

    // ------------------------------------------------------------------ wrong results

    [Fact]
    public void ACorruptTarHeaderInTheMiddleIsBadInputNamingTheMemberBeforeIt()
    {
        var tar = Tar(ReadMembers(Oracle(Machine)));
        var offsets = HeaderOffsets(tar);
        int h = offsets[offsets.Count / 2];
        for (int i = 148; i < 156; i++) tar[h + i] = 0; // a blank checksum: TarReader took it for the end of the archive
        var r = RunOnFile(Gzip(tar), "cut.tar.gz", "groups");
        AssertOneLineInputError(r, "cut.tar.gz", "corrupt", "after member");
    }

    [Fact]
    public void ACorruptFirstTarHeaderSaysTheFileIsNoTarArchive()
    {
        var tar = Tar(ReadMembers(Oracle(Machine)));
        tar[5] ^= 0x20; // the first header's name: its checksum no longer matches
        var r = RunOnFile(Gzip(tar), "first.tar.gz", "groups");
        AssertOneLineInputError(r, "first.tar.gz", "first header");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(7)]
    public void AGzipStreamCutInsideItsTrailerIsBadInput(int cut)
    {
        var bytes = File.ReadAllBytes(Oracle(Machine));
        var r = RunOnFile(bytes[..^cut], "trailer.tar.gz", "groups");
        AssertOneLineInputError(r, "trailer.tar.gz", "gzip");
    }

    [Fact]
    public void OneUndecodableDeviceKeepsItsKernelGroupWithoutItAndSaysSo()
    {
        string root = ExtractOracle(Machine);
        try
        {
            // A capability list that points back at itself: the device cannot be decoded.
            string config = Path.Combine(root, Endpoint, "config");
            var bytes = File.ReadAllBytes(config);
            bytes[0x06] |= 0x10; bytes[0x34] = 0x40; bytes[0x40] = 0x01; bytes[0x41] = 0x40;
            File.WriteAllBytes(config, bytes);
            var r = Run("groups", "--json", "--source", root);
            Assert.True(r.Code is 0 or 1, $"exit {r.Code}: {r.Err}");
            Assert.Contains("0000:01:00.0", r.Err);
            Assert.Contains("group 7 lists 0000:01:00.0, which could not be read", r.Err);
        }
        finally { Cleanup(root); }
    }

    [Fact]
    public void BridgesFormingALoopIsBadInputNamingTheFile()
    {
        const string json = """
        {"format": "iommukit-machine", "version": 1, "devices": [
          {"address": "0000:01:00.0", "vendor": "0x8086", "device": "0x1234", "class": "0x060400", "parent": "0000:02:00.0"},
          {"address": "0000:02:00.0", "vendor": "0x8086", "device": "0x1234", "class": "0x060400", "parent": "0000:01:00.0"}
        ]}
        """;
        var r = RunOnJson(json, "groups");
        AssertOneLineInputError(r, "machine.json", "loop");
    }

    [Fact]
    public void ControlCharactersInTheKernelReleaseAreEscapedWhenPrinted()
    {
        string json = ExportJson().Replace("\"kernel_release\": \"", "\"kernel_release\": \"\\u001b]0;pwned\\u0007\\nFORGED LINE ");
        var r = RunOnJson(json, "groups");
        Assert.True(r.Code is 0 or 1, r.Err);
        Assert.DoesNotContain('\u001b', r.Out + r.Err);
        Assert.DoesNotContain('\u0007', r.Out + r.Err);
        Assert.DoesNotContain(r.Lines, l => l.StartsWith("FORGED LINE", StringComparison.Ordinal));
        Assert.Contains(r.Lines, l => l.Contains("\\x1b]0;pwned\\x07\\x0aFORGED LINE", StringComparison.Ordinal));
    }

    [Fact]
    public void ControlCharactersInATarMemberNameAreEscapedInTheError()
    {
        var members = ReadMembers(Oracle(Machine));
        members.Add(new Member("/\u001b[2Jevil\nFORGED", Encoding.ASCII.GetBytes("x")));
        var r = RunOnFile(Gzip(Tar(members)), "names.tar.gz", "groups");
        AssertOneLineInputError(r, "names.tar.gz", "\\x1b[2Jevil\\x0aFORGED");
    }

    [Fact]
    public void ControlCharactersInAnLspciDeviceLineNeverReachTheTerminal()
    {
        string dump = File.ReadAllText(Path.Combine(FixturesDir, "lspci-generated", "b_rootports.vvnn.txt"));
        int nl = dump.IndexOf('\n');
        dump = dump[..nl].Replace("]:", "]: \u001b[31mRED\u001b]0;title\u0007") + dump[nl..];
        var r = RunOnFile(Encoding.UTF8.GetBytes(dump), "dump.txt", "devices");
        Assert.True(r.Code is 0 or 1 or 2 or 3, r.Err);
        Assert.DoesNotContain('\u001b', r.Out + r.Err);
        Assert.DoesNotContain('\u0007', r.Out + r.Err);
    }

    [Fact]
    public void AJsonMachineWithAUtf8ByteOrderMarkLoads()
    {
        var bytes = Encoding.UTF8.GetPreamble().Concat(Encoding.UTF8.GetBytes(ExportJson())).ToArray();
        var r = RunOnFile(bytes, "bom.json", "groups");
        Assert.True(r.Code is 0, $"exit {r.Code}: {r.Err}");
    }

    // ------------------------------------------------------------------ writes

    [Fact]
    public void SnapshotRefusesASymlinkAtTheOutputPathWithoutForce()
    {
        string root = ExtractOracle(Machine);
        string dir = TempDir();
        try
        {
            string victim = Path.Combine(dir, "victim.txt");
            File.WriteAllText(victim, "keep me");
            string output = Path.Combine(dir, "out.tar.gz");
            File.CreateSymbolicLink(output, victim);
            var r = Run("snapshot", "-o", output, "--root", root);
            Assert.Equal(4, r.Code);
            Assert.Equal("keep me", File.ReadAllText(victim));
            Assert.Equal(victim, new FileInfo(output).LinkTarget);
        }
        finally { Cleanup(root); Cleanup(dir); }
    }

    [Fact]
    public void SnapshotWithForceReplacesTheLinkNotItsTarget()
    {
        string root = ExtractOracle(Machine);
        string dir = TempDir();
        try
        {
            string victim = Path.Combine(dir, "victim.txt");
            File.WriteAllText(victim, "keep me");
            string output = Path.Combine(dir, "out.tar.gz");
            File.CreateSymbolicLink(output, victim);
            var r = Run("snapshot", "-o", output, "--root", root, "--force");
            Assert.True(r.Code == 0, r.Err);
            Assert.Equal("keep me", File.ReadAllText(victim));
            Assert.Null(new FileInfo(output).LinkTarget);
            Assert.Equal(0, Run("groups", "--source", output).Code);
            Assert.Equal(["out.tar.gz", "victim.txt"], Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        }
        finally { Cleanup(root); Cleanup(dir); }
    }

    [Fact]
    public void SnapshotWithForceOverAFifoReplacesItWithoutBlocking()
    {
        string root = ExtractOracle(Machine);
        string dir = TempDir();
        try
        {
            string output = Path.Combine(dir, "out.tar.gz");
            MakeFifo(output);
            var r = RunBounded(dir, "snapshot", "-o", output, "--root", root, "--force");
            Assert.True(r.Code == 0, r.Err);
            Assert.Equal(0, Run("groups", "--source", output).Code);
        }
        finally { Cleanup(root); Cleanup(dir); }
    }

    [Fact]
    public void ApplyNeverWritesThroughAnAbsoluteTypeLinkToOutsideTheRoot()
    {
        string root = ExtractOracle(Machine);
        string outside = TempDir();
        try
        {
            string victim = Path.Combine(outside, "type");
            File.WriteAllText(victim, "DMA\n");
            MakeLink(Path.Combine(root, "sys/kernel/iommu_groups/7/type"), victim);
            var r = Run("set-type", "7", "identity", "--source", root, "--apply", "--json");
            Assert.NotEqual(70, r.Code);
            Assert.Equal("DMA\n", File.ReadAllText(victim));
        }
        finally { Cleanup(root); Cleanup(outside); }
    }

    [Fact]
    public void ApplyNeverWritesIntoADriverDirectoryLinkedOutsideTheRoot()
    {
        string root = ExtractOracle(Machine);
        string outside = TempDir();
        try
        {
            MakeLink(Path.Combine(root, "sys/bus/pci/drivers/e1000e"), outside);
            var r = Run("set-type", "7", "identity", "--source", root, "--apply", "--json");
            Assert.NotEqual(70, r.Code);
            Assert.Empty(Directory.GetFileSystemEntries(outside));
        }
        finally { Cleanup(root); Cleanup(outside); }
    }
}
