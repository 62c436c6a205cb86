using System.Text.Json;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Cli.Tests;

/// <summary>
/// Issue 10, "behaviour users expect": <c>--source -</c> and <c>snapshot -o -</c>, device selectors (slot, id),
/// ls-iommu's filters and <c>-k</c>, the dump's own device names, and help.
/// </summary>
public class CliHabitsTests
{
    private static string Lspci(string name) => Path.Combine(CliRunner.FixturesDir, "lspci", name + ".txt");
    /// <summary>Z690 Pro RS: three identical SN850X NVMe drives, SATA, HD Audio and a Navi GPU's HDMI audio, lspci -k lines.</summary>
    private static readonly string Z690 = Lspci("intel-z690-alderlake-asrock-z690-pro-rs-debian-acs-iommugroups");
    /// <summary>B560M-HDV: a GTX 1660 whose four functions share slot 01:00.</summary>
    private static readonly string B560 = Lspci("intel-b560-rocketlake-asrock-b560m-hdv-debian-acs-iommugroups");

    private sealed record Piped(int Code, string Out, string Err, byte[] Binary);

    /// <summary>Runs the command with <paramref name="stdin"/> as standard input and a byte stream as standard output.</summary>
    private static Piped Run(byte[]? stdin, bool inputIsTerminal, bool outputIsTerminal, params string[] args)
    {
        var o = new StringWriter { NewLine = "\n" };
        var e = new StringWriter { NewLine = "\n" };
        using var binary = new MemoryStream();
        var console = new CliConsole(o, e, color: false, stdin is null ? null : () => new MemoryStream(stdin), binary)
        {
            InputIsTerminal = inputIsTerminal,
            OutputIsTerminal = outputIsTerminal,
        };
        int code = Program.Run(args, console);
        return new Piped(code, o.ToString(), e.ToString().Replace(CliRunner.FixturesDir + "/", ""), binary.ToArray());
    }

    private static Piped Run(byte[]? stdin, params string[] args) => Run(stdin, false, false, args);

    // ------------------------------------------------------------------ --source - and snapshot -o -

    [Theory]
    [InlineData("lspci")]
    [InlineData("tarball")]
    [InlineData("json")]
    public void SourceDashReadsEveryKindFromStandardInputAsTheFileWouldBeRead(string kind)
    {
        string path = kind switch
        {
            "lspci" => B560,
            "tarball" => CliRunner.Oracle("c_switch"),
            _ => Path.Combine(Path.GetTempPath(), $"iommukit-stdin-{Guid.NewGuid():n}.json"),
        };
        try
        {
            if (kind == "json") File.WriteAllText(path, CliRunner.Run("export", "--source", B560).Out);
            var fromFileRun = CliRunner.Run("groups", "--source", path, "--json");
            var fromFile = fromFileRun.Json;
            var piped = Run(File.ReadAllBytes(path), "groups", "--source", "-", "--json");
            Assert.Equal(fromFileRun.Code, piped.Code);
            using var doc = JsonDocument.Parse(piped.Out);
            Assert.Equal("standard input", doc.RootElement.GetProperty("source").GetString());
            Assert.Equal(fromFile.GetProperty("groups").GetRawText(), doc.RootElement.GetProperty("groups").GetRawText());
        }
        finally
        {
            if (kind == "json") File.Delete(path);
        }
    }

    [Theory]
    [InlineData("", "nothing was given")]
    [InlineData("hello\nworld\n", "not a machine")]
    public void BadStandardInputIsOneLineBadInputNamingIt(string text, string rule)
    {
        var r = Run(System.Text.Encoding.UTF8.GetBytes(text), "groups", "--source", "-");
        Assert.Equal(3, r.Code);
        Assert.Equal("", r.Out);
        var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("iommu: standard input: ", line);
        Assert.Contains(rule, line);
    }

