using IommuKit.Host.Picture;

namespace IommuKit.Cli.Rendering;

/// <summary>The report's inline stylesheet and script (the HTML around them is in HtmlReport.cs).</summary>
internal static partial class HtmlReport
{
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
