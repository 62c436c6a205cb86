using System.CommandLine;
using IommuKit.Host;
using IommuKit.Cli.Rendering;
using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu whatif</c>: the groups under a changed command line and/or with a card moved to another port, as a diff
/// against today's groups (both from the model, so the comparison is like for like). Exit 0 when some group changes,
/// 1 when the change buys nothing, 2 when no IOMMU would be active after the change, 3 bad input.
/// </summary>
internal static class WhatIfCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var json = CommonOptions.Json();
        var cmdline = CommonOptions.Cmdline();
        var move = new Option<string?>("--move")
        {
            Description = "Move the card at ADDRESS (all its functions and anything below them) to the bus below bridge/port PORT, " +
                          "e.g. --move 04:00.0=00:1c.0.",
            HelpName = "ADDRESS=PORT",
        };
        var pciIds = CommonOptions.PciIds();
        var command = new Command("whatif", "Groups under a changed command line or with a card in another slot, as a diff against today: which groups split or merge.\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "some group changes"), (ExitCode.Negative, "the change buys nothing"), (ExitCode.NoIommu, "no IOMMU after the change")))
        {
            source, cmdline, move, json, pciIds,
        };
        command.SetAction(parse => Run(console, parse.GetValue(source), parse.GetValue(cmdline), parse.GetValue(move), parse.GetValue(json), parse.GetValue(pciIds)));
        return command;
    }

    internal static int Run(CliConsole console, string? sourcePath, string? cmdlineText, string? moveText, bool json, string? pciIdsPath)
    {
        if (cmdlineText is null && moveText is null) throw new CliException("say what to change: --cmdline TEXT and/or --move ADDRESS=PORT");
        var ids = Inputs.LoadPciIds(pciIdsPath);
        (PciAddress Card, PciAddress Port)? mv = null;
        if (moveText is not null)
        {
            int eq = moveText.IndexOf('=');
            if (eq <= 0 || eq == moveText.Length - 1) throw new CliException($"--move {moveText}: expected ADDRESS=PORT, e.g. 04:00.0=00:1c.0", ExitCode.InputError);
            mv = (Inputs.Address(moveText[..eq], "--move card"), Inputs.Address(moveText[(eq + 1)..], "--move port"));
        }
        var machine = Inputs.LoadMachine(sourcePath, console);
        var todayCmd = KernelCommandLine.Parse(machine.CommandLine);
        var thenCmd = cmdlineText is null ? todayCmd : KernelCommandLine.Parse(cmdlineText);

        var today = Model.Groups(machine, todayCmd);
        Machine thenMachine = machine;
        IReadOnlyDictionary<PciAddress, PciAddress>? map = null;
        string? moveNote = null;
        if (mv is { } m)
        {
            var card = Inputs.Device(machine, m.Card);
            var port = Inputs.Device(machine, m.Port);
            if (port.Subordinate is null)
                throw new CliException($"--move: {m.Port} is not a bridge or port with a bus below it", ExitCode.InputError);
            if (card.Bus == port.Subordinate)
                throw new CliException($"--move: {m.Card} is already on the bus below {m.Port}", ExitCode.InputError);
            // The first free device number on the port's bus (a root or downstream port has only device 0).
            int slot = Enumerable.Range(0, 32).FirstOrDefault(n => port.Subordinate.Devices.All(d => d.Address.Device != n), -1);
            if (slot < 0) throw new CliException($"--move: the bus below {m.Port} has no free slot", ExitCode.InputError);
            thenMachine = MachineRewrite.MoveSlot(machine, m.Card, m.Port, slot, out map);
            if (slot > 0 && port.PcieType is PcieType.RootPort or PcieType.Downstream)
                moveNote = $"a PCIe port's link carries one card (device 0) and {m.Port.ToShortString()} already has one; " +
                           $"the model places the card beside it as device {slot:x2}, as if the slot were free";
        }
        var then = Model.Groups(thenMachine, thenCmd);
        var notes = new List<string>();
        bool forced = false;
        if (!today.IommuActive && !then.IommuActive)
        {
            // Neither has an IOMMU: compare what the kernel would do with one, and say so.
            forced = true;
            today = Model.Groups(machine, todayCmd, forceActive: true);
            then = Model.Groups(thenMachine, thenCmd, forceActive: true);
            notes.Add("no IOMMU is active before or after the change: comparing the groups the kernel would make with one");
        }
        foreach (var msg in then.Messages) if (!notes.Contains(msg)) notes.Add(msg);
        if (moveNote is not null) notes.Add(moveNote);

        var todayViews = Analysis.ModelViews(machine, todayCmd, today);
        var thenViews = Analysis.ModelViews(thenMachine, thenCmd, then);
        var diff = GroupDiff.Compute(todayViews, thenViews, map);
        bool nothing = diff.All(e => e.Kind == GroupChangeKind.Unchanged);

        // pcie_acs_override= on a kernel without the out-of-tree patch does nothing; people asking usually mean to switch
        // to a kernel that carries it (Proxmox -pve, zen, liquorix), so show that answer too, labelled as such.
        List<DiffEntry>? patchedDiff = null;
        if (then.IommuActive && then.Context?.Acs.Override is { Given: true, Honoured: false })
        {
            var patched = Model.Groups(thenMachine, thenCmd, forced, carriesAcsOverride: true);
            patchedDiff = GroupDiff.Compute(todayViews, Analysis.ModelViews(thenMachine, thenCmd, patched), map);
        }
        int exit = (!then.IommuActive || forced) ? (int)ExitCode.NoIommu : nothing ? (int)ExitCode.Negative : (int)ExitCode.Ok;

        string changeText = string.Join("; ", new[]
        {
            cmdlineText is null ? null : $"command line {CommandLineText.Summary(thenCmd)}",
            mv is { } mm ? $"card {mm.Card.ToShortString()} moved below {mm.Port.ToShortString()}" : null,
        }.Where(x => x is not null));

        if (json)
        {
            JsonOut.Write(console, w =>
            {
                w.WriteStartObject();
                w.WriteString("source", machine.Origin);
                JsonOut.NullableString(w, "kernel", machine.KernelRelease);
                w.WriteString("cmdline", todayCmd.Text);
                w.WriteStartObject("change");
                JsonOut.NullableString(w, "cmdline", cmdlineText is null ? null : thenCmd.Text);
                if (mv is { } m2 && map is not null)
                {
                    w.WriteStartObject("move");
                    w.WriteString("card", m2.Card.ToString());
                    w.WriteString("port", m2.Port.ToString());
                    w.WriteStartObject("addresses");
                    foreach (var (from, to) in map.OrderBy(kv => kv.Key)) w.WriteString(from.ToString(), to.ToString());
                    w.WriteEndObject();
                    w.WriteEndObject();
                }
                else w.WriteNull("move");
                w.WriteEndObject();
                w.WriteBoolean("iommu_active_before", today.IommuActive && !forced);
                w.WriteBoolean("iommu_active_after", then.IommuActive && !forced);
                w.WriteBoolean("buys_nothing", nothing);
                GroupDiff.WriteJson(w, diff);
                if (patchedDiff is not null)
                {
                    // Same shape as the top level "changes", for a kernel that carries the pcie_acs_override patch.
                    w.WriteStartObject("with_acs_override_patch");
                    GroupDiff.WriteJson(w, patchedDiff);
                    w.WriteEndObject();
                }
                w.WriteStartArray("groups_after");
                foreach (var g in thenViews) GroupsRenderer.WriteGroupJson(w, g, ids);
                w.WriteEndArray();
                JsonOut.StringArray(w, "warnings", notes);
                w.WriteEndObject();
            });
            return exit;
        }

        var s = Style.For(console);
        var o = console.Out;
        o.WriteLine($"Source: {machine.Origin}");
        o.WriteLine($"Kernel: {machine.KernelRelease ?? "unknown"}");
        o.WriteLine($"Today: command line {CommandLineText.Summary(todayCmd)}");
        o.WriteLine($"Change: {changeText}");
        if (map is not null)
            o.WriteLine($"Addresses after the move: {string.Join(", ", map.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key.ToShortString()} -> {kv.Value.ToShortString()}"))}");
        o.WriteLine();
        if (!then.IommuActive)
        {
            o.WriteLine(s.Bad($"After the change no IOMMU would be active ({then.Activation.Reason}): no groups at all."));
        }
        else
        {
            o.WriteLine($"Groups: {todayViews.Count} today{(today.IommuActive && !forced ? "" : " (none active)")}, {thenViews.Count} after the change{(forced ? " (as if an IOMMU were on)" : "")}.");
            GroupDiff.WriteText(o, s, diff);
            o.WriteLine();
            if (nothing)
                o.WriteLine(s.Warn("This change buys nothing: every group keeps exactly its members."));
            else
            {
                int split = diff.Count(e => e.Kind == GroupChangeKind.Split), merged = diff.Count(e => e.Kind == GroupChangeKind.Merged);
                var parts = new List<string>();
                if (split > 0) parts.Add($"{split} group{(split == 1 ? "" : "s")} split");
                if (merged > 0) parts.Add($"{merged} merge{(merged == 1 ? "" : "s")}");
                int other = diff.Count(e => e.Kind is GroupChangeKind.Reshaped or GroupChangeKind.Added or GroupChangeKind.Removed);
                if (other > 0) parts.Add($"{other} other change{(other == 1 ? "" : "s")}");
                o.WriteLine($"This change: {string.Join(", ", parts)}.");
            }
            if (patchedDiff is not null)
            {
                o.WriteLine();
                o.WriteLine("On a kernel that carries the pcie_acs_override patch (Proxmox -pve, zen, liquorix, tkg):");
                GroupDiff.WriteText(o, s, patchedDiff);
                if (patchedDiff.All(e => e.Kind == GroupChangeKind.Unchanged))
                    o.WriteLine("  even there this override changes nothing.");
                else
                    o.WriteLine(s.Warn("  the override only claims isolation the hardware does not provide: devices in a split group can still reach each other by peer-to-peer DMA."));
            }
        }
        foreach (var n in notes) console.Warn(n);
        return exit;
    }
}
