using System.Text.Json;
using IommuKit.Host;
using IommuKit.Sources;

namespace IommuKit.Cli.Rendering;

/// <summary>Text and JSON of a <see cref="VfioReport"/> (docs/cli.md, docs/json.md).</summary>
internal static class VfioCheckText
{
    /// <summary>The JSON <c>verdict</c> word of a class.</summary>
    public static string Word(VerdictClass c) => c switch
    {
        VerdictClass.Ready => "ready",
        VerdictClass.NeedsBinding => "needs-binding",
        VerdictClass.SharesGroup => "shares-group",
        VerdictClass.NotAssignable => "not-assignable",
        _ => "no-iommu",
    };

    public static string RoleWord(DeviceRole r) => r switch
    {
        DeviceRole.Asked => "asked",
        DeviceRole.SameCard => "same-card",
        DeviceRole.Path => "path",
        _ => "other",
    };

    public static string ActionWord(HostActionKind k) => k switch
    {
        HostActionKind.Unbind => "unbind",
        HostActionKind.Override => "override",
        HostActionKind.Probe => "probe",
        HostActionKind.Bind => "bind",
        _ => "write-type",
    };

    /// <summary>How the command names what was asked, for the undo and bind lines: <c>01:00.0</c> or <c>--group 8</c>.</summary>
    public static string Subject(VfioReport v) => v.Target is { } t ? t.ToShortString() : $"--group {v.Group?.Id}";

    public static void WriteText(CliConsole console, VfioReport v, PciIds ids, bool checkModel)
    {
        var s = Style.For(console);
        var o = console.Out;
        var report = v.Report;
        ReportText.WriteHeader(o, report);
        o.WriteLine();
        string what = v.Target is { } tt ? (v.Group is { } g0 ? $"{tt.ToShortString()} (group {g0.Id})" : tt.ToShortString()) : $"group {v.Group?.Id}";
        if (v.Group is not { } view)
        {
            o.WriteLine($"Verdict: {s.Bad(Label(v.Class))}: {string.Join("; ", v.Reasons)}.");
            WriteWarnings(console, v, checkModel);
            return;
        }
        if (v.Class == VerdictClass.NoIommu)
        {
            o.WriteLine(s.Bad($"No active IOMMU: {report.NoIommuReason}, so nothing can be passed through."));
            o.WriteLine(v.NoIommuCause);
            o.WriteLine("With the IOMMU enabled, the model predicts:");
            o.WriteLine();
        }
        WriteMembers(o, s, v, view, ids);
        o.WriteLine();
        string label = v.Class is VerdictClass.Ready or VerdictClass.NeedsBinding ? s.Good(Label(v.Class)) : s.Bad(Label(v.Class));
        o.WriteLine($"Verdict: {label}: {Summary(v, what)}.");
        WriteList(o, "Why:", v.Reasons);
        WriteList(o, "Fix:", v.Verdict?.Fixes ?? []);
        WriteList(o, "What would give the card a group of its own:", v.Splits);
        if (v.Class is VerdictClass.Ready or VerdictClass.NeedsBinding && v.Steps.Count > 0)
        {
            o.WriteLine($"Steps (`iommu bind {Subject(v)}` shows them, `--apply` performs them; load the module first: modprobe vfio-pci):");
            for (int i = 0; i < v.Steps.Count; i++) o.WriteLine($"  {i + 1}. {Wording.Action(v.Steps[i])}");
            // The host is using a target (its root disk, default route, console, keyboard): say so where the steps are.
            if (HostAnalysis.BindRefusal(v) is { } held) o.WriteLine(s.Warn($"The host is using it, so `iommu bind --apply` refuses: {held}"));
        }
        WriteWarnings(console, v, checkModel);
    }

    private static string Label(VerdictClass c) => c switch
    {
        VerdictClass.Ready => "READY",
        VerdictClass.NeedsBinding => "NEEDS BINDING",
        VerdictClass.SharesGroup => "SHARES GROUP",
        VerdictClass.NotAssignable => "NOT ASSIGNABLE",
        _ => "NO IOMMU",
    };

