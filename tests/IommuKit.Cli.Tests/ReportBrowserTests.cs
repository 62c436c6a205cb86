using System.Diagnostics;
using System.Text.Json;
using AngleSharp.Html.Parser;
using IommuKit.Host.Picture;
using IommuKit.Sources;
using Xunit;
using Xunit.Abstractions;

namespace IommuKit.Cli.Tests;

/// <summary>Headless Chromium, found on PATH (<c>chromium</c>, <c>chromium-browser</c>) or at <c>IOMMUKIT_CHROMIUM</c>.</summary>
internal static class Chromium
{
    public static readonly string? Path = Find();

    private static string? Find()
    {
        if (Environment.GetEnvironmentVariable("IOMMUKIT_CHROMIUM") is { Length: > 0 } env && File.Exists(env)) return env;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(System.IO.Path.PathSeparator))
            foreach (var name in new[] { "chromium", "chromium-browser" })
            {
                if (dir.Length == 0) continue;
                var p = System.IO.Path.Combine(dir, name);
                if (File.Exists(p)) return p;
            }
        return null;
    }

    /// <summary>
    /// Loads <paramref name="file"/> in a fresh headless browser (its own profile directory, no network services) and
    /// returns the DOM after the page's scripts ran. Killed after a minute.
    /// </summary>
    public static (string Dom, string Stderr) DumpDom(string file)
    {
        var profile = Directory.CreateTempSubdirectory("iommu-chromium-");
        try
        {
            var psi = new ProcessStartInfo(Path!)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                         $"--user-data-dir={profile.FullName}", "--window-size=1400,1000", "--virtual-time-budget=5000",
                         "--dump-dom", new Uri(file).AbsoluteUri })
                psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            var dom = p.StandardOutput.ReadToEndAsync();
            if (!p.WaitForExit(60_000))
            {
                p.Kill(entireProcessTree: true);
                throw new TimeoutException($"chromium did not finish {file} within a minute");
            }
            return (dom.Result, stderr.Result);
        }
        finally
        {
            try { profile.Delete(recursive: true); } catch (IOException) { /* chromium may still hold a lock file */ }
        }
    }
}

/// <summary>A fact that runs only where headless Chromium is installed; elsewhere it is skipped saying so.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public ChromiumFactAttribute()
    {
        if (Chromium.Path is null)
            Skip = "chromium is not installed (apt-get install chromium; .ci/run does): the report's browser test did not run";
    }
}

/// <summary>
/// The report as a real browser draws it: every device and group present, no two device boxes overlapping by their
/// bounding boxes, no text wider than its box, the search box finds a device, and no script error. A small script added
/// to a copy of the page measures the rendered DOM and writes the numbers into it; Chromium's <c>--dump-dom</c> hands
/// them back.
/// </summary>
public class ReportBrowserTests(ITestOutputHelper output)
{
    /// <summary>Catches errors before the page's own script runs.</summary>
    private const string Catch = """
<script>window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message||e.type))},true);
(function(){var o=console.error;console.error=function(){window.__errors.push(Array.prototype.join.call(arguments,' '));o.apply(console,arguments)}})();</script>
""";

    /// <summary>Measures after the page's script: boxes, overlaps, overflowing text, a search for the last device.</summary>
    private const string Measure = """
<script>(function(){
var devs=Array.prototype.slice.call(document.querySelectorAll('g.node.dev'));
var boxes=devs.map(function(g){var r=g.querySelector('rect').getBoundingClientRect();return {id:g.id,x:r.left,y:r.top,w:r.width,h:r.height}});
var overlaps=[];
for(var i=0;i<boxes.length;i++)for(var j=i+1;j<boxes.length;j++){var a=boxes[i],b=boxes[j];
 if(a.x<b.x+b.w&&b.x<a.x+a.w&&a.y<b.y+b.h&&b.y<a.y+a.h)overlaps.push(a.id+' '+b.id);}
var overflow=[];
devs.forEach(function(g){var r=g.querySelector('rect');var w=r.width.baseVal.value;
 g.querySelectorAll('text').forEach(function(t){if(t.getComputedTextLength()+8>w+0.5)overflow.push(g.id+': '+t.textContent)})});
var target=devs[devs.length-1];
var s=document.getElementById('search');s.value=target.id.substring(4).replace(/-/g,':').replace(/:([0-9a-f])$/,'.$1');
s.dispatchEvent(new Event('input'));
var hits=Array.prototype.slice.call(document.querySelectorAll('g.node.hit')).map(function(g){return g.id});
var panel=document.getElementById('panel-body').textContent;
var out={devices:devs.map(function(g){return g.id}),groups:Array.prototype.slice.call(document.querySelectorAll('tr.group')).map(function(r){return r.id}),
 overlaps:overlaps,overflow:overflow,query:s.value,target:target.id,hits:hits,panel:panel,errors:window.__errors};
var pre=document.createElement('pre');pre.id='measurements';pre.textContent=JSON.stringify(out);document.body.appendChild(pre);
})();</script>
""";

