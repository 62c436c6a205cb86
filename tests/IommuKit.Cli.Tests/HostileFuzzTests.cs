using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Xunit;
using static IommuKit.Cli.Tests.HostileKit;

namespace IommuKit.Cli.Tests;

/// <summary>
/// The attack of issue 12 kept in the suite, bounded: mutated snapshots, lspci text and hex, JSON machines and sysfs
/// directory roots (fixed seeds, so a failure reproduces), each run through <see cref="Program.Run"/> as a user would.
/// A case fails on an internal error (exit 70: an exception other than bad input), a run over 10 s, a write outside
/// the output path or the root, or an export that does not load back to the same machine.
/// </summary>
/// <remarks>
/// Every case runs <c>export</c> (the load, and the round trip), and then one more command in turn (groups, groups
/// --json, explain, vfio-check, devices, sysfs, whatif, set-type; on directory roots also snapshot and set-type
/// --apply), so every command meets every kind of input many times within the budget (under two minutes in all on a
/// 2-core machine). Each kind is its own class so xunit runs them side by side.
/// </remarks>
internal static class Fuzz
{
    /// <summary>Cases per input kind (directory roots cost a write of the tree per case, so they get fewer).</summary>
    public const int CasesPerKind = 1500;
    public const int DirectoryCases = 60;

    private static readonly string[][] Commands =
    [
        ["groups"],
        ["groups", "--json"],
        ["explain", "@dev"],
        ["vfio-check", "@dev"],
        ["devices", "--json"],
        ["sysfs"],
        ["whatif", "--cmdline", "intel_iommu=on pcie_acs_override=downstream,multifunction"],
        ["whatif", "--move", "@dev=00:01.0"],
        ["diff", "@src", "@oracle"],
        ["vfio-check", "--group", "@group", "--json"],
        ["set-type", "@group", "identity", "--json"],
        ["devices"],
        ["slots", "--for", "@dev", "--json"],
    ];

    private static readonly string[] HostileTexts =
    [
        "", "\n", "0x", "0xffffffffffffffffff", "-1", "\u001b[2J\u001b]0;pwned\u0007", "a\nb\nc", "\ud800", "é", "../../..",
        new string('9', 300), "DMA-FQ\nidentity", "0x00000000fee00000 0x00000000feefffff msi\n0x1 0x0 bad", "identity",
    ];

    private static readonly string[] HostileLinks =
    [
        "/", "..", "../../../../../../../../..", "", ".", "self", "/sys/bus/pci/drivers/x", "a/../../../../../../..",
        "../../../../bus/pci/drivers/", "/proc", "../../../devices/pci0000:00",
    ];

