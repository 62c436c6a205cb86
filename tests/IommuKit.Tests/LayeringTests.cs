using System.Text.RegularExpressions;
using Xunit;

namespace IommuKit.Tests;

/// <summary>
/// Dependencies between the library's layers point one way (docs/architecture.md): every source file of src/IommuKit
/// is read, the layers it refers to (using directives, qualified names) are collected, and each must be allowed for
/// the file's own layer.
/// </summary>
public partial class LayeringTests
{
    /// <summary>What each layer may use (besides itself). "Model" is the root namespace (Machine, KernelCommandLine…).</summary>
    private static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["Model"] = ["Pci"],
        ["Pci"] = ["Model"],
        ["Sources"] = ["Model", "Pci"],
        ["Grouping"] = ["Model", "Pci"],
        ["Paging"] = ["Model", "Pci"],
        ["Core"] = ["Model", "Pci", "Paging"],
        // dma-iommu.c sits on the core (a device's DMA API follows its group's default domain), never the reverse.
        ["Dma"] = ["Model", "Pci", "Paging", "Core"],
        // The emulated machine: memory, IOMMU hardware, and a bus built from the topology with the grouping rules' ACS.
        ["Simulation"] = ["Model", "Pci", "Paging", "Core", "Dma", "Grouping"],
        ["Drivers"] = ["Model", "Pci", "Paging", "Core", "Grouping", "Simulation", "Dma"],
        ["Passthrough"] = ["Model", "Pci", "Core"],
        ["Host"] = ["Model", "Pci", "Paging", "Core", "Grouping", "Drivers", "Dma", "Simulation", "Passthrough"],
    };

    private static readonly string[] Layers = [.. Allowed.Keys.Where(k => k != "Model")];

    [GeneratedRegex(@"^namespace IommuKit(?:\.(\w+))?", RegexOptions.Multiline)]
    private static partial Regex Namespace();

    /// <summary>Layers a file refers to: <c>using IommuKit.X;</c>, <c>IommuKit.X.Y</c>, or a bare <c>X.Y</c> naming a layer.</summary>
    internal static HashSet<string> References(string source)
    {
        var code = Regex.Replace(source, @"//.*", "");
        var found = new HashSet<string>();
        foreach (Match m in Regex.Matches(code, @"using\s+IommuKit\.(\w+)\s*;")) found.Add(m.Groups[1].Value);
        foreach (Match m in Regex.Matches(code, @"IommuKit\.(\w+)\.")) found.Add(m.Groups[1].Value);
        foreach (Match m in Regex.Matches(code, @"(?<![.\w])(" + string.Join('|', Layers) + @")\.[A-Z]")) found.Add(m.Groups[1].Value);
        found.IntersectWith(Layers);
        return found;
    }

    [Fact]
    public void NoLayerOfTheLibraryUsesALayerAboveIt()
    {
        var src = Path.Combine(Fixtures.RepoRoot, "src", "IommuKit");
        var violations = new List<string>();
        int files = 0;
        foreach (var file in Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") || file.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}")) continue;
            var text = File.ReadAllText(file);
            var ns = Namespace().Match(text);
            Assert.True(ns.Success, $"{file} declares no IommuKit namespace");
            string layer = ns.Groups[1].Success ? ns.Groups[1].Value : "Model";
            Assert.True(Allowed.ContainsKey(layer), $"{file}: namespace IommuKit.{layer} is not a layer of docs/architecture.md");
            files++;
            foreach (var used in References(text))
                if (used != layer && !Allowed[layer].Contains(used))
                    violations.Add($"{Path.GetRelativePath(Fixtures.RepoRoot, file)}: {layer} uses {used}");
        }
        Assert.True(files > 50, $"only {files} files read");
        Assert.True(violations.Count == 0, "layering violations:\n" + string.Join('\n', violations));
    }

    [Theory]
    [InlineData("using IommuKit.Host;\nnamespace IommuKit.Core;", "Host")]
    [InlineData("namespace IommuKit.Core;\nclass A { Grouping.PciGrouping x; }", "Grouping")]
    [InlineData("namespace IommuKit.Core;\nclass A { IommuKit.Simulation.IommuHardware x; }", "Simulation")]
    [InlineData("namespace IommuKit.Host;\nclass A { object o = options.Grouping.VfEnableOrder; }", null)]
    public void TheCheckSeesUsingsAndQualifiedNamesButNotMemberAccess(string source, string? expected)
    {
        var refs = References(source);
        if (expected is null) Assert.Empty(refs);
        else Assert.Equal([expected], refs);
    }
}