    [Fact]
    public void SourceDashOnATerminalIsRefusedInsteadOfWaitingForTheKeyboard()
    {
        var r = Run(File.ReadAllBytes(B560), inputIsTerminal: true, outputIsTerminal: false, "groups", "--source", "-");
        Assert.Equal(4, r.Code);
        Assert.Contains("standard input is a terminal", r.Err);
    }

    [Fact]
    public void StandardInputIsReadOnceSoDiffOfTwoDashesIsAUsageError()
    {
        var r = Run(File.ReadAllBytes(B560), "diff", "-", "-");
        Assert.Equal(4, r.Code);
        Assert.Contains("standard input can be read only once", r.Err);
    }

    [Fact]
    public void SnapshotToDashWritesTheSameTarballAsToAFileAndNothingElseOnStandardOutput()
    {
        string dir = ExtractTemp("c_switch");
        string file = dir + ".tar.gz";
        try
        {
            Assert.Equal(0, CliRunner.Run("snapshot", "-o", file, "--root", dir).Code);
            var r = Run(null, "snapshot", "-o", "-", "--root", dir);
            Assert.Equal(0, r.Code);
            Assert.Equal("", r.Out);
            Assert.Equal(File.ReadAllBytes(file), r.Binary);
            Assert.StartsWith("standard output: 20 PCI functions, ", r.Err);
            // What went to standard output reads back as the machine.
            var back = Run(r.Binary, "devices", "--source", "-");
            Assert.Equal(0, back.Code);
            Assert.Equal(CliRunner.Run("devices", "--source", file).Lines[1..], back.Out.Split('\n')[1..^1]);
        }
        finally
        {
            File.Delete(file);
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void SnapshotToDashOnATerminalIsRefusedAndWritesNothing()
    {
        string dir = ExtractTemp("c_switch");
        try
        {
            var r = Run(null, inputIsTerminal: false, outputIsTerminal: true, "snapshot", "-o", "-", "--root", dir);
            Assert.Equal(4, r.Code);
            Assert.Empty(r.Binary);
            Assert.Contains("standard output is a terminal", r.Err);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    // ------------------------------------------------------------------ selectors

    [Fact]
    public void ExplainOfASlotExplainsEveryFunctionOfTheCardInAddressOrder()
    {
        var r = CliRunner.Run("explain", "01:00", "--source", B560, "--json");
        Assert.Equal(0, r.Code);
        var devices = r.Json.EnumerateArray().Select(e => e.GetProperty("device").GetProperty("address").GetString()!).ToArray();
        Assert.Equal(["0000:01:00.0", "0000:01:00.1", "0000:01:00.2", "0000:01:00.3"], devices);
        var text = CliRunner.Run("explain", "01:00", "--source", B560);
        Assert.Single(text.Lines, l => l.StartsWith("Source: ", StringComparison.Ordinal));
        Assert.Equal(4, text.Lines.Count(l => l == "Why:"));
    }

    [Fact]
    public void ExplainOfAVendorDeviceIdExplainsEachMatchingDevice()
    {
        var r = CliRunner.Run("explain", "15b7:5030", "--source", Z690, "--json");
        Assert.Equal(0, r.Code);
        Assert.Equal(["0000:04:00.0", "0000:05:00.0", "0000:06:00.0"],
            r.Json.EnumerateArray().Select(e => e.GetProperty("device").GetProperty("address").GetString()!).ToArray());
        // One device: the single object of docs/json.md, as before.
        var one = CliRunner.Run("explain", "10de:2184", "--source", B560, "--json");
        Assert.Equal("0000:01:00.0", one.Json.GetProperty("device").GetProperty("address").GetString());
    }

    [Fact]
    public void AnIdSeveralCardsShareIsAnErrorListingThemWhereOneCardIsNeeded()
    {
        foreach (var command in new[] { "vfio-check", "bind" })
        {
            var r = CliRunner.Run(command, "15b7:5030", "--source", Z690);
            Assert.Equal(3, r.Code);
            Assert.Equal("iommu: 15b7:5030 matches 3 devices in lspci/intel-z690-alderlake-asrock-z690-pro-rs-debian-acs-iommugroups.txt: " +
                         "04:00.0, 05:00.0, 06:00.0; give one address\n", r.Err);
        }
    }

    [Fact]
    public void ASlotOrIdNamingOneCardWorksWhereOneCardIsNeeded()
    {
        var bySlot = CliRunner.Run("vfio-check", "01:00", "--source", B560, "--json").Json;
        var byId = CliRunner.Run("vfio-check", "10de:2184", "--source", B560, "--json").Json;
        var byAddress = CliRunner.Run("vfio-check", "01:00.0", "--source", B560, "--json").Json;
        Assert.Equal(byAddress.GetRawText(), bySlot.GetRawText());
        Assert.Equal(byAddress.GetRawText(), byId.GetRawText());
    }

    [Theory]
    [InlineData("8086:ffff", "8086:ffff: no such device in ", "; devices of vendor 8086: 00:00.0 [8086:4c43], ")]
    [InlineData("07:00", "07:00: no such device in ", "; nothing on bus 07 either")]
    [InlineData("01:00.7", "01:00.7: no such device in ", "; on bus 01: 01:00.0, 01:00.1, 01:00.2, 01:00.3")]
    public void NoMatchIsOneLineListingWhatIsNear(string selector, string start, string near)
    {
        var r = CliRunner.Run("explain", selector, "--source", B560);
        Assert.Equal(3, r.Code);
        var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("iommu: " + start, line);
        Assert.Contains(near, line);
    }

    // ------------------------------------------------------------------ ls-iommu filters and -k

    private static string[] GroupAddresses(params string[] args) =>
        CliRunner.Run(["groups", "--source", Z690, "--json", .. args]).Json.GetProperty("groups").EnumerateArray()
            .SelectMany(g => g.GetProperty("devices").EnumerateArray()).Select(d => d.GetProperty("address").GetString()!).ToArray();

    [Fact]
    public void ClassFiltersKeepTheGroupsHoldingSuchADevice()
    {
        Assert.Contains("0000:00:17.0", GroupAddresses("--sata"));
        Assert.DoesNotContain("0000:04:00.0", GroupAddresses("--sata"));
        var nvme = GroupAddresses("--nvme");
        Assert.Contains("0000:04:00.0", nvme);
        Assert.Contains("0000:09:00.0", nvme);
        Assert.DoesNotContain("0000:00:17.0", nvme);
        var audio = GroupAddresses("--audio");
        Assert.Contains("0000:00:1f.3", audio);
        Assert.Contains("0000:03:00.1", audio); // the GPU's HDMI audio
        Assert.Equal(GroupAddresses("--network"), GroupAddresses("--net"));
    }

    [Fact]
    public void IdAndPciaddrListsKeepTheGroupsOfTheNamedDevices()
    {
        var ids = GroupAddresses("--id", "15b7:5006,8086:7ae2");
        Assert.Contains("0000:09:00.0", ids);
        Assert.Contains("0000:00:17.0", ids);
        Assert.DoesNotContain("0000:04:00.0", ids);
        Assert.Equal(GroupAddresses("--id", "15b7:5006", "--id", "8086:7ae2"), ids);
        var addresses = GroupAddresses("--pciaddr", "04:00,00:17.0");
        Assert.Contains("0000:04:00.0", addresses);
        Assert.Contains("0000:00:17.0", addresses);
        Assert.DoesNotContain("0000:05:00.0", addresses);
        // Kinds combine with AND: the NVMe drives among 04:00 and 09:00 with the SN750's id.
        Assert.Contains("0000:09:00.0", GroupAddresses("--nvme", "--pciaddr", "04:00,09:00", "--id", "15b7:5006"));
        Assert.DoesNotContain("0000:04:00.0", GroupAddresses("--nvme", "--pciaddr", "04:00,09:00", "--id", "15b7:5006"));
    }

    [Theory]
    [InlineData("--id", "04:00.0", "--id '04:00.0' is an address")]
    [InlineData("--pciaddr", "15b7:5030", "--pciaddr '15b7:5030' is a vendor:device id")]
    [InlineData("--id", "15b7:5030,", "--id '' is not a device")]
    public void AMisplacedOrMalformedFilterValueIsBadInput(string option, string value, string message)
    {
        var r = CliRunner.Run("groups", "--source", Z690, option, value);
        Assert.Equal(3, r.Code);
        Assert.Contains(message, r.Err);
    }

    [Fact]
    public void KernelOptionPrintsTheDriverAndModulesAsLspciKDoes()
    {
        var r = CliRunner.Run("groups", "--source", Z690, "--nvme", "-k");
        int i = Array.FindIndex(r.Lines, l => l.StartsWith("  04:00.0 ", StringComparison.Ordinal));
        Assert.True(i >= 0);
        Assert.Equal("      Kernel driver in use: nvme", r.Lines[i + 1]);
        Assert.Equal("      Kernel modules: nvme", r.Lines[i + 2]);
        Assert.DoesNotContain("driver: nvme", r.Lines[i]);
        var json = CliRunner.Run("devices", "--source", Z690, "--json", "--pciaddr", "04:00.0").Json.GetProperty("devices");
        Assert.Equal("nvme", Assert.Single(json.EnumerateArray()).GetProperty("kernel_modules")[0].GetString());
    }

    [Fact]
    public void DevicesFilterKeepsTheMatchesAndTheBridgesAboveThem()
    {
        var r = CliRunner.Run("devices", "--source", B560, "--audio", "-k");
        Assert.Equal(0, r.Code);
        Assert.Contains(r.Lines, l => l.Contains("0000:01:00.1 [10de:1aeb] 0403 "));
        Assert.Contains(r.Lines, l => l.Contains("0000:00:01.0 "));      // the root port above the GPU
        Assert.DoesNotContain(r.Lines, l => l.Contains("0000:01:00.0 ")); // not audio, not above audio
        Assert.Contains(r.Lines, l => l.TrimStart('│', ' ').StartsWith("Kernel modules: snd_hda_intel", StringComparison.Ordinal));
        Assert.StartsWith("Showing 2 of them (--audio)", r.Lines[^1]);
    }

    // ------------------------------------------------------------------ names

    [Fact]
    public void AnLspciDumpNamesDevicesWithItsOwnNamesInTextAndJson()
    {
        var d = CliRunner.Run("explain", "03:00.1", "--source", Z690, "--json", "--pci-ids", "none").Json.GetProperty("device");
        Assert.Equal("Advanced Micro Devices, Inc. [AMD/ATI] Navi 21/23 HDMI/DP Audio Controller", d.GetProperty("name").GetString());
        Assert.Equal("Audio device", d.GetProperty("class_name").GetString());
        var legacy = CliRunner.Run("groups", "--source", Z690, "--legacy", "--pci-ids", "none", "--pciaddr", "03:00.1");
        Assert.Contains("03:00.1 Audio device [0403]: Advanced Micro Devices, Inc. [AMD/ATI] Navi 21/23 HDMI/DP Audio Controller [1002:ab28]", legacy.Out);
    }

    [Fact]
    public void ASnapshotIsNamedFromPciIds()
    {
        var d = CliRunner.Run("explain", "00:1f.2", "--source", CliRunner.Oracle("g_k612_intel_mixed"), "--json", "--pci-ids", CliRunner.SampleIds).Json.GetProperty("device");
        var ids = PciIds.TryLoad(CliRunner.SampleIds)!;
        Assert.Equal(ids.Name(Convert.ToUInt16(d.GetProperty("vendor").GetString(), 16), Convert.ToUInt16(d.GetProperty("device").GetString(), 16)),
            d.GetProperty("name").GetString());
    }

    // ------------------------------------------------------------------ help

    [Fact]
    public void IommuAlonePrintsHelpOnceWithExamplesAndExitsZero()
    {
        var alone = CliRunner.Run();
        Assert.Equal(0, alone.Code);
        Assert.Equal(alone.Out, CliRunner.Run("--help").Out);
        Assert.Contains("Examples:", alone.Out);
        foreach (var c in Program.BuildRoot(new CliConsole(TextWriter.Null, TextWriter.Null, false)).Subcommands)
            Assert.Single(alone.Lines, l => l.StartsWith($"  {c.Name} ", StringComparison.Ordinal));
        // Nothing said twice: no line of the root help repeats, and the input caps appear once.
        var lines = alone.Lines.Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
        Assert.Equal(lines.Count, lines.Distinct().Count());
        Assert.Single(lines, l => l.StartsWith("Input caps", StringComparison.Ordinal));
        // tools/ship/manpage.sh reads System.CommandLine's layout: the summary under Description:, commands last.
        Assert.Equal("Description:", alone.Lines[0]);
        int commands = Array.IndexOf(alone.Lines, "Commands:");
        Assert.True(commands > 0);
        Assert.All(alone.Lines[(commands + 1)..], l => Assert.Matches("^  [a-z-]+ ", l));
    }

    [Fact]
    public void ACommandLineNamingACommandBuildsThatCommandAsTheFullRootHasIt()
    {
        // The registry's names are the names its factories give, so a command line finds its command by name.
        var console = new CliConsole(TextWriter.Null, TextWriter.Null, false);
        var all = Program.BuildRoot(console).Subcommands.Select(c => c.Name).ToList();
        Assert.Equal(all, Commands.CommandRegistry.Names);
        foreach (var name in all)
        {
            var one = Program.BuildRoot(console, [name, "--help"]).Subcommands;
            Assert.Equal(name, Assert.Single(one).Name);
            // The same options and help as in the full root.
            var full = Program.BuildRoot(console).Subcommands.Single(c => c.Name == name);
            Assert.Equal(full.Options.Select(o => o.Name), one[0].Options.Select(o => o.Name));
            Assert.Equal(full.Description, one[0].Description);
        }
        // Anything else builds every command: the root's help, and a mistyped name the parser answers.
        Assert.Equal(all.Count, Program.BuildRoot(console, ["grops"]).Subcommands.Count);
        Assert.Equal(all.Count, Program.BuildRoot(console, ["--version"]).Subcommands.Count);
        Assert.Equal(all.Count, Program.BuildRoot(console, []).Subcommands.Count);
        var typo = CliRunner.Run("grops");
        Assert.NotEqual(0, typo.Code);
        Assert.Contains("grops", typo.Err);
    }

    [Theory]
    [InlineData("groups")]
    [InlineData("devices")]
    [InlineData("explain")]
    [InlineData("vfio-check")]
    [InlineData("bind")]
    [InlineData("snapshot")]
    public void CommandHelpHasExamplesAndNoRepeatedParagraph(string command)
    {
        var r = CliRunner.Run(command, "--help");
        Assert.Equal(0, r.Code);
        Assert.Contains("Examples: iommu " + command, r.Out);
        var paragraphs = r.Lines.Where(l => l.Trim().Length > 40).Select(l => l.Trim()).ToList();
        Assert.Equal(paragraphs.Count, paragraphs.Distinct().Count());
    }

    private static string ExtractTemp(string name)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"iommukit-habits-{Guid.NewGuid():n}");
        Directory.CreateDirectory(dir);
        using var fs = File.OpenRead(CliRunner.Oracle(name));
        using var gz = new System.IO.Compression.GZipStream(fs, System.IO.Compression.CompressionMode.Decompress);
        System.Formats.Tar.TarFile.ExtractToDirectory(gz, dir, overwriteFiles: false);
        return dir;
    }
}
