using System.Text.RegularExpressions;
using Xunit;

namespace IommuKit.Tests;

/// <summary>
/// The kernel rules are documented in the repository (docs/kernel-model.md) and every citation of that document names a
/// section it has. A clean clone must be enough to follow any reference, so nothing may point at files outside it.
/// </summary>
public sealed partial class DocsTests
{
    /// <summary>
    /// A citation of docs/kernel-model.md: "spec 2.4", "kernel-model 2.4", with lists and ranges ("spec 4.3, 12",
    /// "spec 2.4-2.6", "spec sections 7 and 8.3"). "Intel VT-d spec 9.8" names Intel's specification, not ours.
    /// If the citation form is renamed, rename it here too: <see cref="TheCodeCitesTheKernelModel"/> fails otherwise.
    /// </summary>
    [GeneratedRegex(@"(?<!VT-d )\b(?:spec|kernel-model(?:\.md)?)\s+(?:sections?\s+)?§?(?<first>\d+(?:\.\d+)?)(?<rest>(?:\s*(?:,|-|and)\s*\d+(?:\.\d+)?\b)*)")]
    private static partial Regex Citation();

    [GeneratedRegex(@"^#{2,3} (?<number>\d+(?:\.\d+)?)\.?\s")]
    private static partial Regex SectionHeading();

    [GeneratedRegex(@"\d+(?:\.\d+)?")]
    private static partial Regex SectionNumber();

    // Assembled so that this file does not contain the strings it forbids.
    private static readonly string[] OutsideReferences =
    [
        "linux-iommu" + "-model",
        "../" + "shared",
        "/work/" + "shared",
    ];

    private static string RepoRoot => Fixtures.RepoRoot;

    private static HashSet<string> KernelModelSections()
    {
        var sections = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in File.ReadLines(Path.Combine(RepoRoot, "docs", "kernel-model.md")))
        {
            var m = SectionHeading().Match(line);
            if (m.Success) sections.Add(m.Groups["number"].Value);
        }
        return sections;
    }

    /// <summary>Source files of the repository under <paramref name="top"/>, without build output.</summary>
    private static IEnumerable<string> RepoFiles(string top, string pattern) =>
        Directory.EnumerateFiles(Path.Combine(RepoRoot, top), pattern, SearchOption.AllDirectories)
            .Where(f => !f.Split(Path.DirectorySeparatorChar).Any(part => part is "bin" or "obj"))
            .Order(StringComparer.Ordinal);

    private static string Relative(string path) => Path.GetRelativePath(RepoRoot, path).Replace('\\', '/');

    /// <summary>Every section a text cites, each with "file:line" for the failure message.</summary>
    private static IEnumerable<(string Section, string Where)> CitationsIn(string file)
    {
        var lineNo = 0;
        foreach (var line in File.ReadLines(file))
        {
            lineNo++;
            foreach (Match m in Citation().Matches(line))
            {
                var where = $"{Relative(file)}:{lineNo}: {m.Value.Trim()}";
                yield return (m.Groups["first"].Value, where);
                foreach (Match n in SectionNumber().Matches(m.Groups["rest"].Value))
                    yield return (n.Value, where);
            }
        }
    }

    private static List<(string Section, string Where)> CodeCitations() =>
        new[] { "src", "tests", "bench" }
            .SelectMany(top => RepoFiles(top, "*.cs"))
            .SelectMany(CitationsIn)
            .ToList();

    [Fact]
    public void TheKernelModelHasSectionsOneToFourteenAndAReadingGuide()
    {
        var sections = KernelModelSections();
        for (var n = 1; n <= 14; n++)
            Assert.Contains(n.ToString(System.Globalization.CultureInfo.InvariantCulture), sections);
        Assert.Contains("## Reading this document", File.ReadAllText(Path.Combine(RepoRoot, "docs", "kernel-model.md")));
    }

    [Fact]
    public void TheCodeCitesTheKernelModel()
    {
        // Guards the other tests against passing vacuously (e.g. after the citation form is renamed without updating
        // Citation()): the code carries over a hundred citations today.
        Assert.True(CodeCitations().Count >= 100, $"only {CodeCitations().Count} citations of docs/kernel-model.md found");
    }

    [Fact]
    public void EveryCitationInTheCodeNamesASectionOfTheKernelModel()
    {
        var sections = KernelModelSections();
        var missing = CodeCitations().Where(c => !sections.Contains(c.Section)).Select(c => c.Where).Distinct().ToList();
        Assert.True(missing.Count == 0, "cited sections missing from docs/kernel-model.md:\n" + string.Join('\n', missing));
    }

    [Fact]
    public void EveryCitationInTheDocsNamesASectionOfTheKernelModel()
    {
        var sections = KernelModelSections();
        var citations = RepoFiles("docs", "*.md").Append(Path.Combine(RepoRoot, "README.md")).SelectMany(CitationsIn).ToList();
        var missing = citations.Where(c => !sections.Contains(c.Section)).Select(c => c.Where).Distinct().ToList();
        Assert.True(missing.Count == 0, "cited sections missing from docs/kernel-model.md:\n" + string.Join('\n', missing));
    }

    [Fact]
    public void NoFileInSrcTestsOrDocsPointsOutsideTheRepository()
    {
        var offenders = new List<string>();
        foreach (var file in new[] { "src", "tests", "docs" }.SelectMany(top => RepoFiles(top, "*")))
        {
            var bytes = File.ReadAllBytes(file);
            if (Array.IndexOf(bytes, (byte)0) >= 0) continue; // binary (fixture tarballs): no text references
            var text = System.Text.Encoding.UTF8.GetString(bytes);
            offenders.AddRange(OutsideReferences.Where(r => text.Contains(r, StringComparison.Ordinal)).Select(r => $"{Relative(file)}: {r}"));
        }
        Assert.True(offenders.Count == 0, "references outside the repository:\n" + string.Join('\n', offenders));
    }
}
