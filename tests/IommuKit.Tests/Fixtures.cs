namespace IommuKit.Tests;

/// <summary>Paths of the data the tests use, copied into the repository under tests/fixtures.</summary>
internal static class Fixtures
{
    public static string Root => Path.Combine(AppContext.BaseDirectory, "fixtures");
    public static string Oracle => Path.Combine(Root, "oracle");
    public static string Lspci => Path.Combine(Root, "lspci");

    /// <summary>Names of the oracle machines (file stems), sorted.</summary>
    public static IEnumerable<string> OracleMachines() =>
        Directory.GetFiles(Oracle, "*.expected.json").Select(f => Path.GetFileName(f)[..^".expected.json".Length]).Order();

    public static string OracleTarball(string name) => Path.Combine(Oracle, name + ".tar.gz");
    public static string OracleExpected(string name) => Path.Combine(Oracle, name + ".expected.json");

    /// <summary>The repository's root (the directory holding IommuKit.slnx above the test binaries).</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "IommuKit.slnx"))) return dir.FullName;
        throw new InvalidOperationException($"no IommuKit.slnx above {AppContext.BaseDirectory}");
    }

    /// <summary>The lspci dumps of the corpus, sorted.</summary>
    public static IEnumerable<string> LspciDumps() => Directory.GetFiles(Lspci, "*.txt").Where(f => !f.EndsWith("SOURCES.md")).Order();
}
