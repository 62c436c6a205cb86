using AngleSharp.Dom;
using AngleSharp.Html.Parser;
using IommuKit.Host;
using IommuKit.Host.Picture;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Cli.Tests;

/// <summary>
/// <c>iommu report</c>: the HTML parsed like a browser parses it (AngleSharp) holds every device and group once, is
/// self-contained and carries input only as text; the layout places no box over another and no text past its box, on
/// every captured machine and every real dump.
/// </summary>
public class ReportTests
{
    public static IEnumerable<object[]> Sources() =>
        Directory.GetFiles(Path.Combine(CliRunner.FixturesDir, "oracle"), "*.tar.gz").Order(StringComparer.Ordinal)
            .Concat(Directory.GetFiles(Path.Combine(CliRunner.FixturesDir, "lspci"), "*.txt").Order(StringComparer.Ordinal))
            .Select(p => new object[] { Path.GetRelativePath(CliRunner.FixturesDir, p) });

    private static string Full(string relative) => Path.Combine(CliRunner.FixturesDir, relative);

    /// <summary>Runs <c>iommu report</c> on a source and parses the file it writes.</summary>
    internal static (IDocument Doc, CliRunner.Result Run) Report(string sourcePath, params string[] extra)
    {
        var file = Path.Combine(Path.GetTempPath(), $"iommu-report-{Guid.NewGuid():n}.html");
        try
        {
            var run = CliRunner.Run(["report", "--pci-ids", CliRunner.SampleIds, "--source", sourcePath, "-o", file, .. extra]);
            Assert.True(run.Code == 0, run.Err);
            return (new HtmlParser().ParseDocument(File.ReadAllText(file)), run);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [MemberData(nameof(Sources))]
    public void EveryDeviceAndGroupAppearsOnceWithUniqueIds(string source)
    {
        var machine = MachineSource.Load(Full(source));
        var report = HostAnalysis.Analyze(machine);
        var (doc, _) = Report(Full(source));

        var ids = doc.All.Select(e => e.Id).Where(id => !string.IsNullOrEmpty(id)).ToList();
        Assert.Equal(ids.Count, ids.Distinct(StringComparer.Ordinal).Count());
        foreach (var d in machine.Topology.Devices)
        {
            var box = doc.GetElementById(MachinePicture.DeviceId(d.Address));
            Assert.NotNull(box);
            Assert.Equal("g", box!.LocalName);
            var g = report.GroupOf(d.Address);
            Assert.Equal(g?.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), box.GetAttribute("data-group"));
            Assert.Equal(g is null, box.ClassList.Contains("nogroup"));
            Assert.NotNull(doc.GetElementById("x-" + box.Id));
        }
        Assert.Equal(machine.Topology.Count, doc.QuerySelectorAll("g.node.dev").Length);
        var rows = doc.QuerySelectorAll("tr.group");
        Assert.Equal(report.Groups.Select(g => $"group-{g.Id}"), rows.Select(r => r.Id));
        foreach (var g in report.Groups)
        {
            var row = doc.GetElementById($"group-{g.Id}")!;
            Assert.Equal(g.Devices.Select(d => "#" + MachinePicture.DeviceId(d.Address)), row.QuerySelectorAll("a.member").Select(a => a.GetAttribute("href")));
            Assert.NotEmpty(doc.QuerySelectorAll($"rect.region[data-group='{g.Id}']"));
        }
    }

    [Theory]
    [MemberData(nameof(Sources))]
    public void TheReportFetchesNothing(string source)
    {
        var (doc, _) = Report(Full(source));
        Assert.Empty(doc.QuerySelectorAll("link, img, iframe, object, embed, script[src], [src]"));
        Assert.Single(doc.QuerySelectorAll("style"));
        Assert.Single(doc.QuerySelectorAll("script"));
        foreach (var e in doc.All)
            foreach (var a in e.Attributes)
                Assert.False(a.Value.Contains("http:", StringComparison.Ordinal) && a.Name != "xmlns" || a.Value.Contains("https:", StringComparison.Ordinal),
                    $"{e.LocalName} {a.Name}={a.Value}");
        Assert.DoesNotContain("url(", doc.QuerySelector("style")!.TextContent, StringComparison.Ordinal);
        Assert.DoesNotContain("@import", doc.QuerySelector("style")!.TextContent, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Sources))]
    public void NoTwoBoxesOverlapAndNoTextLeavesItsBox(string source)
    {
        var report = HostAnalysis.Analyze(MachineSource.Load(Full(source)));
        var picture = MachinePicture.Draw(report, _ => null);
        var nodes = picture.Nodes;
        Assert.Equal(report.Machine.Topology.Count, nodes.Count(n => n.Device is not null));
        for (int i = 0; i < nodes.Count; i++)
        {
            var a = nodes[i].Box;
            Assert.True(a.X >= 0 && a.Y >= 0 && a.Right <= picture.Width && a.Bottom <= picture.Height, $"{nodes[i].Id} outside the picture");
            foreach (var line in nodes[i].Lines)
            {
                Assert.True(line.Length <= PictureMetrics.MaxLineChars, line);
                Assert.True(PictureMetrics.TextWidth(line) + 2 * PictureMetrics.PadX <= a.Width, $"{nodes[i].Id}: '{line}' wider than its box");
            }
            Assert.True(nodes[i].Lines.Count * PictureMetrics.LineHeight + 2 * PictureMetrics.PadY <= a.Height);
            for (int j = i + 1; j < nodes.Count; j++)
                Assert.False(a.Overlaps(nodes[j].Box), $"{nodes[i].Id} overlaps {nodes[j].Id}");
        }
        // Regions of different groups never overlap, and a region holds no box of another group.
        var regions = picture.Groups.SelectMany(g => g.Regions.Select(r => (g.Id, Box: r))).ToList();
        for (int i = 0; i < regions.Count; i++)
        {
            for (int j = i + 1; j < regions.Count; j++)
                if (regions[i].Id != regions[j].Id)
                    Assert.False(regions[i].Box.Overlaps(regions[j].Box), $"regions of groups {regions[i].Id} and {regions[j].Id} overlap");
            foreach (var n in nodes)
                if (n.Group != regions[i].Id && n.Box.Overlaps(regions[i].Box))
                    Assert.Fail($"{n.Id} (group {n.Group}) lies in a region of group {regions[i].Id}");
        }
        // Every group member lies in one of its group's regions.
        foreach (var g in picture.Groups)
            foreach (var a in g.Devices)
            {
                var box = nodes.Single(n => n.Id == MachinePicture.DeviceId(a)).Box;
                Assert.Contains(g.Regions, r => r.X <= box.X && r.Y <= box.Y && r.Right >= box.Right && r.Bottom >= box.Bottom);
            }
    }

