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
internal static partial class HtmlReport
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
}
