using IommuKit.Host;
using IommuKit.Cli.Rendering;
using IommuKit.Pci;

namespace IommuKit.Cli.Commands;

/// <summary>Whether the machine (under the command line used) has an active IOMMU.</summary>
internal enum IommuState
{
    /// <summary>The kernel made groups, or the model says an IOMMU is active.</summary>
    Active,
    /// <summary>No IOMMU is active: the kernel made no groups, or the model says none would be under this command line.</summary>
    Off,
    /// <summary>The source does not say (an lspci dump without units or "IOMMU group" lines): the model assumes one.</summary>
    Assumed,
}

/// <summary>One difference between the kernel's groups and the model's: its text and the devices it is about.</summary>
internal sealed record Disagreement(string Text, IReadOnlyList<PciAddress> Devices)
{
    public override string ToString() => Text;
}

/// <summary>
/// The groups of one machine as the commands present them: the kernel's when the source holds them (checked against
/// the model), otherwise the model's prediction (forced "as if the IOMMU were on" when it is off); with each group's
/// type, reserved regions and fingerprint.
/// </summary>
internal sealed class Analysis
{
    public required Machine Machine { get; init; }
    public required KernelCommandLine CommandLine { get; init; }
    public required bool CommandLineOverridden { get; init; }
    public required IommuState State { get; init; }
    /// <summary>Why the IOMMU is (not) active, one line.</summary>
    public required string StateReason { get; init; }
    /// <summary>The groups to show, sorted by number.</summary>
    public required IReadOnlyList<GroupView> Groups { get; init; }
    /// <summary>True when <see cref="Groups"/> are the model's prediction rather than the kernel's.</summary>
    public required bool Predicted { get; init; }
    /// <summary>The model's result the groups were compared with or taken from (forced active when the IOMMU is off).</summary>
    public required GroupingResult Model { get; init; }
    /// <summary>The model's groups as views.</summary>
    public required IReadOnlyList<GroupView> ModelGroups { get; init; }
    /// <summary>Model/kernel disagreements, naming the devices (a bug for us to fix).</summary>
    public required IReadOnlyList<Disagreement> Disagreements { get; init; }
    /// <summary>Other things worth saying (the model's messages, why a prediction is shown).</summary>
    public required IReadOnlyList<string> Notes { get; init; }

    /// <summary>The disagreements about one device (it is a member of a group they compare).</summary>
    public List<Disagreement> DisagreementsAbout(PciAddress a) => Disagreements.Where(d => d.Devices.Contains(a)).ToList();

    /// <summary>What text mode prints on stderr: the notes, then the disagreements given (all of them by default).</summary>
    public void WriteWarnings(CliConsole console, IEnumerable<Disagreement>? disagreements = null)
    {
        foreach (var n in Notes) console.Warn(n);
        foreach (var d in disagreements ?? Disagreements) console.Warn($"model disagrees with the kernel: {d}");
    }

    /// <summary>The shown group holding an address, or null.</summary>
    public GroupView? GroupOf(PciAddress a) => Groups.FirstOrDefault(g => g.Devices.Any(d => d.Address == a));

    public static Analysis Run(Machine machine, string? cmdlineOverride)
    {
        var cmdline = Inputs.CommandLine(machine, cmdlineOverride);
        bool overridden = cmdlineOverride is not null;
        var notes = new List<string>();
        var disagreements = new List<Disagreement>();

        var result = Commands.Model.Groups(machine, cmdline);
        bool kernelShown = machine.KernelGroups is { Count: > 0 } && !overridden;
        IommuState state;
        string reason = result.Activation.Reason;
        if (kernelShown) { state = IommuState.Active; reason = "the kernel made IOMMU groups"; }
        else if (!overridden && machine.KernelGroups is { Count: 0 }) state = IommuState.Off;
        else if (!result.IommuActive) state = IommuState.Off;
        else state = result.Activation.Assumed ? IommuState.Assumed : IommuState.Active;

        if (state == IommuState.Off) result = Commands.Model.Groups(machine, cmdline, forceActive: true);
        foreach (var m in result.Messages)
            if (!(state == IommuState.Off && m == result.Activation.Reason)) notes.Add(m);
        // One core model per analysis: the model's views and the kernel's (for what the source lacks) share it.
        Func<IReadOnlyList<PciAddress>, GroupPrediction> predict;
        if (state != IommuState.Off) predict = Commands.Model.Predictions(machine, cmdline);
        else
        {
            predict = Commands.Model.PredictionsAsIfOn(machine, cmdline, result.Activation.Kind, out var note);
            if (note is not null) notes.Add(note);
        }
        var model = ModelViews(result, predict);

        IReadOnlyList<GroupView> shown;
        if (kernelShown)
        {
            shown = KernelViews(machine, predict);
            Compare(shown, model, disagreements);
        }
        else
        {
            shown = model;
            if (overridden && machine.KernelGroups is { Count: > 0 })
                notes.Add("the kernel's groups belong to the source's own command line; these are the model's groups under --cmdline");
            else if (state != IommuState.Off && machine.KernelGroups is null)
                notes.Add("the source does not include the kernel's groups: these are the model's prediction");
        }
        return new Analysis
        {
            Machine = machine,
            CommandLine = cmdline,
            CommandLineOverridden = overridden,
            State = state,
            StateReason = reason,
            Groups = shown,
            Predicted = !kernelShown,
            Model = result,
            ModelGroups = model,
            Disagreements = disagreements,
            Notes = notes,
        };
    }

