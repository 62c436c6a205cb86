namespace IommuKit;

/// <summary>
/// The command-line switches that turn an x86 IOMMU on or off, parsed once the way the kernel's early parameter
/// handlers read them. Every on/off decision (activation, "as if on" predictions, the advice to re-enable) reads this
/// record, so the three can never disagree. The default-domain switches (<c>iommu=pt</c>, <c>iommu.passthrough=</c>,
/// <c>iommu.strict=</c>) change the domain type, not whether groups exist; the core reads them (<c>IommuDefaults</c>).
/// </summary>
/// <param name="IntelOff"><c>intel_iommu=off</c> is the last on/off option (<c>intel_iommu_setup</c>: options are
/// comma-separated and matched by prefix, <c>strncmp(str, "off", 3)</c>; a later <c>on</c> re-enables).</param>
/// <param name="IntelOn"><c>intel_iommu=on</c> is the last on/off option (enables VT-d on kernels built default-off).</param>
/// <param name="AmdOff"><c>amd_iommu=off</c> (<c>parse_amd_iommu_options</c>; nothing turns it back on).</param>
/// <param name="IommuOff">x86 <c>iommu=off</c> (<c>iommu_setup</c> in arch/x86/kernel/pci-dma.c sets <c>no_iommu</c>,
/// which no later option clears; <c>detect_intel_iommu</c> and the AMD detection both give up on it).</param>
public sealed record IommuSwitches(bool IntelOff, bool IntelOn, bool AmdOff, bool IommuOff)
{
    /// <summary>Names of the parameters this record reads.</summary>
    public static readonly string[] ParameterNames = ["intel_iommu", "amd_iommu", "iommu"];

    /// <summary>Reads the switches from <paramref name="cmd"/>.</summary>
    public static IommuSwitches Parse(KernelCommandLine cmd)
    {
        ArgumentNullException.ThrowIfNull(cmd);
        bool? intel = null;
        foreach (var o in cmd.Options("intel_iommu"))
        {
            if (o.StartsWith("on", StringComparison.Ordinal)) intel = true;
            else if (o.StartsWith("off", StringComparison.Ordinal)) intel = false;
        }
        bool amdOff = false;
        foreach (var o in cmd.Options("amd_iommu"))
            if (o.StartsWith("off", StringComparison.Ordinal)) amdOff = true;
        bool iommuOff = false;
        foreach (var o in cmd.Options("iommu"))
            if (o.StartsWith("off", StringComparison.Ordinal)) iommuOff = true;
        return new IommuSwitches(intel == false, intel == true, amdOff, iommuOff);
    }

    /// <summary>Some switch turns an IOMMU off.</summary>
    public bool AnyOff => IntelOff || AmdOff || IommuOff;

    /// <summary>
    /// <paramref name="cmd"/> without the options that switch an IOMMU off (each off option removed from its parameter,
    /// the parameter dropped when nothing is left): the command line "as if the IOMMU were on".
    /// </summary>
    public static KernelCommandLine WithoutOffSwitches(KernelCommandLine cmd)
    {
        ArgumentNullException.ThrowIfNull(cmd);
        var kept = new List<string>(cmd.Parameters.Count);
        foreach (var p in cmd.Parameters)
        {
            bool ours = false;
            foreach (var n in ParameterNames) ours |= KernelCommandLine.NameEquals(p.Name, n);
            if (!ours || p.Value is null)
            {
                kept.Add(KernelCommandLine.FormatParameter(p));
                continue;
            }
            var options = p.Value.Split(',', StringSplitOptions.RemoveEmptyEntries)
                .Where(o => !o.StartsWith("off", StringComparison.Ordinal)).ToArray();
            if (options.Length > 0) kept.Add(KernelCommandLine.FormatParameter((p.Name, string.Join(',', options))));
        }
        return KernelCommandLine.Parse(string.Join(' ', kept));
    }
}