    /// <summary>One run; fails the test on exit 70 or a run over 10 s.</summary>
    public static CliRunner.Result RunChecked(string what, params string[] args)
    {
        var sw = Stopwatch.StartNew();
        var r = CliRunner.Run(args);
        sw.Stop();
        Assert.True(r.Code != 70, $"{what}: iommu {string.Join(' ', args)}: internal error: {r.Err}");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"{what}: iommu {string.Join(' ', args)} took {sw.Elapsed.TotalSeconds:F1} s");
        return r;
    }

    /// <summary>
    /// Runs <c>export</c> on <paramref name="source"/> and, when it loads, checks the export loads back to the same
    /// machine, then runs command number <paramref name="k"/>. Returns whether the source loaded.
    /// </summary>
    public static bool RunCase(string what, string source, int k, string scratch)
    {
        // IOMMUKIT_FUZZ_COLLECT=DIR: record each failing case there (input and message) and go on, to see them all at once.
        if (Environment.GetEnvironmentVariable("IOMMUKIT_FUZZ_COLLECT") is { Length: > 0 } collect)
        {
            try { return RunCaseCore(what, source, k, scratch); }
            catch (Xunit.Sdk.XunitException ex)
            {
                string name = what.Replace(' ', '-');
                if (File.Exists(source)) File.Copy(source, Path.Combine(collect, name + ".input"), overwrite: true);
                File.WriteAllText(Path.Combine(collect, name + ".message"), ex.Message);
                return false;
            }
        }
        return RunCaseCore(what, source, k, scratch);
    }

    private static bool RunCaseCore(string what, string source, int k, string scratch)
    {
        // IOMMUKIT_FUZZ_TRACE=DIR keeps each case's input there before it runs (to reproduce a crash of the test host).
        if (Environment.GetEnvironmentVariable("IOMMUKIT_FUZZ_TRACE") is { Length: > 0 } trace)
        {
            string keep = Path.Combine(trace, what.Split(' ')[0]);
            if (Directory.Exists(source)) File.WriteAllText(keep + ".txt", $"{what}\n");
            else File.Copy(source, keep + ".input", overwrite: true);
            File.WriteAllText(keep + ".case", what);
        }
        var export = RunChecked(what, "export", "--source", source);
        if (export.Code != 0) return false;
        string json = Path.Combine(scratch, "export.json");
        File.WriteAllText(json, export.Out);
        var again = RunChecked(what + " (export loaded back)", "export", "--source", json);
        Assert.True(again.Code == 0, $"{what}: the export does not load back: {again.Err}");
        Assert.True(WithoutSource(export.Out) == WithoutSource(again.Out), $"{what}: the export loads back to another machine");
        string dev = "00:00.0", group = "0";
        try
        {
            var doc = JsonNode.Parse(export.Out)!;
            if (doc["devices"] is JsonArray { Count: > 0 } devs) dev = (string)devs[k % devs.Count]!["address"]!;
            if (doc["kernel_groups"] is JsonArray { Count: > 0 } gs) group = ((int)gs[k % gs.Count]!["id"]!).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is System.Text.Json.JsonException or InvalidOperationException or FormatException)
        {
            // The export was valid enough to load back; odd values only change which device is asked about.
        }
        var cmd = Commands[k % Commands.Length];
        var args = cmd.Select(a => a.Replace("@dev", dev).Replace("@group", group).Replace("@src", source).Replace("@oracle", CliRunner.Oracle("c_switch")));
        if (cmd[0] != "diff") args = args.Append("--source").Append(source);
        RunChecked(what, args.ToArray());
        return true;
    }

    private static string WithoutSource(string json)
    {
        var node = JsonNode.Parse(json)!.AsObject();
        node.Remove("source");
        return node.ToJsonString();
    }

    /// <summary>The task's result, or a failure when it has not finished within <paramref name="seconds"/> (blocked on a FIFO).</summary>
    public static bool Within(Task<bool> task, int seconds, string what)
    {
        Assert.True(task.Wait(TimeSpan.FromSeconds(seconds)), $"{what}: blocked for {seconds} s");
        return task.Result;
    }

    public static string Pick(Random rng, IReadOnlyList<string> list) => list[rng.Next(list.Count)];

    /// <summary>A structured mutation of a snapshot's members (the same mutations serve tarballs and directory roots).</summary>
    public static List<Member> MutateMembers(Random rng, List<Member> baseMembers)
    {
        var m = new List<Member>(baseMembers);
        int edits = 1 + rng.Next(3);
        for (int e = 0; e < edits; e++)
        {
            int i = rng.Next(m.Count);
            var x = m[i];
            switch (rng.Next(9))
            {
                case 0 or 1 when x.Data is { Length: > 0 } d: // flip bytes of a file (config mostly)
                {
                    var copy = (byte[])d.Clone();
                    int flips = 1 + rng.Next(8);
                    for (int f = 0; f < flips; f++) copy[rng.Next(copy.Length)] = (byte)rng.Next(256);
                    m[i] = x with { Data = copy };
                    break;
                }
                case 2 when x.Data is { } d: // truncate or extend a file
                    m[i] = x with { Data = rng.Next(2) == 0 ? d[..rng.Next(d.Length + 1)] : [.. d, .. new byte[rng.Next(5000)]] };
                    break;
                case 3 when x.Data is not null: // hostile text in a file
                    m[i] = x with { Data = Encoding.UTF8.GetBytes(Pick(rng, HostileTexts)) };
                    break;
                case 4 when x.Link is not null: // a link somewhere hostile
                {
                    string t = Pick(rng, HostileLinks);
                    m[i] = x with { Link = t == "self" ? x.Name[(x.Name.LastIndexOf('/') + 1)..] : t.Length == 0 ? "." : t };
                    break;
                }
                case 5: // drop a member
                    m.RemoveAt(i);
                    break;
                case 6: // a second member under the same name
                    m.Add(x);
                    break;
                case 7 when x.Data is not null: // a file becomes a link to another member
                    m[i] = new Member(x.Name, Link: "../" + m[rng.Next(m.Count)].Name);
                    break;
                default: // a config from another device, or a config whose capability list loops
                    if (x.Name.EndsWith("/config", StringComparison.Ordinal) && x.Data is { Length: >= 0x42 } c)
                    {
                        var copy = (byte[])c.Clone();
                        copy[0x06] |= 0x10; copy[0x34] = 0x40; copy[0x40] = (byte)rng.Next(256); copy[0x41] = 0x40;
                        m[i] = x with { Data = copy };
                    }
                    break;
            }
        }
        return m;
    }
}

