namespace IommuKit.Cli.Rendering;

/// <summary>
/// The kernel command line as the text reports print it. A live host's command line is long (BOOT_IMAGE, root=UUID,
/// quiet splash…) and almost none of it matters here, so the header shows only the parameters IommuKit reads and counts
/// the rest; <c>--json</c> keeps the whole text.
/// </summary>
internal static class CommandLineText
{
    /// <summary>
    /// Parameters read by the models, by name (dashes and underscores alike, as the kernel's <c>parameq</c>):
    /// <c>intel_iommu</c>, <c>amd_iommu</c>, <c>iommu</c> (Grouping.IommuActivation, Core's VT-d/AMD-Vi drivers and
    /// IommuDefaults), <c>pci</c> (its <c>config_acs=</c>/<c>disable_acs_redir=</c>, Grouping.AcsPolicy),
    /// <c>pcie_acs_override</c> (Grouping.AcsPolicy), <c>intremap</c> (Passthrough.VfioCheck).
    /// </summary>
    private static readonly string[] Names = ["intel_iommu", "amd_iommu", "iommu", "pci", "pcie_acs_override", "intremap"];

    /// <summary>Module-parameter families read by the models: <c>iommu.passthrough</c>/<c>iommu.strict</c> (Core.IommuDefaults), <c>vfio_iommu_type1.allow_unsafe_interrupts</c> (Passthrough.VfioCheck).</summary>
    private static readonly string[] Prefixes = ["iommu.", "vfio_iommu_type1."];

    /// <summary>True for a parameter the models read.</summary>
    public static bool Matters(string name)
    {
        foreach (var n in Names)
            if (KernelCommandLine.NameEquals(name, n)) return true;
        foreach (var p in Prefixes)
            if (name.Length > p.Length && KernelCommandLine.NameEquals(name[..p.Length], p)) return true;
        return false;
    }

    /// <summary>
    /// The header's view of a command line: the parameters that matter, then how many others were left out, e.g.
    /// <c>intel_iommu=on iommu=pt (+4 others)</c>; <c>(none)</c> for an empty line; <c>no IOMMU or ACS parameters (+4 others)</c>
    /// when none matters.
    /// </summary>
    public static string Summary(KernelCommandLine cmdline)
    {
        if (cmdline.Parameters.Count == 0) return "(none)";
        var shown = new List<string>();
        int others = 0;
        foreach (var p in cmdline.Parameters)
        {
            if (Matters(p.Name)) shown.Add(KernelCommandLine.FormatParameter(p));
            else others++;
        }
        string head = shown.Count == 0 ? "no IOMMU or ACS parameters" : string.Join(' ', shown);
        return others == 0 ? head : $"{head} (+{others} other{(others == 1 ? "" : "s")})";
    }
}
