using System.Globalization;
using System.Net;
using System.Text;
using IommuKit.Host;
using IommuKit.Host.Picture;

namespace IommuKit.Cli.Rendering;

/// <summary>
/// <c>iommu report</c>'s HTML: one self-contained file (inline CSS, SVG and script; nothing fetched, opens from disk),
/// light and dark through <c>prefers-color-scheme</c>, printable. The layout is the library's
/// (<see cref="MachinePicture"/>); this only draws it. Everything from input is made printable
/// (<see cref="PictureText.Visible"/>) and HTML-encoded.
/// </summary>
internal static class HtmlReport
{
    private static string H(string? s) => WebUtility.HtmlEncode(PictureText.Visible(s ?? ""));
    private static string N(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);

    /// <summary>The hue of a group's colour: golden-angle steps, so neighbouring numbers get distant hues.</summary>
    public static int Hue(int colour) => (int)(colour * 137.508 % 360);

    /// <summary>Every other run of five colours is darker (lighter in dark mode), so near hues still differ.</summary>
    private static string Alt(int colour) => colour / 5 % 2 == 1 ? " alt" : "";

    public static string Render(MachinePicture p)
    {
        var r = p.Report;
        var m = r.Machine;
        var sb = new StringBuilder(64 * 1024);
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        sb.Append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        sb.Append("<meta name=\"generator\" content=\"iommu report\">\n");
        sb.Append($"<title>IOMMU groups: {H(m.Origin)}</title>\n<style>\n{Css}</style>\n</head>\n<body>\n");
        sb.Append($"<header>\n<h1>IOMMU groups of <span id=\"origin\">{H(m.Origin)}</span></h1>\n<p id=\"facts\">");
        sb.Append($"kernel {H(m.KernelRelease ?? "unknown")} · command line <code>{H(string.IsNullOrEmpty(r.CommandLine.Text) ? "(none)" : r.CommandLine.Text)}</code> · ");
        sb.Append($"{m.Topology.Count} devices · {p.Groups.Count} groups ({(r.Predicted ? "the model's prediction" : "the kernel's")}) · IOMMU {StateWord(r.State)}: {H(r.StateReason)}</p>\n");
        sb.Append("<p class=\"noprint\"><label for=\"search\">Find a device </label><input id=\"search\" type=\"search\" autocomplete=\"off\" ");
        sb.Append("placeholder=\"address, 8086:1234, name, driver, slot\"> <span id=\"hits\" aria-live=\"polite\"></span></p>\n</header>\n");
        Legend(sb);
        sb.Append("<main>\n<div id=\"canvas\">\n");
        Svg(sb, p);
        sb.Append("</div>\n<aside id=\"panel\" class=\"noprint\"><h2>Why is it in its group?</h2><div id=\"panel-body\">Hover or click a device.</div></aside>\n</main>\n");
        Groups(sb, p);
        if (r.Disagreements.Count > 0)
        {
            sb.Append("<section id=\"disagreements\"><h2>The kernel's groups and the model's disagree</h2><ul>\n");
            foreach (var d in r.Disagreements) sb.Append($"<li>{H(d.Text)}</li>\n");
            sb.Append("</ul></section>\n");
        }
        if (r.Notes.Count > 0 || m.Warnings.Count > 0)
        {
            sb.Append("<section id=\"notes\"><h2>Notes</h2><ul>\n");
            foreach (var n in r.Notes) sb.Append($"<li>{H(n)}</li>\n");
            foreach (var w in m.Warnings) sb.Append($"<li>warning: {H(w)}</li>\n");
            sb.Append("</ul></section>\n");
        }
        sb.Append("<div id=\"explanations\" hidden>\n");
        foreach (var n in p.Nodes)
        {
            if (n.Device is null) continue;
            sb.Append($"<div class=\"explain\" id=\"x-{n.Id}\"><h3>{H(n.Device.Address.ToString())}</h3><p>{H(n.Lines[1])}</p><ol>");
            foreach (var s in n.Explain) sb.Append($"<li>{H(s)}</li>");
            sb.Append("</ol>");
            if (n.Group is { } gid) sb.Append($"<p><a href=\"#group-{gid}\">group {gid}</a></p>");
            sb.Append("</div>\n");
        }
        sb.Append("</div>\n<footer>Drawn by <code>iommu report</code>. Colours and marks: docs/report.md.</footer>\n");
        sb.Append($"<script>\n{Script}</script>\n</body>\n</html>\n");
        return sb.ToString();
    }

