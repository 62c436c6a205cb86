using IommuKit.Host;
using IommuKit.Sources;

namespace IommuKit.Cli.Rendering;

/// <summary>Text and JSON of a <see cref="VfioReport"/> (docs/cli.md, docs/json.md).</summary>
internal static class VfioCheckText
{
    private static string Word(VfioOutcome o) => o switch { VfioOutcome.Viable => "viable", VfioOutcome.NoIommu => "no-iommu", _ => "not-viable" };

    public static void WriteText(CliConsole console, VfioReport v, PciIds ids)
    {
        var s = Style.For(console);
        var o = console.Out;
        var report = v.Report;
        ReportText.WriteHeader(o, report);
        o.WriteLine();
        if (v.Group is not { } view)
        {
            o.WriteLine($"Verdict: {s.Bad("NOT VIABLE")}: {v.Problems[0]}.");
            ReportText.WriteWarnings(console, report);
            return;
        }
        bool noIommu = v.Outcome == VfioOutcome.NoIommu;
        if (noIommu)
        {
            o.WriteLine(s.Bad($"No active IOMMU: {report.NoIommuReason}, so nothing can be passed through."));
            o.WriteLine(report.EnableAdvice);
            o.WriteLine("With the IOMMU enabled, the model predicts:");
            o.WriteLine();
        }
        WriteVerdict(o, s, v, view, ids);
        o.WriteLine();
        string label = noIommu ? s.Bad("NO IOMMU") : v.Outcome == VfioOutcome.Viable ? s.Good("VIABLE") : s.Bad("NOT VIABLE");
        string what = v.Target is { } tt ? $"{tt.ToShortString()} (group {view.Id})" : $"group {view.Id}";
        string tail = noIommu ? $"{what} cannot be passed through until the IOMMU is on"
            : v.Outcome == VfioOutcome.Viable ? $"{what} can be passed through as the source shows it"
            : $"{what} cannot be passed through as the source shows it";
        o.WriteLine($"Verdict: {label}: {tail}.");
        if (v.Verdict!.Fixes.Count > 0)
        {
            o.WriteLine("Fix:");
            foreach (var f in v.Verdict.Fixes) o.WriteLine($"  - {f}");
        }
        ReportText.WriteWarnings(console, report);
    }

    private static void WriteVerdict(TextWriter o, Style s, VfioReport r, GroupReport view, PciIds ids)
    {
        var v = r.Verdict!;
        o.WriteLine(GroupsRenderer.Heading(s, view, r.Report.Predicted));
        string rule = v.Rule == "dma-ownership"
            ? $"DMA ownership (kernel {(v.Kernel?.ToString() ?? "unknown")}, 5.19 and later): a bound driver that uses the DMA API blocks the group"
            : $"viable group (kernel {v.Kernel}, before 5.19): every device driver-less, on vfio, on pci-stub, or a bridge";
        o.WriteLine($"Rule: {rule}");
        foreach (var dv in v.Devices)
        {
            var dev = view.Devices.First(d => d.Address == dv.Address);
            string status = dv.Ok ? s.Good("OK      ") : s.Bad("BLOCKING");
            string mark = r.Target == dv.Address ? "  <- asked" : "";
            o.WriteLine($"  {status}  {DeviceText.LspciNnsLine(dev, ids)}{mark}");
            o.WriteLine($"            {dv.Reason}");
        }
        if (view.ReservedRegions is { } regions)
            foreach (var reg in regions) o.WriteLine($"  reserved {reg}");
        WriteList(o, "Problems:", v.Problems.Select(p => s.Bad(p)));
        WriteList(o, "If the whole group goes to a VM, the host loses:", v.HostLosses.Select(l => $"{l.Address.ToShortString()} {l.What}"));
        WriteList(o, "Notes:", v.Notes);
        WriteList(o, "With a virtual IOMMU in the VM (all of these go to the same VM):",
            r.AddressSpaces.Select(a => a.MustShare ? s.Warn(a.Reason) : a.Reason));
    }

    private static void WriteList(TextWriter o, string title, IEnumerable<string> items)
    {
        var list = items.ToList();
        if (list.Count == 0) return;
        o.WriteLine(title);
        foreach (var i in list) o.WriteLine($"  - {i}");
    }

    /// <summary>
    /// The one JSON shape of docs/json.md, with or without a group: a device in no group has <c>group</c> and
    /// <c>rule</c> null, empty per-device lists and its reason in <c>problems</c>.
    /// </summary>
    public static void WriteJson(CliConsole console, VfioReport r, PciIds ids) => JsonOut.Write(console, w =>
    {
        var v = r.Verdict;
        w.WriteStartObject();
        ReportText.WriteMachineJson(w, r.Report);
        JsonOut.NullableString(w, "target", r.Target?.ToString());
        w.WritePropertyName("group");
        if (r.Group is null) w.WriteNullValue(); else GroupsRenderer.WriteGroupJson(w, r.Group, ids);
        JsonOut.NullableString(w, "rule", v?.Rule);
        w.WriteBoolean("viable", r.Outcome == VfioOutcome.Viable);
        w.WriteString("verdict", Word(r.Outcome));
        w.WriteStartArray("devices");
        foreach (var d in v?.Devices ?? [])
        {
            w.WriteStartObject();
            w.WriteString("address", d.Address.ToString());
            JsonOut.NullableString(w, "driver", d.Driver);
            w.WriteString("status", d.Ok ? "ok" : "blocking");
            w.WriteString("reason", d.Reason);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        JsonOut.StringArray(w, "problems", r.Problems);
        w.WriteStartArray("host_losses");
        foreach (var l in v?.HostLosses ?? [])
        {
            w.WriteStartObject();
            w.WriteString("address", l.Address.ToString());
            w.WriteString("what", l.What);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        JsonOut.StringArray(w, "fixes", v?.Fixes ?? []);
        w.WriteStartArray("address_spaces");
        foreach (var a in r.AddressSpaces)
        {
            w.WriteStartObject();
            JsonOut.StringArray(w, "devices", a.Devices.Select(d => d.ToString()));
            w.WriteBoolean("must_share", a.MustShare);
            w.WriteString("reason", a.Reason);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        JsonOut.StringArray(w, "notes", v?.Notes ?? []);
        JsonOut.StringArray(w, "disagreements", r.Report.Disagreements.Select(d => d.Text));
        JsonOut.StringArray(w, "warnings", r.Report.Notes);
        w.WriteEndObject();
    });
}