    /// <summary>The model's groups as views, type and regions from the core's prediction for that machine and command line.</summary>
    public static IReadOnlyList<GroupView> ModelViews(Machine machine, KernelCommandLine cmdline, GroupingResult result) =>
        ModelViews(result, Commands.Model.Predictions(machine, cmdline));

    private static List<GroupView> ModelViews(GroupingResult result, Func<IReadOnlyList<PciAddress>, GroupPrediction> predict)
    {
        var views = new List<GroupView>(result.Groups.Count);
        foreach (var g in result.Groups)
        {
            var devices = g.Devices.OrderBy(d => d.Address).ToList();
            var p = predict(devices.Select(d => d.Address).ToList());
            views.Add(new GroupView(g.Id, "model", p.Type, p.ReservedRegions, g.Fingerprint, devices, g.UnknownFactDevices));
        }
        views.Sort((a, b) => a.Id.CompareTo(b.Id));
        return views;
    }

    private static List<GroupView> KernelViews(Machine machine, Func<IReadOnlyList<PciAddress>, GroupPrediction> predict)
    {
        var views = new List<GroupView>();
        foreach (var k in machine.KernelGroups!)
        {
            var devices = Members(machine, k.Devices, $"kernel group {k.Id}");
            string? type = k.Type;
            IReadOnlyList<ReservedRegionText>? regions = k.ReservedRegions.Count > 0 || k.Type is not null ? k.ReservedRegions : null;
            if (type is null || regions is null)
            {
                var p = predict(k.Devices);
                type ??= p.Type;
                regions ??= p.ReservedRegions;
            }
            views.Add(new GroupView(k.Id, "kernel", type, regions, Commands.Model.Fingerprint(devices), devices));
        }
        views.Sort((a, b) => a.Id.CompareTo(b.Id));
        return views;
    }

    private static List<PciDevice> Members(Machine machine, IReadOnlyList<PciAddress> addresses, string what)
    {
        var list = new List<PciDevice>(addresses.Count);
        foreach (var a in addresses)
        {
            var d = machine.Topology.Find(a)
                ?? throw new InputException($"{machine.Origin}: {what} lists {a}, which is not in the PCI topology");
            list.Add(d);
        }
        list.Sort((a, b) => a.Address.CompareTo(b.Address));
        return list;
    }

    /// <summary>Every difference between the kernel's partition, numbering, type and regions and the model's, naming devices.</summary>
    private static void Compare(IReadOnlyList<GroupView> kernel, IReadOnlyList<GroupView> model, List<Disagreement> output)
    {
        var modelOf = new Dictionary<PciAddress, GroupView>();
        foreach (var g in model) foreach (var d in g.Devices) modelOf[d.Address] = g;
        var seen = new HashSet<PciAddress>();
        var renumbered = new List<string>();
        var renumberedDevices = new List<PciAddress>();
        foreach (var k in kernel)
        {
            foreach (var d in k.Devices) seen.Add(d.Address);
            if (k.Devices.Count == 0) continue;
            var first = k.Devices[0].Address;
            if (!modelOf.TryGetValue(first, out var m))
            {
                output.Add(new($"the model puts {first.ToShortString()} in no group; the kernel put it in group {k.Id}", Addresses(k)));
                continue;
            }
            if (!SameMembers(k, m))
            {
                output.Add(new($"kernel group {k.Id} is {List(k)}; the model's group {m.Id} is {List(m)}", [.. Addresses(k).Union(Addresses(m))]));
                continue;
            }
            if (k.Id != m.Id)
            {
                renumbered.Add($"{k.Id}->{m.Id} ({List(k)})");
                renumberedDevices.AddRange(Addresses(k));
            }
            if (k.Type is not null && m.Type is not null && k.Type != m.Type)
                output.Add(new($"group {k.Id} ({List(k)}): kernel type {k.Type}, model predicts {m.Type}", Addresses(k)));
            if (k.ReservedRegions is { } kr && m.ReservedRegions is { } mr && !kr.SequenceEqual(mr))
                output.Add(new($"group {k.Id} ({List(k)}): kernel reserved regions [{string.Join("; ", kr)}], model predicts [{string.Join("; ", mr)}]", Addresses(k)));
        }
        // Numbering-only differences (same members) are one line: they come from probe order, not from isolation.
        if (renumbered.Count > 0)
            output.Insert(0, new($"same members, other numbers for {renumbered.Count} group{(renumbered.Count == 1 ? "" : "s")} (kernel->model): {string.Join(", ", renumbered)}", renumberedDevices));
        foreach (var m in model)
            foreach (var d in m.Devices)
                if (!seen.Contains(d.Address))
                    output.Add(new($"the model puts {d.Address.ToShortString()} in group {m.Id}; the kernel put it in no group", [d.Address]));
    }

    private static bool SameMembers(GroupView a, GroupView b) =>
        a.Devices.Count == b.Devices.Count && a.Devices.Select(d => d.Address).Order().SequenceEqual(b.Devices.Select(d => d.Address).Order());

    private static List<PciAddress> Addresses(GroupView g) => g.Devices.Select(d => d.Address).ToList();

    private static string List(GroupView g) => string.Join(" ", g.Devices.Select(d => d.Address.ToShortString()));
}