    [ChromiumFact]
    public void ReportsRenderInTheBrowserWithoutOverlapAndSearchFindsADevice()
    {
        // A captured switch machine, the two largest real dumps (88 and 82 devices) and a six-domain arm64 server.
        string[] sources =
        [
            CliRunner.Oracle("c_switch"),
            Path.Combine(CliRunner.FixturesDir, "lspci", "intel-x99-asrock-extreme4-pve.txt"),
            Path.Combine(CliRunner.FixturesDir, "lspci", "intel-x79-patsburg-asrock-extreme9-nonroot.txt"),
            Path.Combine(CliRunner.FixturesDir, "lspci", "arm64-ampere-altra-adlink-devplatform-multidomain.txt"),
        ];
        var dir = Directory.CreateTempSubdirectory("iommu-report-browser-");
        try
        {
            foreach (var source in sources)
            {
                var machine = MachineSource.Load(source);
                var file = Path.Combine(dir.FullName, Path.GetFileName(source) + ".html");
                var run = CliRunner.Run("report", "--pci-ids", CliRunner.SampleIds, "--source", source, "-o", file);
                Assert.True(run.Code == 0, run.Err);
                var html = File.ReadAllText(file);
                int head = html.IndexOf("<head>", StringComparison.Ordinal) + "<head>".Length;
                int end = html.LastIndexOf("</body>", StringComparison.Ordinal);
                html = html[..head] + Catch + html[head..end] + Measure + html[end..];
                File.WriteAllText(file, html);

                var sw = Stopwatch.StartNew();
                var (dom, stderr) = Chromium.DumpDom(file);
                output.WriteLine($"{Path.GetFileName(source)}: {machine.Topology.Count} devices, chromium {sw.ElapsedMilliseconds} ms");
                var doc = new HtmlParser().ParseDocument(dom);
                var pre = doc.GetElementById("measurements");
                Assert.True(pre is not null, $"{source}: the measuring script did not run; chromium said: {stderr}");
                using var m = JsonDocument.Parse(pre!.TextContent);
                var r = m.RootElement;
                static List<string> Strings(JsonElement e) => e.EnumerateArray().Select(x => x.GetString()!).ToList();

                Assert.Equal(machine.Topology.Devices.Select(d => MachinePicture.DeviceId(d.Address)).Order(StringComparer.Ordinal),
                    Strings(r.GetProperty("devices")).Order(StringComparer.Ordinal));
                var report = IommuKit.Host.HostAnalysis.Analyze(machine);
                Assert.Equal(report.Groups.Select(g => $"group-{g.Id}"), Strings(r.GetProperty("groups")));
                Assert.Empty(Strings(r.GetProperty("overlaps")));
                Assert.Empty(Strings(r.GetProperty("overflow")));
                Assert.Contains(r.GetProperty("target").GetString()!, Strings(r.GetProperty("hits")));
                Assert.Contains(r.GetProperty("query").GetString()!, r.GetProperty("panel").GetString()!, StringComparison.Ordinal);
                Assert.Empty(Strings(r.GetProperty("errors")));
                Assert.DoesNotContain("Uncaught", stderr, StringComparison.Ordinal);
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
