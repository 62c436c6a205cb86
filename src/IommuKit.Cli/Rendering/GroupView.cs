using IommuKit.Host;
using IommuKit.Pci;

namespace IommuKit.Cli.Rendering;

/// <summary>
/// One IOMMU group as the commands show it: the kernel's (when the source has the kernel's groups) or the model's.
/// </summary>
/// <param name="Id">Group number: the kernel's, or the model's prediction of the kernel's numbering.</param>
/// <param name="Origin"><c>kernel</c> or <c>model</c>.</param>
/// <param name="Type">The <c>type</c> file's text (<c>DMA-FQ</c>…): the kernel's when the source has it, else predicted; null when neither is known.</param>
/// <param name="ReservedRegions">The <c>reserved_regions</c> lines: kernel's when the source has them, else predicted; null when unknown.</param>
/// <param name="Fingerprint">Stable content fingerprint (member addresses and ids), independent of the number.</param>
/// <param name="Devices">Members in address order.</param>
/// <param name="UnknownFacts">
/// For the model's groups: devices whose missing facts (capabilities or bus ranges the source does not show) the
/// placement depended on, so the group is a guess; empty when the group rests on facts (always for the kernel's).
/// </param>
internal sealed record GroupView(
    int Id,
    string Origin,
    string? Type,
    IReadOnlyList<ReservedRegionText>? ReservedRegions,
    string Fingerprint,
    IReadOnlyList<PciDevice> Devices,
    IReadOnlyList<PciDevice>? UnknownFacts = null)
{
    public IReadOnlyList<PciDevice> UnknownFacts { get; } = UnknownFacts ?? [];
}