public class SnapshotFuzzTests
{
    [Fact]
    public void MutatedSnapshotsAreLoadedOrRefusedCleanlyByEveryCommand()
    {
        var rng = new Random(1201);
        var bases = new[] { "a_rootcomplex", "c_switch", "h_k612_sriov_nvme", "g_k612_intel_typetest" }.Select(n => ReadMembers(CliRunner.Oracle(n))).ToArray();
        string dir = TempDir();
        int loaded = 0;
        try
        {
            for (int c = 0; c < Fuzz.CasesPerKind; c++)
            {
                var members = Fuzz.MutateMembers(rng, bases[c % bases.Length]);
                byte[] tar;
                try { tar = Tar(members); }
                catch (ArgumentException) { continue; } // a name TarWriter itself refuses: not an input we can make
                if (rng.Next(10) == 0)
                {
                    // Raw damage to the archive itself: a header byte, with the checksum fixed half the time.
                    var offsets = HeaderOffsets(tar);
                    int h = offsets[rng.Next(offsets.Count)];
                    tar[h + rng.Next(512)] = (byte)rng.Next(256);
                    if (rng.Next(2) == 0) FixChecksum(tar, h);
                }
                byte[] bytes = rng.Next(2) == 0 ? Gzip(tar) : tar;
                if (rng.Next(20) == 0) bytes = bytes[..rng.Next(bytes.Length)];
                string path = Path.Combine(dir, "case.tar.gz");
                File.WriteAllBytes(path, bytes);
                if (Fuzz.RunCase($"snapshot case {c}", path, c, dir)) loaded++;
            }
        }
        finally { Cleanup(dir); }
        Assert.True(loaded > Fuzz.CasesPerKind / 4, $"only {loaded} cases loaded: the mutations no longer reach the commands");
    }
}

public class LspciFuzzTests
{
    private static readonly string[] HostileLines =
    [
        "\tCapabilities: [40] Express (v16) Root Port (Slot+), MSI 00",
        "\tCapabilities: [40] Express (v2) Unknown type 13, MSI 00",
        "\tCapabilities: [40] Power Management version 3",
        "\tCapabilities: [100 v1] Access Control Services",
        "\t\tACSCap:\tSrcValid+ TransBlk+ ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-",
        "\tBus: primary=00, secondary=00, subordinate=ff, sec-latency=0",
        "\tKernel driver in use: ",
        "\tKernel driver in use: ../..",
        "\tIOMMU group: 99999999999",
        "40: 01 40 03 00 08 00 00 00 00 00 00 00 00 00 00 00",
        "34: 40",
        "00: ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff",
    ];

