using System.Security.Cryptography;
using System.Text;
using IommuKit.Pci;

namespace IommuKit.Cli.Commands;

/// <summary>A group as the grouping model computed it (kernel numbering, members in probe order).</summary>
internal sealed record ModelGroup(int Id, IReadOnlyList<PciAddress> Devices, string Fingerprint);

/// <summary>What the core predicts for one group: the <c>type</c> text and the <c>reserved_regions</c> lines.</summary>
internal sealed record GroupPrediction(string? Type, IReadOnlyList<ReservedRegionText>? ReservedRegions);

/// <summary>
/// The one place the CLI calls the library's models (grouping engine, IOMMU core): commands go through it so the
/// rendering code does not depend on their shapes.
/// </summary>
internal static class Model
{
    /// <summary>False until the grouping engine is wired; commands then fall back to what the source shows.</summary>
    public static bool GroupingAvailable => false;

    /// <summary>The model's groups for the machine under <paramref name="cmdline"/>; with <paramref name="assumeIommu"/> as if the IOMMU were enabled.</summary>
    public static IReadOnlyList<ModelGroup> Groups(Machine machine, KernelCommandLine cmdline, bool assumeIommu) =>
        throw new CliException("the grouping model is not available in this build", ExitCode.Unsupported);

    /// <summary>The chain of decisions that put a device in its group, one line each.</summary>
    public static IReadOnlyList<string> Explain(Machine machine, KernelCommandLine cmdline, bool assumeIommu, PciAddress address) =>
        throw new CliException("the grouping model is not available in this build", ExitCode.Unsupported);

    /// <summary>The core's prediction of each group's type and reserved regions, keyed by a member address; empty when unavailable.</summary>
    public static Func<IReadOnlyList<PciAddress>, GroupPrediction> Predictions(Machine machine, KernelCommandLine cmdline) =>
        _ => new GroupPrediction(null, null);

    /// <summary>
    /// Stable group fingerprint: the first 16 hex digits of SHA-256 over the members' <c>address vendor:device class</c>
    /// lines in address order. Same members and ids, same fingerprint, whatever the group number.
    /// </summary>
    public static string Fingerprint(IEnumerable<PciDevice> devices)
    {
        var sb = new StringBuilder();
        foreach (var d in devices.OrderBy(d => d.Address))
            sb.Append(d.Address.ToString()).Append(' ').Append($"{d.VendorId:x4}:{d.DeviceId:x4} {d.ClassCode:x6}").Append('\n');
        var hash = SHA256.HashData(Encoding.ASCII.GetBytes(sb.ToString()));
        return Convert.ToHexStringLower(hash.AsSpan(0, 8));
    }
}
