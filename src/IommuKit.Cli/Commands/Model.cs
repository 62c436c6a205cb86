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
    /// <summary>The grouping model for the machine under <paramref name="cmdline"/>; <paramref name="forceActive"/> predicts as if the IOMMU were on.</summary>
    public static GroupingResult Groups(Machine machine, KernelCommandLine cmdline, bool forceActive = false) =>
        GroupingEngine.Compute(machine, new GroupingOptions { CommandLine = cmdline, ForceIommuActive = forceActive });

    /// <summary>The core's prediction of a group's type and reserved regions (by its members); nulls when the core cannot say.</summary>
    /// <remarks>Built from <see cref="HostModel.FromMachine"/>: the core probes every device, picks default domains and merges reserved regions.</remarks>
    public static Func<IReadOnlyList<PciAddress>, GroupPrediction> Predictions(Machine machine, KernelCommandLine cmdline)
    {
        var none = new GroupPrediction(null, null);
        if (machine.IommuUnits.Count == 0) return _ => none;
        var host = HostModel.FromMachine(machine, cmdline);
        return members =>
        {
            foreach (var a in members)
            {
                var g = host.GroupOf(a);
                if (g is null) continue;
                var state = g.Snapshot();
                var regions = host.Core.GroupReservedRegions(g).Select(r => r.ToText()).ToList();
                return new GroupPrediction(state.DefaultDomain is null ? null : state.TypeText, regions);
            }
            return none;
        };
    }

    /// <summary>The grouping model's stable fingerprint (member addresses and ids), for kernel and model groups alike.</summary>
    public static string Fingerprint(IEnumerable<PciDevice> devices) => GroupingEngine.FingerprintOf(devices);
}
