using System.Text.Json;
using IommuKit.Host;

namespace IommuKit.Cli.Rendering;

/// <summary>The text and JSON of <c>iommu bind</c> / <c>unbind</c> (<see cref="BindPlan"/>, and the outcome of <c>--apply</c>).</summary>
internal static class BindText
{
    /// <summary>The dry run's writes, or what was done (and restored), then the undo and persistent lines; losses as warnings.</summary>
    public static void WriteText(CliConsole console, BindPlan plan, BindOutcome? outcome)
    {
        var (bind, v, targets, steps, persistent) = (plan.Bind, plan.Verdict, plan.Targets, plan.Steps, plan.Persistent);
        var o = console.Out;
        string subject = VfioCheckText.Subject(v);
        if (steps.Count == 0)
        {
            o.WriteLine(bind ? $"{subject}: every function of the card is already on a VFIO driver; nothing to do"
                             : $"{subject}: no function of the card is on a VFIO driver; nothing to do");
        }
        else if (outcome is null)
        {
            o.WriteLine($"Dry run: `iommu {(bind ? "bind" : "unbind")} {subject} --apply` would write (load the module first: modprobe vfio-pci):");
            foreach (var s in steps) o.WriteLine(s.Text.Length == 0 ? $"  echo > {s.Path}" : $"  echo {s.Text} > {s.Path}");
        }
        else
        {
            foreach (var d in outcome.Done) o.WriteLine($"  {(d.Ok ? "done  " : "FAILED")} {Wording.Action(d.Action)}{(d.Ok ? "" : $": {d.Error}")}");
            if (outcome.Ok)
                o.WriteLine(bind ? $"{targets.Count} device(s) on vfio-pci: {string.Join(", ", targets.Select(t => t.Address.ToShortString()))}"
                                 : $"{targets.Count} device(s) given back to the host");
            else
            {
                o.WriteLine($"{outcome.Failure}; putting the previous drivers back:");
                foreach (var r in outcome.Restore) o.WriteLine($"  {(r.Ok ? "restored" : "FAILED  ")} {Wording.Action(r.Action)}{(r.Ok ? "" : $": {r.Error}")}");
            }
        }
        if (bind && steps.Count > 0 && outcome is not { Ok: false })
        {
            o.WriteLine($"Undo: iommu unbind {subject} --apply");
            if (persistent.KernelParameter is { } k)
            {
                o.WriteLine($"Persistent (binds by id at boot): add {k} to the kernel command line, or put \"{persistent.ModprobeLine}\" in /etc/modprobe.d/vfio.conf");
                if (persistent.AlsoTaken.Count > 0)
                    console.Warn($"the same ids also match {string.Join(", ", persistent.AlsoTaken.Select(a => a.ToShortString()))}: the persistent form would take them too (use driver_override, as this command does, for those)");
            }
        }
        if (outcome is not { Ok: false })
            foreach (var m in plan.Losses) console.Warn($"the host loses {m.Address.ToShortString()}: {m.Loss!.What}");
    }

    /// <summary>The bind/unbind JSON object (docs/json.md).</summary>
    public static void WriteJson(CliConsole console, BindPlan plan, BindOutcome? outcome) =>
        JsonOut.Write(console, w =>
        {
            var (bind, v, steps, persistent) = (plan.Bind, plan.Verdict, plan.Steps, plan.Persistent);
            w.WriteStartObject();
            ReportText.WriteMachineJson(w, v.Report);
            w.WriteString("command", bind ? "bind" : "unbind");
            JsonOut.NullableString(w, "target", v.Target?.ToString());
            if (v.Group is { } g) w.WriteNumber("group", g.Id); else w.WriteNull("group");
            w.WriteString("verdict", VfioCheckText.Word(v.Class));
            w.WriteBoolean("dry_run", outcome is null);
            VfioCheckText.WriteSteps(w, "steps", steps);
            if (outcome is { } oc)
            {
                w.WriteBoolean("applied", oc.Ok);
                JsonOut.NullableString(w, "failure", oc.Failure);
                WriteApplied(w, "done", oc.Done);
                WriteApplied(w, "restore", oc.Restore);
                w.WriteStartArray("previous");
                foreach (var (dev, drv, ov) in oc.Previous)
                {
                    w.WriteStartObject();
                    w.WriteString("address", dev.ToString());
                    JsonOut.NullableString(w, "driver", drv);
                    JsonOut.NullableString(w, "driver_override", ov);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }
            w.WriteString("undo", $"iommu {(bind ? "unbind" : "bind")} {VfioCheckText.Subject(v)} --apply");
            JsonOut.NullableString(w, "kernel_parameter", persistent.KernelParameter);
            JsonOut.NullableString(w, "modprobe", persistent.ModprobeLine);
            JsonOut.StringArray(w, "ids_also_match", persistent.AlsoTaken.Select(a => a.ToString()));
            w.WriteEndObject();
        });

    private static void WriteApplied(Utf8JsonWriter w, string name, IReadOnlyList<AppliedAction> list)
    {
        w.WriteStartArray(name);
        foreach (var a in list) VfioCheckText.WriteStep(w, a.Action, a.Error);
        w.WriteEndArray();
    }
}