    private static string StateWord(IommuState s) => s switch
    {
        IommuState.Active => "active",
        IommuState.Off => "off",
        _ => "assumed",
    };

    private static void Legend(StringBuilder sb) => sb.Append(
        "<section id=\"legend\"><h2>Reading the picture</h2><ul>\n" +
        "<li>Each IOMMU group has a colour; a tinted box surrounds its members. Everything in one group goes to a VM together.</li>\n" +
        "<li><span class=\"key nogroup\">grey</span> devices are in no group (no IOMMU unit manages them).</li>\n" +
        "<li><span class=\"key noacs\">no ACS</span> marks a port, bridge or multifunction device without Access Control Services: devices below or beside it share a group.</li>\n" +
        "<li><span class=\"key disagree\">dashed red</span> outline: the kernel's group and the model's differ for this device.</li>\n" +
        "<li>Verdicts: <b>ready</b> (passes through as is), <b>needs-binding</b> (bind to vfio-pci first), <b>shares-group</b> (other cards or host functions come along), " +
        "<b>not-assignable</b> (a host function, a direct/RMRR region, no interrupt remapping), <b>no-iommu</b>.</li>\n</ul></section>\n");

    private static void Svg(StringBuilder sb, MachinePicture p)
    {
        sb.Append($"<svg id=\"tree\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{N(p.Width)}\" height=\"{N(p.Height)}\" viewBox=\"0 0 {N(p.Width)} {N(p.Height)}\" role=\"img\" aria-label=\"PCI tree coloured by IOMMU group\">\n");
        sb.Append("<g class=\"regions\">\n");
        foreach (var g in p.Groups)
            foreach (var b in g.Regions)
                sb.Append($"<rect class=\"region{Alt(g.Colour)}\" data-group=\"{g.Id}\" style=\"--h:{Hue(g.Colour)}\" x=\"{N(b.X)}\" y=\"{N(b.Y)}\" width=\"{N(b.Width)}\" height=\"{N(b.Height)}\" rx=\"6\"/>\n");
        sb.Append("</g>\n<g class=\"edges\">\n");
        var byId = p.Nodes.ToDictionary(n => n.Id);
        foreach (var n in p.Nodes)
        {
            if (n.Parent is null || !byId.TryGetValue(n.Parent, out var parent)) continue;
            double x1 = parent.Box.Right, y1 = parent.Box.Y + parent.Box.Height / 2, x2 = n.Box.X, y2 = n.Box.Y + n.Box.Height / 2;
            double xm = x1 + (x2 - x1) / 2;
            sb.Append($"<path d=\"M{N(x1)} {N(y1)}H{N(xm)}V{N(y2)}H{N(x2)}\"/>\n");
        }
        sb.Append("</g>\n<g class=\"nodes\">\n");
        var colourOf = p.Groups.ToDictionary(g => g.Id, g => g.Colour);
        foreach (var n in p.Nodes)
        {
            var cls = new StringBuilder(n.Device is null ? "node bus" : "node dev");
            if (n.Device is not null && n.Group is null) cls.Append(" nogroup");
            if (n.Group is { } gc) cls.Append(Alt(colourOf[gc]));
            if (n.Disagrees) cls.Append(" disagree");
            sb.Append($"<g class=\"{cls}\" id=\"{n.Id}\" data-search=\"{H(n.Search)}\"");
            if (n.Group is { } gid) sb.Append($" data-group=\"{gid}\" style=\"--h:{Hue(colourOf[gid])}\"");
            if (n.Device is not null) sb.Append(" tabindex=\"0\"");
            sb.Append('>');
            if (n.Device is not null) sb.Append($"<title>{H(string.Join("\n", n.Lines))}</title>");
            sb.Append($"<rect x=\"{N(n.Box.X)}\" y=\"{N(n.Box.Y)}\" width=\"{N(n.Box.Width)}\" height=\"{N(n.Box.Height)}\" rx=\"4\"/>");
            for (int i = 0; i < n.Lines.Count; i++)
            {
                string line = n.Lines[i];
                string lc = i == 0 ? "t0" : line == "no ACS" ? "noacs" : line.StartsWith("ACS", StringComparison.Ordinal) ? "acs"
                    : line.StartsWith('≠') ? "dis" : "";
                double y = n.Box.Y + PictureMetrics.PadY + (i + 1) * PictureMetrics.LineHeight - 3;
                sb.Append($"<text x=\"{N(n.Box.X + PictureMetrics.PadX)}\" y=\"{N(y)}\"{(lc.Length > 0 ? $" class=\"{lc}\"" : "")}>{H(line)}</text>");
            }
            sb.Append("</g>\n");
        }
        sb.Append("</g>\n</svg>\n");
    }

    private static void Groups(StringBuilder sb, MachinePicture p)
    {
        sb.Append("<section id=\"groups\"><h2>Groups</h2>\n<table>\n<thead><tr><th>group</th><th>verdict</th><th>members</th><th>in the way</th><th>the host loses</th><th>what would split it</th></tr></thead>\n<tbody>\n");
        foreach (var g in p.Groups)
        {
            sb.Append($"<tr class=\"group{Alt(g.Colour)}\" id=\"group-{g.Id}\" data-group=\"{g.Id}\" data-verdict=\"{VfioCheckText.Word(g.Verdict)}\" style=\"--h:{Hue(g.Colour)}\">");
            sb.Append($"<td><span class=\"swatch\"></span>{g.Id}{(g.Origin == GroupOrigin.Model ? " <small>(model)</small>" : "")}</td>");
            sb.Append($"<td class=\"verdict {VfioCheckText.Word(g.Verdict)}\">{VfioCheckText.Word(g.Verdict)}</td><td>");
            foreach (var a in g.Devices) sb.Append($"<a href=\"#{MachinePicture.DeviceId(a)}\" class=\"member\">{H(a.ToShortString())}</a> ");
            sb.Append("</td><td>");
            List(sb, g.Problems.Concat(g.Disagreements.Select(d => "disagreement: " + d)));
            sb.Append("</td><td>");
            List(sb, g.HostLosses);
            sb.Append($"</td><td>{H(g.Split ?? "")}</td></tr>\n");
        }
        sb.Append("</tbody>\n</table></section>\n");
    }

    private static void List(StringBuilder sb, IEnumerable<string> items)
    {
        bool any = false;
        foreach (var i in items)
        {
            if (!any) sb.Append("<ul>");
            any = true;
            sb.Append($"<li>{H(i)}</li>");
        }
        if (any) sb.Append("</ul>");
    }

    private static readonly string Css = $$"""
:root { color-scheme: light dark; --bg:#fff; --fg:#1b1b1b; --muted:#666; --box:#fff; --edge:#999; --grey:#bbb; --bad:#c62828; --l:42%; --tint:0.13; }
.alt { --l:28%; }
@media (prefers-color-scheme: dark) { :root { --bg:#15171a; --fg:#e6e6e6; --muted:#9a9a9a; --box:#23262b; --edge:#666; --grey:#555; --bad:#ff6b6b; --l:62%; --tint:0.20; } .alt { --l:76%; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 12px 16px; background: var(--bg); color: var(--fg); font: 14px/1.4 system-ui, sans-serif; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 16px 0 6px; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
#facts { color: var(--muted); margin: 0 0 6px; }
#search { width: 22em; padding: 3px 6px; }
main { display: flex; gap: 12px; align-items: flex-start; }
#canvas { overflow: auto; flex: 1 1 auto; border: 1px solid var(--grey); border-radius: 6px; max-height: 80vh; }
#panel { flex: 0 0 24em; position: sticky; top: 8px; border: 1px solid var(--grey); border-radius: 6px; padding: 8px; font-size: 13px; }
#panel h2 { margin-top: 0; } #panel h3 { margin: 0; font-size: 14px; } #panel ol { padding-left: 1.4em; }
svg text { font: {{N(PictureMetrics.FontSize)}}px ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; fill: var(--fg); white-space: pre; }
svg .t0 { font-weight: 600; } svg .noacs, svg .dis { fill: var(--bad); font-weight: 600; } svg .acs { fill: var(--muted); }
.edges path { fill: none; stroke: var(--edge); stroke-width: 1.2; }
.region { fill: hsl(var(--h) 70% var(--l) / var(--tint)); stroke: hsl(var(--h) 70% var(--l)); stroke-width: 1.5; }
.node rect { fill: var(--box); stroke: var(--grey); stroke-width: 1.2; }
.node[data-group] rect { stroke: hsl(var(--h) 70% var(--l)); stroke-width: 2.5; }
.node.bus rect { fill: none; stroke: var(--edge); stroke-dasharray: 3 2; }
.node.nogroup rect { fill: var(--grey); fill-opacity: 0.35; } .node.nogroup text { fill: var(--muted); }
.node.disagree rect { stroke: var(--bad); stroke-dasharray: 6 3; stroke-width: 2.5; }
.node.dev { cursor: pointer; } .node.dev:focus { outline: none; } .node.dev:focus rect, .node.selected rect { stroke-width: 4; }
.node.hit rect { stroke: #f5a000; stroke-width: 5; stroke-dasharray: none; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid var(--grey); padding: 4px 6px; text-align: left; vertical-align: top; }
td ul { margin: 0; padding-left: 1.1em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 4px; border-radius: 2px; vertical-align: -1px; background: hsl(var(--h) 70% var(--l)); }
.verdict.ready { color: #2e7d32; font-weight: 600; } .verdict.not-assignable, .verdict.shares-group { color: var(--bad); }
.key { padding: 0 4px; border-radius: 3px; } .key.nogroup { background: var(--grey); } .key.noacs { color: var(--bad); font-weight: 600; }
.key.disagree { border: 2px dashed var(--bad); }
a.member { font-family: ui-monospace, monospace; }
footer { color: var(--muted); margin-top: 16px; font-size: 12px; }
@media print {
  .noprint, #panel { display: none !important; }
  body { padding: 0; }
  #canvas { overflow: visible; max-height: none; border: none; }
  #tree { max-width: 100%; height: auto; }
  * { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  tr { break-inside: avoid; }
}

""";

    private const string Script = """
(function () {
  'use strict';
  var nodes = Array.prototype.slice.call(document.querySelectorAll('.node.dev'));
  var panel = document.getElementById('panel-body');
  var pinned = null;
  function show(n) {
    var x = document.getElementById('x-' + n.id);
    panel.replaceChildren();
    if (x) panel.appendChild(x.cloneNode(true));
  }
  nodes.forEach(function (n) {
    n.addEventListener('mouseenter', function () { if (!pinned) show(n); });
    n.addEventListener('focus', function () { show(n); });
    n.addEventListener('click', function () {
      if (pinned) pinned.classList.remove('selected');
      pinned = pinned === n ? null : n;
      if (pinned) { pinned.classList.add('selected'); show(n); }
    });
  });
  var search = document.getElementById('search');
  var hits = document.getElementById('hits');
  function find() {
    var q = search.value.trim().toLowerCase();
    var found = [];
    nodes.forEach(function (n) {
      var hit = q.length > 0 && n.getAttribute('data-search').indexOf(q) >= 0;
      n.classList.toggle('hit', hit);
      if (hit) found.push(n);
    });
    hits.textContent = q.length === 0 ? '' : found.length + (found.length === 1 ? ' device' : ' devices');
    if (found.length > 0) {
      found[0].scrollIntoView({ block: 'center', inline: 'center' });
      show(found[0]);
    }
  }
  search.addEventListener('input', find);
})();

""";
}
