namespace IommuKit.Grouping;

/// <summary>How the grouping rules (and the Host layer's <c>ModelGrouping.Compute</c>, which reads <see cref="CommandLine"/>,
/// <see cref="ForceIommuActive"/>, <see cref="VfEnableOrder"/> and <see cref="RecordExplanations"/>) should model the machine. Every member is optional.</summary>
public sealed record GroupingOptions
{
    /// <summary>The kernel command line to model; null uses the machine's own (<see cref="Machine.CommandLine"/>).</summary>
    public KernelCommandLine? CommandLine { get; init; }

    /// <summary>
    /// Predict groups as if an IOMMU were active even when the machine (or the command line) has none: every PCI
    /// device is then managed and ACS is enabled as the kernel would with an IOMMU driver loaded.
    /// </summary>
    public bool ForceIommuActive { get; init; }

    /// <summary>
    /// Whether the modelled kernel carries the out-of-tree <c>pcie_acs_override</c> patch. Null decides from the
    /// machine's kernel release (<see cref="AcsOverridePolicy.KernelCarriesOverride"/>).
    /// </summary>
    public bool? KernelCarriesAcsOverride { get; init; }

    /// <summary>
    /// Whether the firmware has an ACPI IVRS table (AMD IOMMU), which <c>pci_quirk_amd_sb_acs</c> needs. Null decides
    /// from the machine: an AMD IOMMU unit, or an AMD host bridge with an active IOMMU.
    /// </summary>
    public bool? HasIvrs { get; init; }

    /// <summary>
    /// The source's own boot had an IOMMU driver active (not assumed), so it called <c>pci_request_acs()</c> and the ACS
    /// controls the source shows are what that kernel programmed. Decided by the Host layer's activation decision
    /// (<c>IommuKit.Host.IommuActivation</c>) on the source's own command line; the kernel's groups shown imply it too.
    /// </summary>
    public bool SourceRequestedAcs { get; init; }

    /// <summary>
    /// PFs in the order their virtual functions were enabled (writes to <c>sriov_numvfs</c>). VFs appear after boot, so
    /// the kernel groups them after every boot-time device, PF by PF in enable order, VF by VF. PFs not listed follow
    /// in probe order. Null: probe order of the PFs (a snapshot does not record the enable order).
    /// </summary>
    public IReadOnlyList<IommuKit.Pci.PciAddress>? VfEnableOrder { get; init; }

    /// <summary>
    /// Build every device's explanation during <c>ModelGrouping.Compute</c> (default false). Without it,
    /// <c>GroupingResult.Explain</c> replays the device's grouping on demand, which gives the same steps.
    /// </summary>
    public bool RecordExplanations { get; init; }
}