    [Fact]
    public void MutatedLspciTextAndHexAreLoadedOrRefusedCleanlyByEveryCommand()
    {
        var rng = new Random(1202);
        string gen = Path.Combine(CliRunner.FixturesDir, "lspci-generated");
        var bases = new[] { "a_rootcomplex.vvnn.txt", "a_rootcomplex.vvnnxxxx.txt", "c_switch.vvnn.txt", "c_switch.hex.txt", "b_rootports.xxx.txt" }
            .Select(f => File.ReadAllLines(Path.Combine(gen, f))).ToArray();
        string dir = TempDir();
        int loaded = 0;
        try
        {
            for (int c = 0; c < Fuzz.CasesPerKind; c++)
            {
                var lines = new List<string>(bases[c % bases.Length]);
                int edits = 1 + rng.Next(4);
                for (int e = 0; e < edits && lines.Count > 0; e++)
                {
                    int i = rng.Next(lines.Count);
                    switch (rng.Next(6))
                    {
                        case 0: lines.RemoveAt(i); break;
                        case 1: lines.Insert(i, lines[rng.Next(lines.Count)]); break;
                        case 2: lines.Insert(i, Fuzz.Pick(rng, HostileLines)); break;
                        case 3 when lines[i].Length > 0:
                        {
                            var chars = lines[i].ToCharArray();
                            chars[rng.Next(chars.Length)] = "0123456789abcdef:.[]+- \t"[rng.Next(24)];
                            lines[i] = new string(chars);
                            break;
                        }
                        case 4: lines.RemoveRange(i, lines.Count - i); break;
                        default: // text and hex of different machines side by side
                            lines.AddRange(bases[rng.Next(bases.Length)].Take(rng.Next(200)));
                            break;
                    }
                }
                string path = Path.Combine(dir, "case.txt");
                File.WriteAllText(path, string.Join('\n', lines) + "\n");
                if (Fuzz.RunCase($"lspci case {c}", path, c, dir)) loaded++;
            }
        }
        finally { Cleanup(dir); }
        Assert.True(loaded > Fuzz.CasesPerKind / 4, $"only {loaded} cases loaded");
    }
}

public class JsonMachineFuzzTests
{
    private static readonly Func<Random, JsonNode?>[] Values =
    [
        _ => null,
        r => JsonValue.Create(r.Next(-5, 70000)),
        _ => JsonValue.Create(1e300),
        _ => JsonValue.Create(""),
        r => JsonValue.Create(r.Next(2) == 0 ? "\u001b[2Jx\ny" : "\ud800"),
        r => JsonValue.Create($"0x{r.NextInt64():x}"),
        _ => JsonValue.Create("0000:00:00.0"),
        _ => JsonValue.Create(true),
        _ => new JsonArray(JsonValue.Create("SV"), JsonValue.Create(7)),
        _ => new JsonObject { ["primary"] = 0, ["secondary"] = 0, ["subordinate"] = 255 },
        _ => JsonValue.Create("../x"),
    ];

    [Fact]
    public void MutatedJsonMachinesAreLoadedOrRefusedCleanlyByEveryCommand()
    {
        var rng = new Random(1203);
        var bases = new[] { "a_rootcomplex", "c_switch", "g_k612_intel_typetest" }
            .SelectMany(n => new[] { CliRunner.Run("export", "--source", CliRunner.Oracle(n)).Out, CliRunner.Run("export", "--no-config", "--source", CliRunner.Oracle(n)).Out })
            .ToArray();
        string dir = TempDir();
        int loaded = 0;
        try
        {
            for (int c = 0; c < Fuzz.CasesPerKind; c++)
            {
                string text = bases[c % bases.Length];
                byte[] bytes;
                if (rng.Next(8) == 0)
                {
                    bytes = Encoding.UTF8.GetBytes(text);
                    int flips = 1 + rng.Next(4);
                    for (int f = 0; f < flips; f++) bytes[rng.Next(bytes.Length)] = (byte)rng.Next(256);
                }
                else
                {
                    var root = JsonNode.Parse(text)!;
                    int edits = 1 + rng.Next(3);
                    for (int e = 0; e < edits; e++) MutateOne(rng, root);
                    bytes = Encoding.UTF8.GetBytes(root.ToJsonString());
                    if (rng.Next(10) == 0) bytes = [0xef, 0xbb, 0xbf, .. bytes];
                }
                string path = Path.Combine(dir, "case.json");
                File.WriteAllBytes(path, bytes);
                if (Fuzz.RunCase($"json case {c}", path, c, dir)) loaded++;
            }
        }
        finally { Cleanup(dir); }
        Assert.True(loaded > Fuzz.CasesPerKind / 10, $"only {loaded} cases loaded");
    }

