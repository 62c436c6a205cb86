namespace IommuKit.Core;

/// <summary>
/// The kernel's <c>IOMMU_DOMAIN_*</c> types with their exact flag values (include/linux/iommu.h; spec 4.1). Feature
/// bits: PAGING 0x01, DMA_API 0x02, PT 0x04, DMA_FQ 0x08, SVA 0x10, PLATFORM 0x20, NESTED 0x40.
/// </summary>
/// <remarks>
/// BLOCKED is 0, which is also the "no preference" value of <c>def_domain_type</c>: a driver cannot ask for a blocked
/// default domain (spec 4.1 surprise). <see cref="None"/> is the same value under the name the type logic uses.
/// </remarks>
public enum IommuDomainType
{
    /// <summary>"No preference" / "use the global type" (the value 0 in <c>def_domain_type</c> and sysfs <c>auto</c>).</summary>
    None = 0,
    /// <summary>All DMA is rejected.</summary>
    Blocked = 0x00,
    /// <summary>Passthrough: DMA address equals physical address.</summary>
    Identity = 0x04,
    /// <summary>Paging domain mapped explicitly by an API user (VFIO, iommufd).</summary>
    Unmanaged = 0x01,
    /// <summary>Kernel DMA-API paging domain, strict invalidation.</summary>
    Dma = 0x03,
    /// <summary>Kernel DMA-API paging domain with a deferred flush queue.</summary>
    DmaFq = 0x0b,
    /// <summary>IOMMU_DOMAIN_SVA: shares a process address space.</summary>
    Sva = 0x10,
    /// <summary>IOMMU_DOMAIN_PLATFORM: a legacy driver-managed default domain (POWER); sysfs reads it as unknown.</summary>
    Platform = 0x20,
    /// <summary>IOMMU_DOMAIN_NESTED: a stage-1 table nested on a parent domain.</summary>
    Nested = 0x40,
}

/// <summary>Flag tests and names for <see cref="IommuDomainType"/>.</summary>
public static class IommuDomainTypes
{
    /// <summary>__IOMMU_DOMAIN_PAGING: the domain has a page table.</summary>
    public const int FlagPaging = 0x01;
    /// <summary>__IOMMU_DOMAIN_DMA_API: the DMA API manages it.</summary>
    public const int FlagDmaApi = 0x02;
    /// <summary>__IOMMU_DOMAIN_PT: identity (pass-through).</summary>
    public const int FlagPt = 0x04;
    /// <summary>__IOMMU_DOMAIN_DMA_FQ: lazy invalidation through a flush queue.</summary>
    public const int FlagDmaFq = 0x08;

    /// <summary><c>iommu_is_dma_domain</c>: the DMA_API bit is set (DMA and DMA-FQ).</summary>
    public static bool IsDmaApi(this IommuDomainType t) => ((int)t & FlagDmaApi) != 0;

    /// <summary>The domain supports map/unmap (PAGING bit).</summary>
    public static bool IsPaging(this IommuDomainType t) => ((int)t & FlagPaging) != 0;

    /// <summary>
    /// The string of sysfs <c>type</c> (<c>iommu_group_show_type</c>): blocked, identity, unmanaged, DMA, DMA-FQ, else unknown.
    /// </summary>
    public static string SysfsName(this IommuDomainType t) => t switch
    {
        IommuDomainType.Blocked => "blocked",
        IommuDomainType.Identity => "identity",
        IommuDomainType.Unmanaged => "unmanaged",
        IommuDomainType.Dma => "DMA",
        IommuDomainType.DmaFq => "DMA-FQ",
        _ => "unknown",
    };

    /// <summary>The log name (<c>iommu_domain_type_str</c>): Blocked, Passthrough, Unmanaged, Translated, Platform, Unknown.</summary>
    public static string LogName(this IommuDomainType t) => t switch
    {
        IommuDomainType.Blocked => "Blocked",
        IommuDomainType.Identity => "Passthrough",
        IommuDomainType.Unmanaged => "Unmanaged",
        IommuDomainType.Dma or IommuDomainType.DmaFq => "Translated",
        IommuDomainType.Platform => "Platform",
        _ => "Unknown",
    };

    /// <summary>
    /// Parses a sysfs <c>type</c> write the way <c>iommu_group_store_type</c> does (<c>sysfs_streq</c>: exact,
    /// case-sensitive, one trailing newline tolerated). <c>auto</c> gives <see cref="IommuDomainType.None"/>.
    /// </summary>
    public static bool TryParseSysfsWrite(string? text, out IommuDomainType type)
    {
        type = IommuDomainType.None;
        if (text is null) return false;
        if (text.EndsWith('\n')) text = text[..^1];
        switch (text)
        {
            case "identity": type = IommuDomainType.Identity; return true;
            case "DMA": type = IommuDomainType.Dma; return true;
            case "DMA-FQ": type = IommuDomainType.DmaFq; return true;
            case "auto": type = IommuDomainType.None; return true;
            default: return false;
        }
    }
}
