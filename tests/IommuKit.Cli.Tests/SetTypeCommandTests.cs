using System.Formats.Tar;
using System.IO.Compression;
using System.Text.Json;
using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

public class SetTypeCommandTests
{
    public static IEnumerable<object[]> TypeWriteMachines()
    {
        foreach (var f in Directory.GetFiles(Path.Combine(FixturesDir, "oracle"), "*.expected.json").Order(StringComparer.Ordinal))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(f));
            if (doc.RootElement.GetProperty("type_writes").GetArrayLength() > 0) yield return [Path.GetFileName(f)[..^".expected.json".Length]];
        }
    }

    /// <summary>
    /// The writes the kernel saw while a group's type and drivers were as the snapshot shows them: per group, from the
    /// first write while nothing was unbound yet (or the device never had a driver), up to the first that changed the type.
    /// </summary>
    private static IEnumerable<JsonElement> WritesOnTheSnapshotState(JsonElement root)
    {
        var groups = root.GetProperty("type_test_groups").EnumerateArray().ToDictionary(g => g.GetProperty("group").GetInt32());
        var done = new HashSet<int>();
        foreach (var w in root.GetProperty("type_writes").EnumerateArray())
        {
            int id = w.GetProperty("group").GetInt32();
            if (done.Contains(id)) continue;
            var g = groups[id];
            string state = w.GetProperty("state").GetString()!;
            bool asSnapshot = state is "bound" or "multi" || (state == "unbound" && g.GetProperty("driver").ValueKind == JsonValueKind.Null);
            if (!asSnapshot || w.GetProperty("before").GetString() != g.GetProperty("type").GetString()) { done.Add(id); continue; }
            yield return w;
            if (w.GetProperty("after").GetString() != w.GetProperty("before").GetString()) done.Add(id);
        }
    }

    [Theory]
    [MemberData(nameof(TypeWriteMachines))]
    public void EveryWriteOnTheSnapshotStateGetsTheKernelsResultFromSetType(string machine)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(OracleExpected(machine)));
        int n = 0;
        foreach (var w in WritesOnTheSnapshotState(doc.RootElement))
        {
            string value = w.GetProperty("value").GetString()!;
            int group = w.GetProperty("group").GetInt32();
            var r = Run("set-type", group.ToString(System.Globalization.CultureInfo.InvariantCulture), value, "--source", Oracle(machine), "--json");
            string expected = w.GetProperty("result").GetString()!;
            Assert.True(expected == r.Json.GetProperty("result").GetString(), $"{machine} group {group} \"{value}\": expected {expected}, got {r.Out}");
            Assert.Equal(expected == "ok" ? 0 : 1, r.Code);
            Assert.Equal(w.GetProperty("after").GetString(), r.Json.GetProperty("type_after").GetString());
            Assert.Equal(group, r.Json.GetProperty("group").GetInt32());
            n++;
        }
        Assert.True(n >= 10, $"only {n} writes checked");
    }

    [Fact]
    public void RefusedWriteExplainsTheErrnoAndTheStepsThatMakeItSucceed()
    {
        var r = Run("set-type", "7", "identity", "--source", Oracle("g_k612_intel_typetest"));
        Assert.Equal(1, r.Code);
        Assert.Equal([
            "group 7: writing \"identity\" would fail with EPERM (Operation not permitted) (Linux 6.12 rules); the type stays DMA-FQ",
            "  why: group 7 is in use by kernel drivers that use the DMA API: 0000:01:00.0 (e1000e); unbind them (or bind vfio-pci) first",
            "  to make it succeed:",
            "    1. unbind 0000:01:00.0 from e1000e: echo 0000:01:00.0 > /sys/bus/pci/drivers/e1000e/unbind",
            "    2. write the type: echo identity > /sys/kernel/iommu_groups/7/type",
            "    3. bind 0000:01:00.0 back to e1000e: echo 0000:01:00.0 > /sys/bus/pci/drivers/e1000e/bind",
        ], r.Lines);
    }

    [Fact]
    public void MultiDeviceGroupOn61HasNoStepsThatHelp()
    {
        var r = Run("set-type", "6", "DMA", "--source", Oracle("e_typetest_dma"), "--json");
        Assert.Equal("EINVAL", r.Json.GetProperty("result").GetString());
        Assert.Equal(0, r.Json.GetProperty("steps").GetArrayLength());
        Assert.Contains("single-device groups only", r.Json.GetProperty("reason").GetString());
    }

    [Fact]
    public void PcieportBoundGroupWouldSucceedOn612()
    {
        var r = Run("set-type", "3", "identity", "--source", Oracle("g_k612_intel_typetest"));
        Assert.Equal(0, r.Code);
        Assert.Equal("group 3: writing \"identity\" would succeed (Linux 6.12 rules): DMA-FQ -> identity", r.Lines[0]);
    }

    [Fact]
    public void UnknownGroupIsBadInputAndNoIommuIsExitTwo()
    {
        Assert.Equal(3, Run("set-type", "42", "DMA", "--source", Oracle("e_typetest_dma")).Code);
        Assert.Equal(2, Run("set-type", "0", "DMA", "--source", Oracle("f_no_viommu")).Code);
    }

    /// <summary>Runs <paramref name="body"/> on an oracle snapshot extracted into a fresh directory root, removed afterwards.</summary>
    private static void WithExtractedRoot(string machine, Action<string> body)
    {
        string root = Path.Combine(Path.GetTempPath(), "iommukit-settype-" + Guid.NewGuid().ToString("N"));
        try
        {
            Directory.CreateDirectory(root);
            using (var gz = new GZipStream(File.OpenRead(Path.Combine(FixturesDir, "oracle", machine + ".tar.gz")), CompressionMode.Decompress))
                TarFile.ExtractToDirectory(gz, root, overwriteFiles: false);
            body(root);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void ApplyOnADirectoryRootUnbindsWritesRebindsAndVerifies()
    {
        WithExtractedRoot("g_k612_intel_typetest", root =>
        {
            var r = Run("set-type", "7", "identity", "--source", root, "--apply", "--yes", "--json");
            Assert.True(r.Code == 0, r.Out + r.Err);
            Assert.True(r.Json.GetProperty("applied").GetBoolean());
            Assert.Equal("identity", r.Json.GetProperty("type_now").GetString());
            Assert.Equal([
                "echo 0000:01:00.0 > /sys/bus/pci/drivers/e1000e/unbind",
                "echo identity > /sys/kernel/iommu_groups/7/type",
                "echo 0000:01:00.0 > /sys/bus/pci/drivers/e1000e/bind",
            ], r.Json.GetProperty("apply_log").EnumerateArray().Select(e => e.GetString()!).ToArray());
            Assert.Equal("identity", File.ReadAllText(Path.Combine(root, "sys/kernel/iommu_groups/7/type")).Trim());
        });
    }

    [Fact]
    public void ApplyWhoseRebindFailsPutsTheOldTypeBackAndSaysSo()
    {
        WithExtractedRoot("g_k612_intel_typetest", root =>
        {
            string typeFile = Path.Combine(root, "sys/kernel/iommu_groups/7/type");
            string old = File.ReadAllText(typeFile).Trim();
            // A directory where the driver's bind file belongs: the write of the bind step fails.
            string bind = Path.Combine(root, "sys/bus/pci/drivers/e1000e/bind");
            if (File.Exists(bind)) File.Delete(bind);
            Directory.CreateDirectory(bind);
            var r = Run("set-type", "7", "identity", "--source", root, "--apply", "--yes", "--json");
            Assert.Equal(1, r.Code);
            Assert.False(r.Json.GetProperty("applied").GetBoolean());
            Assert.Equal(old, r.Json.GetProperty("type_now").GetString());
            Assert.Equal(old, File.ReadAllText(typeFile).Trim());
            var log = r.Json.GetProperty("apply_log").EnumerateArray().Select(e => e.GetString()!).ToArray();
            Assert.Contains(log, l => l.StartsWith("echo 0000:01:00.0 > /sys/bus/pci/drivers/e1000e/bind failed", StringComparison.Ordinal));
            Assert.Contains($"echo {old} > /sys/kernel/iommu_groups/7/type", log);
        });
    }

    [Fact]
    public void ApplyAsksBeforeUnbindingSaysTheLinkDropsAndHasNoFailureHeadline()
    {
        WithExtractedRoot("g_k612_intel_typetest", root =>
        {
            string? asked = null;
            Cli.Commands.BindCommand.Confirm = q => { asked = q; return true; };
            try
            {
                var r = Run("set-type", "7", "identity", "--source", root, "--apply");
                Assert.True(r.Code == 0, r.Out + r.Err);
                Assert.Contains("0000:01:00.0 from e1000e (its network link drops)", asked);
                Assert.DoesNotContain(r.Lines, l => l.Contains("would fail", StringComparison.Ordinal));
                Assert.Equal("group 7: type is now identity", r.Lines[^1]);
                Cli.Commands.BindCommand.Confirm = _ => false;
                var no = Run("set-type", "7", "DMA", "--source", root, "--apply");
                Assert.Equal(1, no.Code);
                Assert.Equal("identity", File.ReadAllText(Path.Combine(root, "sys/kernel/iommu_groups/7/type")).Trim());
            }
            finally
            {
                Cli.Commands.BindCommand.Confirm = null;
            }
        });
    }

    [Fact]
    public void ApplyOnASnapshotTarballIsUnsupported()
    {
        var r = Run("set-type", "3", "identity", "--source", Oracle("g_k612_intel_typetest"), "--apply");
        Assert.Equal(5, r.Code);
    }
}

public class SysfsCommandTests
{
    /// <summary>
    /// Machines with groups, minus two known gaps about facts a snapshot lacks (see OracleCoreTests): e_cachingmode
    /// has no cap register, and in h_hotplug_igfx a display device joined its group by hot-plug after boot.
    /// </summary>
    public static IEnumerable<object[]> PredictableMachines() =>
        MachinesWithGroups().Where(m => (string)m[0] is not ("e_cachingmode" or "h_hotplug_igfx"));

    [Theory]
    [MemberData(nameof(PredictableMachines))]
    public void TreeShowsTheKernelsTypeAndReservedRegionsForEveryGroup(string machine)
    {
        var r = Run("sysfs", "--source", Oracle(machine), "--json");
        Assert.Equal(0, r.Code);
        using var exp = JsonDocument.Parse(File.ReadAllText(OracleExpected(machine)));
        var got = r.Json.GetProperty("groups").EnumerateArray().ToList();
        foreach (var e in exp.RootElement.GetProperty("groups").EnumerateArray())
        {
            var devs = e.GetProperty("devices").EnumerateArray().Select(d => d.GetString()!).ToHashSet();
            var g = got.Single(x => x.GetProperty("devices").EnumerateObject().Select(p => p.Name).ToHashSet().SetEquals(devs));
            Assert.Equal(e.GetProperty("type").GetString(), g.GetProperty("type").GetString());
            Assert.Equal(
                e.GetProperty("reserved_regions").EnumerateArray().Select(x => $"{x.GetProperty("start").GetString()} {x.GetProperty("end").GetString()} {x.GetProperty("type").GetString()}"),
                g.GetProperty("reserved_regions").EnumerateArray().Select(x => x.GetString()!));
        }
    }

    [Fact]
    public void TextTreeListsLinksAndFileContents()
    {
        var r = Run("sysfs", "--source", Oracle("c_switch"));
        Assert.Equal(0, r.Code);
        Assert.Equal("/sys/kernel/iommu_groups/", r.Lines[0]);
        Assert.Contains("/sys/kernel/iommu_groups/0/devices/0000:00:00.0 -> ../../../../devices/pci0000:00/0000:00:00.0", r.Lines);
        Assert.Contains(r.Lines, l => l.EndsWith("/0000:02:00.0 -> ../../../../devices/pci0000:00/0000:00:06.0/0000:01:00.0/0000:02:00.0", StringComparison.Ordinal));
        int t = Array.IndexOf(r.Lines, "/sys/kernel/iommu_groups/0/type");
        Assert.Equal("    DMA-FQ", r.Lines[t + 1]);
        int rr = Array.IndexOf(r.Lines, "/sys/kernel/iommu_groups/0/reserved_regions");
        Assert.Equal("    0x00000000fee00000 0x00000000feefffff msi", r.Lines[rr + 1]);
    }

    [Fact]
    public void NoIommuIsExitTwo() => Assert.Equal(2, Run("sysfs", "--source", Oracle("f_intel_iommu_off")).Code);
}