    private static void MutateOne(Random rng, JsonNode root)
    {
        // A random object somewhere in the tree: replace, drop or add one of its properties.
        var objects = new List<JsonObject>();
        void Walk(JsonNode? n)
        {
            if (n is JsonObject o) { objects.Add(o); foreach (var (_, v) in o) Walk(v); }
            else if (n is JsonArray a) foreach (var v in a) Walk(v);
        }
        Walk(root);
        var obj = objects[rng.Next(objects.Count)];
        var keys = obj.Select(kv => kv.Key).ToList();
        if (keys.Count == 0) return;
        string key = keys[rng.Next(keys.Count)];
        switch (rng.Next(4))
        {
            case 0: obj.Remove(key); break;
            case 1 when obj[key] is JsonArray arr && arr.Count > 0: arr.Add(arr[rng.Next(arr.Count)]!.DeepClone()); break;
            default: obj[key] = Values[rng.Next(Values.Length)](rng); break;
        }
    }
}

public class SysfsRootFuzzTests
{
    [Fact]
    public void MutatedSysfsRootsAreLoadedOrRefusedCleanlyAndNothingIsWrittenOutside()
    {
        var rng = new Random(1204);
        var bases = new[] { "a_rootcomplex", "g_k612_intel_typetest" }.Select(n => ReadMembers(CliRunner.Oracle(n))).ToArray();
        string outside = TempDir();
        File.WriteAllText(Path.Combine(outside, "type"), "DMA\n");
        Directory.CreateDirectory(Path.Combine(outside, "drivers"));
        int loaded = 0;
        try
        {
            for (int c = 0; c < Fuzz.DirectoryCases; c++)
            {
                string root = TempDir();
                string scratch = TempDir();
                try
                {
                    var members = Fuzz.MutateMembers(rng, bases[c % bases.Length]);
                    // Absolute links to a directory outside the root, and a FIFO, now and then.
                    for (int i = 0; i < members.Count; i++)
                    {
                        if (members[i].Link is not null && rng.Next(40) == 0)
                            members[i] = members[i] with { Link = rng.Next(2) == 0 ? Path.Combine(outside, "type") : Path.Combine(outside, "drivers") };
                    }
                    try { WriteRoot(root, members); }
                    catch (IOException) { continue; } // a tree the file system cannot hold (a file under a file)
                    if (rng.Next(8) == 0)
                    {
                        // Never through a directory link: the tree has links to "/" and "..".
                        var files = Directory.GetFiles(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint });
                        if (files.Length == 0) continue;
                        MakeFifo(files[rng.Next(files.Length)]);
                    }
                    var task = Task.Run(() =>
                    {
                        bool ok = Fuzz.RunCase($"root case {c}", root, c, scratch);
                        if (!ok) return false;
                        string output = Path.Combine(scratch, "snap.tar.gz");
                        var snap = Fuzz.RunChecked($"root case {c}", "snapshot", "-o", output, "--root", root);
                        if (snap.Code == 0) Fuzz.RunChecked($"root case {c} (snapshot loaded back)", "groups", "--source", output);
                        Assert.Equal(snap.Code == 0 ? ["export.json", "snap.tar.gz"] : ["export.json"],
                            Directory.GetFileSystemEntries(scratch).Select(Path.GetFileName).Order(StringComparer.Ordinal));
                        Fuzz.RunChecked($"root case {c}", "set-type", "7", "identity", "--source", root, "--apply", "--json");
                        return true;
                    });
                    if (Fuzz.Within(task, 60, $"root case {c}")) loaded++;
                    Assert.Equal("DMA\n", File.ReadAllText(Path.Combine(outside, "type")));
                    Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(outside, "drivers")));
                }
                finally { Cleanup(root); Cleanup(scratch); }
            }
        }
        finally { Cleanup(outside); }
        Assert.True(loaded > Fuzz.DirectoryCases / 4, $"only {loaded} cases loaded");
    }
}