    private static string Summary(VfioReport v, string what) => v.Class switch
    {
        VerdictClass.Ready => $"{what} can be passed through now",
        VerdictClass.NeedsBinding => $"{what} holds only this card{(v.Members.Any(m => m.Role == DeviceRole.Path) ? " and its path" : "")}; " +
                                     $"bind {(v.Targets.Count == 1 ? "it" : $"its {v.Targets.Count} functions")} to vfio-pci and it can be passed through",
        VerdictClass.SharesGroup => $"{what} also holds {string.Join(", ", v.Members.Where(m => m.Role == DeviceRole.Other).Select(m => m.Address.ToShortString()))}: " +
                                    "they go to the VM with it, or nothing goes",
        VerdictClass.NotAssignable => $"{what} cannot be given to a VM",
        _ => $"{what} cannot be passed through until the IOMMU is on",
    };

    private static void WriteMembers(TextWriter o, Style s, VfioReport r, GroupReport view, PciIds ids)
    {
        var v = r.Verdict!;
        o.WriteLine(GroupsRenderer.Heading(s, view, r.Report.Predicted));
        string rule = v.Rule == "dma-ownership"
            ? $"DMA ownership (kernel {(v.Kernel?.ToString() ?? "unknown")}, 5.19 and later): a bound driver that uses the DMA API must be unbound first"
            : $"viable group (kernel {v.Kernel}, before 5.19): every device driver-less, on vfio, on pci-stub, or a bridge";
        o.WriteLine($"Rule: {rule}");
        foreach (var m in r.Members)
        {
            string role = RoleWord(m.Role).PadRight(9);
            string driver = m.Driver is { } d ? $"  driver: {d}" : "";
            string slot = PciSlots.NameOf(r.Report.Machine, m.Device) is { } sl ? $"  slot: {sl}" : "";
            o.WriteLine($"  {role} {DeviceText.LspciNnsLine(m.Device, ids)}{driver}{slot}");
            string why = m.HostFunction is { } k && m.Role is DeviceRole.Other or DeviceRole.Asked
                ? $"{Passthrough.HostFunctions.Describe(k)}; {m.Reason}" : m.Reason;
            o.WriteLine($"            {(m.Ok ? why : s.Bad(why))}");
        }
        if (view.ReservedRegions is { } regions)
            foreach (var reg in regions) o.WriteLine($"  reserved {reg}");
        WriteList(o, "Functions of this card in other groups (bound with it):",
            r.Related.Select(GroupsRenderer.RelatedText));
        WriteList(o, "If the whole group goes to a VM, the host loses:", r.HostLosses.Select(l => $"{l.Address.ToShortString()} {l.What}"));
        WriteList(o, "Problems:", v.Problems.Select(p => s.Bad(p)));
        WriteList(o, "Notes:", v.Notes);
        WriteList(o, "With a virtual IOMMU in the VM (all of these go to the same VM):",
            r.AddressSpaces.Select(a => a.MustShare ? s.Warn(a.Reason) : a.Reason));
    }

    /// <summary>
    /// The report's notes, and the model's disagreements as one note about what was asked (the verdict is the kernel's
    /// groups'); every disagreement only with <c>--check-model</c>.
    /// </summary>
    private static void WriteWarnings(CliConsole console, VfioReport v, bool checkModel)
    {
        if (checkModel) { ReportText.WriteWarnings(console, v.Report); return; }
        ReportText.WriteWarnings(console, v.Report, []);
        if (ScopedDisagreement(v) is { } note) console.Warn(note);
    }

    /// <summary>One line when the model disagrees with the kernel about the checked group; null otherwise.</summary>
    public static string? ScopedDisagreement(VfioReport v)
    {
        if (v.Group is not { } g) return null;
        var about = v.Report.Disagreements.Where(d => d.Devices.Any(g.Contains)).ToList();
        if (about.Count == 0) return null;
        return $"the model does not reproduce the kernel's group {g.Id} ({about.Count} difference{(about.Count == 1 ? "" : "s")}); " +
               "the verdict uses the kernel's group (--check-model lists them and makes them an error)";
    }

