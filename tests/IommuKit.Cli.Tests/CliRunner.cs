using System.Runtime.CompilerServices;
using System.Text.Json;
using Xunit;

namespace IommuKit.Cli.Tests;

/// <summary>Runs the <c>iommu</c> command in-process on string writers, and compares output with golden files.</summary>
internal static class CliRunner
{
    public sealed record Result(int Code, string Out, string Err)
    {
        public string[] Lines => Out.Split('\n', StringSplitOptions.None)[..^1];
        public JsonElement Json => JsonDocument.Parse(Out).RootElement;
    }

    public static string FixturesDir => Path.Combine(AppContext.BaseDirectory, "fixtures");
    public static string GoldenDir => Path.Combine(AppContext.BaseDirectory, "golden");
    public static string Oracle(string name) => Path.Combine(FixturesDir, "oracle", name + ".tar.gz");
    public static string OracleExpected(string name) => Path.Combine(FixturesDir, "oracle", name + ".expected.json");
    /// <summary>The tiny pci.ids of the tests: outputs never depend on the database installed on the machine.</summary>
    public static string SampleIds => Path.Combine(GoldenDir, "pci.ids.sample");

    /// <summary>Oracle machines with a legacy golden made by real lspci (golden/legacy-NAME.txt, make-legacy-golden.sh).</summary>
    public static IEnumerable<object[]> MachinesWithLegacyGolden() =>
        Directory.GetFiles(GoldenDir, "legacy-*.txt").Order(StringComparer.Ordinal)
            .Select(f => Path.GetFileName(f)["legacy-".Length..^".txt".Length])
            .Where(n => File.Exists(Oracle(n)) && new FileInfo(Path.Combine(GoldenDir, $"legacy-{n}.txt")).Length > 0)
            .Select(n => new object[] { n });

    /// <summary>Oracle machines whose kernel made groups / made none.</summary>
    public static IEnumerable<object[]> MachinesWithGroups() => Machines(withGroups: true);
    public static IEnumerable<object[]> MachinesWithoutGroups() => Machines(withGroups: false);

    private static IEnumerable<object[]> Machines(bool withGroups)
    {
        foreach (var f in Directory.GetFiles(Path.Combine(FixturesDir, "oracle"), "*.expected.json").Order(StringComparer.Ordinal))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(f));
            bool has = doc.RootElement.GetProperty("groups").GetArrayLength() > 0;
            if (has == withGroups) yield return [Path.GetFileName(f)[..^".expected.json".Length]];
        }
    }

    public static Result Run(params string[] args)
    {
        var o = new StringWriter { NewLine = "\n" };
        var e = new StringWriter { NewLine = "\n" };
        int code = Program.Run(args, new CliConsole(o, e, color: false));
        // Paths of fixtures differ per checkout: golden text names them relative to the fixtures directory.
        return new Result(code, o.ToString().Replace(FixturesDir + "/", ""), e.ToString().Replace(FixturesDir + "/", ""));
    }

    /// <summary>
    /// Asserts <paramref name="actual"/> equals golden/<paramref name="name"/> line by line. With IOMMUKIT_UPDATE_GOLDEN=1
    /// the file in the source tree is rewritten instead (review the diff before committing it).
    /// </summary>
    public static void AssertGolden(string name, string actual, [CallerFilePath] string caller = "")
    {
        if (Environment.GetEnvironmentVariable("IOMMUKIT_UPDATE_GOLDEN") == "1")
        {
            File.WriteAllText(Path.Combine(Path.GetDirectoryName(caller)!, "golden", name), actual);
            return;
        }
        var expected = File.ReadAllText(Path.Combine(GoldenDir, name));
        var e = expected.Split('\n');
        var a = actual.Split('\n');
        for (int i = 0; i < Math.Min(e.Length, a.Length); i++)
            Assert.True(e[i] == a[i], $"{name} line {i + 1}:\n expected: {e[i]}\n actual:   {a[i]}");
        Assert.Equal(e.Length, a.Length);
    }
}
