namespace IommuKit.Host;

/// <summary>
/// The one place where the mechanisms' typed facts become English: activation reasons, grouping steps
/// (<see cref="Step"/>), notes. Mechanisms below the Host layer emit enums and records; they never build sentences.
/// </summary>
public static partial class Wording
{
    /// <summary>Why the IOMMU is (not) active, one line naming the option that decided.</summary>
    public static string Activation(IommuActivation a) => a.Why switch
    {
        ActivationReason.Forced => "IOMMU assumed active (prediction requested)",
        ActivationReason.IommuOff => "iommu=off on the command line disables the IOMMU (no_iommu)",
        ActivationReason.IntelOff => "intel_iommu=off on the command line disables VT-d",
        ActivationReason.AmdOff => "amd_iommu=off on the command line disables AMD-Vi",
        ActivationReason.IntelOnByOption => "VT-d is on (intel_iommu=on)",
        ActivationReason.IntelOnByDefault => "VT-d is on: the kernel enables it by default when a DMAR unit exists",
        ActivationReason.AmdOn => "AMD-Vi is on (IVRS present)",
        ActivationReason.UnitRegistered => $"IOMMU unit {a.Unit} is registered",
        ActivationReason.SwitchedOffInSource => "the source's command line switched the IOMMU off; assuming the hardware has one",
        ActivationReason.KernelGroupsShown => "the source shows the kernel's IOMMU groups",
        ActivationReason.NoUnit => "no IOMMU unit is registered in the source",
        _ => "the source does not say whether an IOMMU is active; predicting as if it were",
    };
}
