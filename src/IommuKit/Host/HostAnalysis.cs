using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>
/// From a machine to every answer the <c>iommu</c> command gives, as records: the groups (<see cref="Analyze"/>), why a
/// device is in its group (<see cref="Explain"/>), whether a group can be passed through (<see cref="VfioCheck"/>), what
/// a change would do (<see cref="WhatIf"/>), how two machines differ (<see cref="Diff"/>) and what a <c>type</c> write
/// would do (<see cref="SetType"/>). Each call boots the IOMMU core once per machine it looks at; nothing here reads
/// files or prints.
/// </summary>
public static partial class HostAnalysis
{
    /// <summary>
    /// The groups of <paramref name="machine"/>: the kernel's when the source holds them (checked against the model's,
    /// every difference a <see cref="Disagreement"/>), otherwise the model's prediction (as if the IOMMU were on when it
    /// is off), each with its type and reserved regions (the kernel's, else the core's prediction) and fingerprint.
    /// </summary>
    /// <param name="commandLine">A kernel command line to model instead of the source's (<c>--cmdline</c>); null for the source's.</param>
    /// <exception cref="InputException">The command line is too long, or a kernel group names a device the topology lacks.</exception>
    public static HostReport Analyze(Machine machine, string? commandLine = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        var cmdline = KernelCommandLine.Parse(commandLine ?? machine.CommandLine);
        bool overridden = commandLine is not null;
        var notes = new List<string>();
        var disagreements = new List<Disagreement>();

        var options = new GroupingOptions { CommandLine = cmdline };
        var activation = IommuActivation.Decide(machine, cmdline);
        bool kernelShown = machine.KernelGroups is { Count: > 0 } && !overridden;
        IommuState state;
        string reason = activation.Reason;
        if (kernelShown) { state = IommuState.Active; reason = "the kernel made IOMMU groups"; }
        else if (!overridden && machine.KernelGroups is { Count: 0 }) state = IommuState.Off;
        else if (!activation.Active) state = IommuState.Off;
        else state = activation.Assumed ? IommuState.Assumed : IommuState.Active;

        var result = ModelGrouping.Compute(machine, options with { ForceIommuActive = state == IommuState.Off });
        foreach (var m in result.Messages)
            if (!(state == IommuState.Off && m == activation.Reason)) notes.Add(m);
        var predict = Predictor(result, state == IommuState.Off, notes);
        var model = ModelReports(result, predict);

        IReadOnlyList<GroupReport> shown;
        if (kernelShown)
        {
            shown = KernelReports(machine, predict);
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
        return new HostReport
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

    /// <summary>What the core predicts for a group of devices: the <c>type</c> text and the <c>reserved_regions</c> lines (nulls when it cannot say).</summary>
    private delegate (string? Type, IReadOnlyList<ReservedRegionText>? Regions) GroupPredictor(IReadOnlyList<PciAddress> members);

    /// <summary>
    /// The core's prediction of type and reserved regions from the booted model of <paramref name="result"/>. When the
    /// units were assumed for a source that cannot say whether an IOMMU is on, the core's register-dependent choices are
    /// pure guesses and nothing is predicted; when the IOMMU is off and the prediction is "as if on", the assumption is noted.
    /// </summary>
    private static GroupPredictor Predictor(GroupingResult result, bool asIfOn, List<string> notes)
    {
        var host = result.Host;
        if (host is null || (host.AssumedUnits && !asIfOn)) return _ => (null, null);
        if (asIfOn && host.AssumedUnits)
        {
            bool amd = host.Driver is Drivers.AmdViDriver;
            notes.Add($"the predicted types and reserved regions assume an {(amd ? "AMD-Vi" : "Intel VT-d")} IOMMU managing every device " +
                      "(the source shows no IOMMU unit; register-dependent choices such as caching mode are taken as off)");
        }
        return members =>
        {
            foreach (var a in members)
            {
                var g = host.GroupOf(a);
                if (g is null) continue;
                var state = g.Snapshot();
                var regions = host.Core.GroupReservedRegions(g).Select(r => r.ToText()).ToList();
                return (state.DefaultDomain is null ? null : state.TypeText, regions);
            }
            return (null, null);
        };
    }

    /// <summary>The model's groups as reports, type and regions from the core that formed them.</summary>
    private static List<GroupReport> ModelReports(GroupingResult result, GroupPredictor predict)
    {
        var reports = new List<GroupReport>(result.Groups.Count);
        foreach (var g in result.Groups)
        {
            var devices = g.Devices.OrderBy(d => d.Address).ToList();
            var (type, regions) = predict(devices.Select(d => d.Address).ToList());
            reports.Add(new GroupReport(g.Id, GroupOrigin.Model, type, regions, g.Fingerprint, devices, g.UnknownFactDevices));
        }
        reports.Sort((a, b) => a.Id.CompareTo(b.Id));
        return reports;
    }

    /// <summary>The model's groups of <paramref name="result"/> as reports (what-if and diff compare these).</summary>
    public static IReadOnlyList<GroupReport> ModelReports(GroupingResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return ModelReports(result, Predictor(result, asIfOn: false, []));
    }

    private static List<GroupReport> KernelReports(Machine machine, GroupPredictor predict)
    {
        var reports = new List<GroupReport>();
        foreach (var k in machine.KernelGroups!)
        {
            var devices = Members(machine, k.Devices, $"kernel group {k.Id}");
            string? type = k.Type;
            IReadOnlyList<ReservedRegionText>? regions = k.ReservedRegions.Count > 0 || k.Type is not null ? k.ReservedRegions : null;
            if (type is null || regions is null)
            {
                var p = predict(k.Devices);
                type ??= p.Type;
                regions ??= p.Regions;
            }
            reports.Add(new GroupReport(k.Id, GroupOrigin.Kernel, type, regions, GroupFingerprint.Of(devices), devices));
        }
        reports.Sort((a, b) => a.Id.CompareTo(b.Id));
        return reports;
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
    private static void Compare(IReadOnlyList<GroupReport> kernel, IReadOnlyList<GroupReport> model, List<Disagreement> output)
    {
        var modelOf = new Dictionary<PciAddress, GroupReport>();
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

    private static bool SameMembers(GroupReport a, GroupReport b) =>
        a.Devices.Count == b.Devices.Count && a.Devices.Select(d => d.Address).Order().SequenceEqual(b.Devices.Select(d => d.Address).Order());

    private static List<PciAddress> Addresses(GroupReport g) => g.Devices.Select(d => d.Address).ToList();

    private static string List(GroupReport g) => string.Join(" ", g.Devices.Select(d => d.Address.ToShortString()));
}