    [Fact]
    public void InputTextIsEscapedNotMarkup()
    {
        // A JSON machine may carry any text: a driver name and a slot name with markup and control characters.
        var json = CliRunner.Run("export", "--no-config", "--source", CliRunner.Oracle("c_switch")).Out;
        const string evil = "<script>alert(1)</script>\\u0007\\u001b[31m&amp;\\\"'";
        // A driver name is one path component without control characters (the reader refuses '/' and them), so its
        // markup is an element without a slash; the control characters travel in the slot name.
        const string evilDriver = "<img src=x onerror=alert(1)>&amp;\\\"'";
        int at = json.IndexOf("\"driver\": \"pcieport\"", StringComparison.Ordinal);
        Assert.True(at > 0);
        json = json[..at] + $"\"driver\": \"{evilDriver}\"" + json[(at + "\"driver\": \"pcieport\"".Length)..];
        json = json.Replace("\"slots\": {}", $"\"slots\": {{ \"{evil}\": \"0000:01:00\" }}", StringComparison.Ordinal);
        var path = Path.Combine(Path.GetTempPath(), $"iommu-evil-{Guid.NewGuid():n}.json");
        File.WriteAllText(path, json);
        try
        {
            var machine = MachineSource.Load(path);
            var device = machine.Topology.Devices.Single(d => d.Driver is { } dr && dr.Contains("<img", StringComparison.Ordinal));
            var (doc, _) = Report(path);
            Assert.Single(doc.QuerySelectorAll("script"));
            Assert.Empty(doc.QuerySelectorAll("svg script, body > script ~ script"));
            var texts = doc.GetElementById(MachinePicture.DeviceId(device.Address))!.QuerySelectorAll("text").Select(t => t.TextContent).ToList();
            Assert.Contains(texts, t => t.Contains("<img src=x onerror=alert(1)>&amp;", StringComparison.Ordinal));
            Assert.Empty(doc.QuerySelectorAll("img"));
            var slotted = doc.GetElementById("dev-0000-01-00-0")!.QuerySelectorAll("text").Select(t => t.TextContent).ToList();
            Assert.Contains(slotted, t => t.StartsWith("slot <script>alert(1)</script>\\x07", StringComparison.Ordinal));
            Assert.DoesNotContain(doc.All, e => e.ChildNodes.OfType<IText>().Any(t => t.Data.Contains('\u0007') || t.Data.Contains('\u001b'))
                || e.Attributes.Any(a => a.Value.Contains('\u0007') || a.Value.Contains('\u001b')));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void PortsCarryTheirAcsStateAndGroupsTheirVerdict()
    {
        // c_switch: a QEMU root port with ACS above an XIO3130 switch whose downstream ports have none.
        var (doc, _) = Report(CliRunner.Oracle("c_switch"));
        var texts = doc.QuerySelectorAll("g.node.dev text").Select(t => t.TextContent).ToList();
        Assert.Contains(texts, t => t.StartsWith("ACS cap ", StringComparison.Ordinal));
        Assert.Contains("no ACS", texts);
        var words = new HashSet<string>(["ready", "needs-binding", "shares-group", "not-assignable", "no-iommu"]);
        Assert.All(doc.QuerySelectorAll("tr.group"), r => Assert.Contains(r.GetAttribute("data-verdict")!, words));
    }

    [Fact]
    public void TheStyleHasALightAndADarkThemeAndPrints()
    {
        var (doc, _) = Report(CliRunner.Oracle("c_switch"));
        var css = doc.QuerySelector("style")!.TextContent;
        Assert.Contains("color-scheme: light dark", css, StringComparison.Ordinal);
        Assert.Contains("@media (prefers-color-scheme: dark)", css, StringComparison.Ordinal);
        Assert.Contains("@media print", css, StringComparison.Ordinal);
        Assert.NotNull(doc.QuerySelector("input#search[type=search]"));
    }

    [Fact]
    public void TreeLayoutNeverOverlapsOnRandomForests()
    {
        var random = new Random(15);
        for (int round = 0; round < 200; round++)
        {
            var all = new List<TreeLayout.Node>();
            var roots = new List<TreeLayout.Node>();
            int count = random.Next(1, 120);
            for (int i = 0; i < count; i++)
            {
                var n = new TreeLayout.Node(random.Next(20, 400), random.Next(10, 120));
                if (all.Count == 0 || random.Next(8) == 0) roots.Add(n);
                else all[random.Next(all.Count)].Children.Add(n);
                all.Add(n);
            }
            var (width, height) = TreeLayout.Arrange(roots);
            for (int i = 0; i < all.Count; i++)
            {
                var a = all[i].Box;
                Assert.True(a.X >= 0 && a.Y >= 0 && a.Right <= width && a.Bottom <= height);
                Assert.Equal(all[i].Width, a.Width);
                for (int j = i + 1; j < all.Count; j++)
                    Assert.False(a.Overlaps(all[j].Box), $"round {round}: boxes {i} and {j} overlap");
                foreach (var c in all[i].Children) Assert.True(c.Box.X >= a.Right + TreeLayout.ColumnGap - 1e-9, "a child lies right of its parent");
            }
        }
    }

    [Theory]
    [InlineData("oracle/g_k612_intel_mixed.tar.gz")]
    [InlineData("oracle/h_k612_mixed_more.tar.gz")]
    [InlineData("lspci/amd-renoir-apu-asrock-x300m-stx-pve-noacs-iommugroups.txt")]
    public void EachGroupsVerdictIsVfioCheckOfTheGroup(string source)
    {
        var (doc, _) = Report(Full(source));
        foreach (var row in doc.QuerySelectorAll("tr.group"))
        {
            var id = row.GetAttribute("data-group")!;
            var check = CliRunner.Run("vfio-check", "--group", id, "--json", "--pci-ids", "none", "--source", Full(source));
            Assert.Equal(check.Json.GetProperty("verdict").GetString(), row.GetAttribute("data-verdict"));
        }
    }

    [Fact]
    public void SearchTextNamesAddressIdAndDriver()
    {
        var machine = MachineSource.Load(CliRunner.Oracle("c_switch"));
        var (doc, _) = Report(CliRunner.Oracle("c_switch"));
        foreach (var d in machine.Topology.Devices)
        {
            var s = doc.GetElementById(MachinePicture.DeviceId(d.Address))!.GetAttribute("data-search")!;
            Assert.Contains(d.Address.ToString(), s, StringComparison.Ordinal);
            Assert.Contains($"{d.VendorId:x4}:{d.DeviceId:x4}", s, StringComparison.Ordinal);
            if (d.Driver is { } drv) Assert.Contains(drv.ToLowerInvariant(), s, StringComparison.Ordinal);
        }
    }
}
