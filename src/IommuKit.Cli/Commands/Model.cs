using IommuKit.Host;
using IommuKit.Cli.Rendering;
using IommuKit.Core;
using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Cli.Commands;

/// <summary>What the core predicts for one group: the <c>type</c> text and the <c>reserved_regions</c> lines.</summary>
internal sealed record GroupPrediction(string? Type, IReadOnlyList<ReservedRegionText>? ReservedRegions);

/// <summary>
/// The one place the CLI calls the library's models (grouping engine, IOMMU core), so rendering code does not depend
/// on their shapes.
/// </summary>
internal static class Model
{
    /// <summary>
    /// The grouping model for the machine under <paramref name="cmdline"/>; <paramref name="forceActive"/> predicts as if
    /// the IOMMU were on; <paramref name="carriesAcsOverride"/> overrides whether the kernel carries the out-of-tree
    /// <c>pcie_acs_override</c> patch (null: decided from the machine's kernel release).
    /// </summary>
    public static GroupingResult Groups(Machine machine, KernelCommandLine cmdline, bool forceActive = false, bool? carriesAcsOverride = null) =>
        ModelGrouping.Compute(machine, new GroupingOptions
        {
            CommandLine = cmdline,
            ForceIommuActive = forceActive,
            KernelCarriesAcsOverride = carriesAcsOverride,
        });

    /// <summary>The core's prediction of a group's type and reserved regions (by its members); nulls when the core cannot say.</summary>
    /// <remarks>Built from <see cref="HostModel.FromMachine"/>: the core probes every device, picks default domains and merges reserved regions.</remarks>
    public static Func<IReadOnlyList<PciAddress>, GroupPrediction> Predictions(Machine machine, KernelCommandLine cmdline)
    {
        var none = new GroupPrediction(null, null);
        if (machine.IommuUnits.Count == 0) return _ => none;
        return Predict(HostModel.FromMachine(machine, cmdline));
    }

    /// <summary>
    /// For a machine without an active IOMMU: the core's prediction as if a unit of <paramref name="kind"/> (AMD-Vi when
    /// the source's command line switched AMD-Vi off, else Intel VT-d) managed every device but IOMMU functions (class
    /// 0806), with the switches that turned it off dropped (<c>intel_iommu=off</c>, <c>amd_iommu=off</c>, <c>iommu=off</c>).
    /// Register-dependent behaviour (caching mode, NpCache strict mode) is unknown and taken as absent; the assumption is
    /// returned in <paramref name="note"/>.
    /// </summary>
    public static Func<IReadOnlyList<PciAddress>, GroupPrediction> PredictionsAsIfOn(Machine machine, KernelCommandLine cmdline, IommuKind kind, out string? note)
    {
        note = null;
        if (machine.IommuUnits.Count > 0) return Predictions(machine, cmdline);
        bool amd = kind == IommuKind.Amd;
        var devices = machine.Topology.Devices.Where(d => (d.ClassCode >> 8) != 0x0806).Select(d => d.Address).ToList();
        var unit = new IommuUnit(amd ? "ivhd0" : "dmar0", amd ? IommuKind.Amd : IommuKind.Intel, devices, new Dictionary<string, string>());
        var assumed = machine with { IommuUnits = [unit], KernelGroups = null };
        var kept = cmdline.Parameters
            .Where(p => !(p.Value == "off" && (KernelCommandLine.NameEquals(p.Name, "iommu") || KernelCommandLine.NameEquals(p.Name, "intel_iommu") || KernelCommandLine.NameEquals(p.Name, "amd_iommu"))))
            .Select(KernelCommandLine.FormatParameter);
        var cmd = KernelCommandLine.Parse(string.Join(' ', kept));
        if (!amd) cmd = cmd.With("intel_iommu", "on");
        note = $"the predicted types and reserved regions assume an {(amd ? "AMD-Vi" : "Intel VT-d")} IOMMU managing every device " +
               "(the source shows no IOMMU unit; register-dependent choices such as caching mode are taken as off)";
        return Predict(HostModel.FromMachine(assumed, cmd));
    }

    private static Func<IReadOnlyList<PciAddress>, GroupPrediction> Predict(HostModel host) => members =>
    {
        foreach (var a in members)
        {
            var g = host.GroupOf(a);
            if (g is null) continue;
            var state = g.Snapshot();
            var regions = host.Core.GroupReservedRegions(g).Select(r => r.ToText()).ToList();
            return new GroupPrediction(state.DefaultDomain is null ? null : state.TypeText, regions);
        }
        return new GroupPrediction(null, null);
    };

    /// <summary>The grouping model's stable fingerprint (member addresses and ids), for kernel and model groups alike.</summary>
    public static string Fingerprint(IEnumerable<PciDevice> devices) => GroupFingerprint.Of(devices);
}
