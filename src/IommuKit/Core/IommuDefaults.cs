namespace IommuKit.Core;

/// <summary>The build-time default domain choice (<c>CONFIG_IOMMU_DEFAULT_DMA_LAZY / _DMA_STRICT / _PASSTHROUGH</c>).</summary>
public enum IommuBuildDefault
{
    /// <summary>Translated with a flush queue (DMA-FQ): Debian's choice.</summary>
    Lazy,
    /// <summary>Translated, strict invalidation (DMA).</summary>
    Strict,
    /// <summary>Identity (passthrough).</summary>
    Passthrough,
}

/// <summary>The boot environment of the core besides the command line.</summary>
/// <param name="Build">Build default (Debian: lazy).</param>
/// <param name="MemoryEncryption">The platform reports memory encryption (<c>CC_ATTR_MEM_ENCRYPT</c>: SEV, TDX): a build-default passthrough becomes DMA.</param>
public sealed record IommuBootConfig(IommuBuildDefault Build = IommuBuildDefault.Lazy, bool MemoryEncryption = false)
{
    /// <summary>Debian's build configuration (lazy DMA default, IOMMU on where the firmware says so).</summary>
    public static IommuBootConfig Debian { get; } = new();
}

/// <summary>
/// The global default domain type as <c>iommu_subsys_init</c> and the early parameters decide it (spec 5.1).
/// Immutable result of <see cref="Resolve"/>; drivers may later force strict through <see cref="IommuCore.SetDmaStrict"/>.
/// </summary>
public sealed record IommuDefaults(IommuDomainType Type, bool DmaStrict, bool TypeFromCommandLine, bool StrictFromCommandLine, IReadOnlyList<string> Log)
{
    /// <summary>
    /// Applies, in command-line order, <c>iommu.passthrough=</c> (kstrtobool; a bad value is ignored),
    /// <c>iommu.strict=</c>, and x86 <c>iommu=pt|nopt</c> (comma-separated, prefix match as <c>iommu_setup</c>); then
    /// <c>iommu_subsys_init</c>: the build default when the command line did not set the type, the memory-encryption
    /// override of a build-default passthrough, DMA → DMA-FQ when not strict, and the two log lines.
    /// </summary>
    public static IommuDefaults Resolve(KernelCommandLine? cmdline, IommuBootConfig? boot = null, KernelVersion? kernel = null)
    {
        boot ??= IommuBootConfig.Debian;
        var k = kernel ?? KernelVersion.V6_12;
        var log = new List<string>();
        IommuDomainType type = IommuDomainType.None;
        bool typeCmd = false, strictCmd = false;
        bool strict = boot.Build == IommuBuildDefault.Strict; // iommu_dma_strict = IS_ENABLED(CONFIG_IOMMU_DEFAULT_DMA_STRICT)
        foreach (var (name, value) in (cmdline ?? KernelCommandLine.Empty).Parameters)
        {
            if (KernelCommandLine.NameEquals(name, "iommu.passthrough"))
            {
                // iommu_set_def_domain_type: kstrtobool, error leaves everything unchanged.
                if (value is not null && KernelCommandLine.ParseBool(value) is { } pt)
                {
                    type = pt ? IommuDomainType.Identity : IommuDomainType.Dma;
                    typeCmd = true;
                }
            }
            else if (KernelCommandLine.NameEquals(name, "iommu.strict"))
            {
                // iommu_dma_setup: kstrtobool into iommu_dma_strict.
                if (value is not null && KernelCommandLine.ParseBool(value) is { } s)
                {
                    strict = s;
                    strictCmd = true;
                }
            }
            else if (KernelCommandLine.NameEquals(name, "iommu") && value is not null)
            {
                // arch/x86/kernel/pci-dma.c iommu_setup: options separated by ',', matched with strncmp prefixes.
                foreach (var opt in value.Split(','))
                {
                    if (opt.StartsWith("pt", StringComparison.Ordinal)) { type = IommuDomainType.Identity; typeCmd = true; }
                    if (opt.StartsWith("nopt", StringComparison.Ordinal)) { type = IommuDomainType.Dma; typeCmd = true; }
                }
            }
        }
        if (!typeCmd)
        {
            type = boot.Build == IommuBuildDefault.Passthrough ? IommuDomainType.Identity : IommuDomainType.Dma;
            if (type == IommuDomainType.Identity && boot.MemoryEncryption)
            {
                log.Add("iommu: Memory encryption detected - Disabling default IOMMU Passthrough");
                type = IommuDomainType.Dma;
            }
        }
        if (type != IommuDomainType.Identity && !strict && k.HasDmaFqType) type = IommuDomainType.DmaFq;
        log.Add($"iommu: Default domain type: {type.LogName()}{(typeCmd ? " (set via kernel command line)" : "")}");
        if (type != IommuDomainType.Identity)
            log.Add($"iommu: DMA domain TLB invalidation policy: {(strict ? "strict" : "lazy")} mode{(strictCmd ? " (set via kernel command line)" : "")}");
        return new IommuDefaults(type, strict, typeCmd, strictCmd, log);
    }
}
