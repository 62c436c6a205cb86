using System.Diagnostics;
using System.Text.Json;
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


/// <summary>A theory that runs only where headless Chromium is installed; elsewhere it is skipped saying so.</summary>
public sealed class ChromiumTheoryAttribute : TheoryAttribute
{
    public ChromiumTheoryAttribute()
    {
        if (Chromium.Path is null)
            Skip = "chromium is not installed (apt-get install chromium; .ci/run does): the report's browser test did not run";
    }
}

/// <summary>One Chromium for the whole test class, started on first use.</summary>
public sealed class BrowserFixture : IDisposable
{
    private readonly Lazy<DevTools> _browser = new(() => new DevTools(Chromium.Path!));
    internal DevTools Browser => _browser.Value;
    public void Dispose()
    {
        if (_browser.IsValueCreated) _browser.Value.Dispose();
    }
}

/// <summary>
/// The report of every captured machine and every real dump as a real browser draws it: every device and group present,
/// no two boxes overlapping by their bounding boxes, no group's region over another group's region or device, no text
/// outside its box, the search box finding every device by its address, and nothing going wrong in the page (no script
/// error, no console error or warning, nothing fetched). One headless Chromium (<see cref="DevTools"/>) loads the
/// reports one after another and a script measures each rendered page.
/// </summary>
public class ReportBrowserTests(BrowserFixture fixture, ITestOutputHelper output) : IClassFixture<BrowserFixture>
{
    /// <summary>Measures the rendered page and returns the numbers as JSON.</summary>
    private const string Measure = """
(function(){
var all=Array.prototype.slice.call(document.querySelectorAll('g.node'));
var devs=all.filter(function(g){return g.classList.contains('dev')});
function box(e){var r=e.getBoundingClientRect();return {x:r.left,y:r.top,w:r.width,h:r.height}}
function meets(a,b){return a.x<b.x+b.w-0.5&&b.x<a.x+a.w-0.5&&a.y<b.y+b.h-0.5&&b.y<a.y+a.h-0.5}
var nodes=all.map(function(g){var b=box(g.querySelector('rect'));b.id=g.id;b.group=g.getAttribute('data-group');return b});
var problems=[];
for(var i=0;i<nodes.length;i++)for(var j=i+1;j<nodes.length;j++)
 if(meets(nodes[i],nodes[j]))problems.push('boxes overlap: '+nodes[i].id+' '+nodes[j].id);
var regions=Array.prototype.slice.call(document.querySelectorAll('rect.region')).map(function(r){var b=box(r);b.group=r.getAttribute('data-group');return b});
for(var i=0;i<regions.length;i++){
 for(var j=i+1;j<regions.length;j++)
  if(regions[i].group!==regions[j].group&&meets(regions[i],regions[j]))problems.push('regions of groups '+regions[i].group+' and '+regions[j].group+' overlap');
 nodes.forEach(function(n){if(n.group!==regions[i].group&&meets(regions[i],n))problems.push('the region of group '+regions[i].group+' covers '+n.id)});
}
all.forEach(function(g){var r=g.querySelector('rect');
 var rx=r.x.baseVal.value,ry=r.y.baseVal.value,rw=r.width.baseVal.value,rh=r.height.baseVal.value;
 g.querySelectorAll('text').forEach(function(t){var b=t.getBBox();
  if(b.x<rx-0.5||b.x+b.width>rx+rw+0.5||b.y<ry-0.5||b.y+b.height>ry+rh+0.5)
   problems.push('text leaves its box: '+g.id+': '+t.textContent+' ('+[b.x,b.y,b.width,b.height].map(Math.round)+' in '+[rx,ry,rw,rh].map(Math.round)+')')})});
var s=document.getElementById('search');var query='',panel='';
devs.forEach(function(g){
 var p=g.id.substring(4).split('-');s.value=p[0]+':'+p[1]+':'+p[2]+'.'+p[3];s.dispatchEvent(new Event('input'));
 if(!g.classList.contains('hit'))problems.push('searching '+s.value+' does not find '+g.id);
 query=s.value;panel=document.getElementById('panel-body').textContent;});
if(devs.length>0&&panel.indexOf(query)<0)problems.push('after searching '+query+' the side panel shows: '+panel.substring(0,80));
return JSON.stringify({devices:devs.map(function(g){return g.id}),
 groups:Array.prototype.slice.call(document.querySelectorAll('tr.group')).map(function(r){return r.id}),problems:problems});
})()
""";