    private static void WriteList(TextWriter o, string title, IEnumerable<string> items)
    {
        var list = items.ToList();
        if (list.Count == 0) return;
        o.WriteLine(title);
        foreach (var i in list) o.WriteLine($"  - {i}");
    }

    /// <summary>
    /// <c>"host_use"</c>: what the running host uses a device for (written only when it uses it for something):
    /// <c>kind</c> (root-fs, boot-fs, swap, default-route, boot-vga, console-fb, keyboard), <c>detail</c>, <c>via</c>.
    /// </summary>
    private static void WriteHostUses(Utf8JsonWriter w, IReadOnlyList<HostUse> uses)
    {
        w.WriteStartArray("host_use");
        foreach (var u in uses)
        {
            w.WriteStartObject();
            w.WriteString("kind", u.Kind switch
            {
                HostUseKind.RootFs => "root-fs",
                HostUseKind.BootFs => "boot-fs",
                HostUseKind.Swap => "swap",
                HostUseKind.DefaultRoute => "default-route",
                HostUseKind.BootVga => "boot-vga",
                HostUseKind.ConsoleFb => "console-fb",
                _ => "keyboard",
            });
            w.WriteString("detail", u.Detail);
            JsonOut.NullableString(w, "via", u.Via);
            w.WriteEndObject();
        }
        w.WriteEndArray();
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
        w.WriteString("verdict", Word(r.Class));
        w.WritePropertyName("group");
        if (r.Group is null) w.WriteNullValue(); else GroupsRenderer.WriteGroupJson(w, r.Group, ids, r.Report.Machine);
        JsonOut.NullableString(w, "rule", v?.Rule);
        w.WriteBoolean("viable", r.Outcome == VfioOutcome.Viable);
        w.WriteStartArray("devices");
        foreach (var m in r.Members)
        {
            w.WriteStartObject();
            w.WriteString("address", m.Address.ToString());
            w.WriteString("role", RoleWord(m.Role));
            JsonOut.NullableString(w, "driver", m.Driver);
            JsonOut.NullableString(w, "slot", PciSlots.NameOf(r.Report.Machine, m.Device));
            w.WriteString("status", m.Ok ? "ok" : "blocking");
            w.WriteString("reason", m.Reason);
            JsonOut.NullableString(w, "host_function", m.HostFunction is { } k ? Passthrough.HostFunctions.Describe(k) : null);
            if (m.Uses.Count > 0) WriteHostUses(w, m.Uses);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        GroupsRenderer.WriteRelatedJson(w, r.Related);
        WriteSteps(w, "steps", r.Steps);
        JsonOut.StringArray(w, "reasons", r.Reasons);
        JsonOut.StringArray(w, "splits", r.Splits);
        JsonOut.NullableString(w, "no_iommu_cause", r.NoIommuCause);
        JsonOut.StringArray(w, "problems", r.Problems);
        w.WriteStartArray("host_losses");
        foreach (var l in r.HostLosses)
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

    /// <summary>Steps as data: <c>{action, device, driver, path, text}</c>.</summary>
    public static void WriteSteps(Utf8JsonWriter w, string name, IEnumerable<HostAction> steps)
    {
        w.WriteStartArray(name);
        foreach (var a in steps) WriteStep(w, a, null);
        w.WriteEndArray();
    }

    public static void WriteStep(Utf8JsonWriter w, HostAction a, string? error)
    {
        w.WriteStartObject();
        w.WriteString("action", ActionWord(a.Kind));
        JsonOut.NullableString(w, "device", a.Device);
        JsonOut.NullableString(w, "driver", a.Driver);
        w.WriteString("path", a.Path);
        w.WriteString("text", a.Text);
        if (error is not null) w.WriteString("error", error);
        w.WriteEndObject();
    }
}