    /// <summary>
    /// The harness itself can fail: a page with two overlapping boxes, text wider than its box, a search that finds
    /// nothing, a script error, a console error and a request to the network is reported on every count.
    /// </summary>
    [ChromiumFact]
    public void TheMeasurementsCatchOverlapOverflowABrokenSearchAndPageErrors()
    {
        const string page = """
<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<input id="search"><div id="panel-body"></div>
<svg width="600" height="200" xmlns="http://www.w3.org/2000/svg"><g class="nodes">
<g class="node dev" id="dev-0000-00-01-0" data-group="1"><rect x="10" y="10" width="100" height="40"/><text x="14" y="30">short</text></g>
<g class="node dev" id="dev-0000-00-02-0" data-group="2"><rect x="60" y="20" width="100" height="40"/><text x="64" y="40">a line far too long for the box it sits in</text></g>
</g></svg>
<img src="http://127.0.0.1:9/never.png" alt="">
<script>console.error('something broke'); undefinedFunction();</script>
</body></html>
""";
        var file = Path.Combine(Path.GetTempPath(), $"iommu-report-broken-{Guid.NewGuid():n}.html");
        try
        {
            File.WriteAllText(file, page);
            fixture.Browser.Load(file);
            using var m = JsonDocument.Parse(fixture.Browser.Evaluate(Measure));
            var problems = m.RootElement.GetProperty("problems").EnumerateArray().Select(p => p.GetString()!).ToList();
            Assert.Contains("boxes overlap: dev-0000-00-01-0 dev-0000-00-02-0", problems);
            Assert.Contains(problems, p => p.StartsWith("text leaves its box: dev-0000-00-02-0: a line far too long", StringComparison.Ordinal));
            Assert.Contains("searching 0000:00:01.0 does not find dev-0000-00-01-0", problems);
            var errors = fixture.Browser.Problems;
            Assert.Contains(errors, p => p.StartsWith("console.error: something broke", StringComparison.Ordinal));
            Assert.Contains(errors, p => p.StartsWith("uncaught: ReferenceError: undefinedFunction is not defined", StringComparison.Ordinal));
            Assert.Contains(errors, p => p == "fetched: http://127.0.0.1:9/never.png");
        }
        finally
        {
            File.Delete(file);
        }
    }

    [ChromiumTheory]
    [MemberData(nameof(ReportTests.Sources), MemberType = typeof(ReportTests))]
    public void TheReportRendersInTheBrowserWithoutOverlapAndSearchFindsEveryDevice(string source)
    {
        var path = Path.Combine(CliRunner.FixturesDir, source);
        var machine = MachineSource.Load(path);
        var file = Path.Combine(Path.GetTempPath(), $"iommu-report-browser-{Guid.NewGuid():n}.html");
        try
        {
            var run = CliRunner.Run("report", "--pci-ids", CliRunner.SampleIds, "--source", path, "-o", file);
            Assert.True(run.Code == 0, run.Err);
            var sw = Stopwatch.StartNew();
            fixture.Browser.Load(file);
            using var m = JsonDocument.Parse(fixture.Browser.Evaluate(Measure));
            output.WriteLine($"{source}: {machine.Topology.Count} devices, loaded and measured in {sw.ElapsedMilliseconds} ms");
            var r = m.RootElement;
            static List<string> Strings(JsonElement e) => e.EnumerateArray().Select(x => x.GetString()!).ToList();

            Assert.Equal(machine.Topology.Devices.Select(d => MachinePicture.DeviceId(d.Address)).Order(StringComparer.Ordinal),
                Strings(r.GetProperty("devices")).Order(StringComparer.Ordinal));
            var report = IommuKit.Host.HostAnalysis.Analyze(machine);
            Assert.Equal(report.Groups.Select(g => $"group-{g.Id}"), Strings(r.GetProperty("groups")));
            Assert.Empty(Strings(r.GetProperty("problems")));
            Assert.Empty(fixture.Browser.Problems);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
