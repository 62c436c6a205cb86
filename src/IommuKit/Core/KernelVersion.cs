using System.Globalization;

namespace IommuKit.Core;

/// <summary>How a kernel generation handles sysfs <c>type</c> writes (spec 6).</summary>
public enum TypeWriteRules
{
    /// <summary>Before 5.11: the file is mode 0444 and has no store method; opening it for writing fails with EACCES (kernfs).</summary>
    ReadOnly,
    /// <summary>5.11 to 6.3 (<c>iommu_change_dev_def_domain</c>): one device only, no driver bound, EBUSY/EINVAL cases.</summary>
    SingleDevice,
    /// <summary>6.4 and later: DMA→DMA-FQ in place; otherwise owner count must be 0 (EPERM); multi-device groups allowed.</summary>
    OwnerCount,
}

/// <summary>
/// The kernel version the core imitates (major.minor). Behaviour switches live here as properties so the core asks
/// one place, e.g. <see cref="IdentityWinsConflicts"/>. Versions marked UNVERIFIED in the spec are noted per property.
/// </summary>
public readonly record struct KernelVersion(int Major, int Minor) : IComparable<KernelVersion>
{
    /// <summary>Debian bookworm's 6.1 generation (the oracle's 6.1.0-56-amd64).</summary>
    public static KernelVersion V6_1 { get; } = new(6, 1);
    /// <summary>Debian bookworm-backports' 6.12 generation (the oracle's 6.12.95+deb12-amd64).</summary>
    public static KernelVersion V6_12 { get; } = new(6, 12);
    /// <summary>A kernel before the DMA ownership API (5.18).</summary>
    public static KernelVersion V5_18 { get; } = new(5, 18);

    /// <summary>Parses <c>uname -r</c> (<c>6.1.0-56-amd64</c>, <c>6.12.95+deb12-amd64</c>, <c>5.15.0</c>); false when it does not start with major.minor.</summary>
    public static bool TryParse(string? release, out KernelVersion version)
    {
        version = default;
        if (string.IsNullOrEmpty(release)) return false;
        var s = release.AsSpan().Trim();
        int dot = s.IndexOf('.');
        if (dot <= 0) return false;
        int end = dot + 1;
        while (end < s.Length && char.IsAsciiDigit(s[end])) end++;
        if (end == dot + 1) return false;
        if (!int.TryParse(s[..dot], NumberStyles.None, CultureInfo.InvariantCulture, out int major) ||
            !int.TryParse(s[(dot + 1)..end], NumberStyles.None, CultureInfo.InvariantCulture, out int minor) || major > 99 || minor > 999)
            return false;
        version = new KernelVersion(major, minor);
        return true;
    }

    /// <inheritdoc/>
    public int CompareTo(KernelVersion other) => Major != other.Major ? Major.CompareTo(other.Major) : Minor.CompareTo(other.Minor);
    /// <summary>Older than.</summary>
    public static bool operator <(KernelVersion a, KernelVersion b) => a.CompareTo(b) < 0;
    /// <summary>Newer than.</summary>
    public static bool operator >(KernelVersion a, KernelVersion b) => a.CompareTo(b) > 0;
    /// <summary>Older than or the same.</summary>
    public static bool operator <=(KernelVersion a, KernelVersion b) => a.CompareTo(b) <= 0;
    /// <summary>Newer than or the same.</summary>
    public static bool operator >=(KernelVersion a, KernelVersion b) => a.CompareTo(b) >= 0;

    private bool AtLeast(int major, int minor) => this >= new KernelVersion(major, minor);

    /// <summary>Sysfs <c>type</c> write rules (writable since 5.11; owner-count rules since 6.4, spec 6 / S3 vs S1).</summary>
    public TypeWriteRules TypeWrites => AtLeast(6, 4) ? TypeWriteRules.OwnerCount : AtLeast(5, 11) ? TypeWriteRules.SingleDevice : TypeWriteRules.ReadOnly;

    /// <summary>
    /// Group type conflicts resolve to IDENTITY (6.4+, <c>iommu_get_default_domain_type</c>); before, to the global
    /// default with "Device needs domain type…" (<c>probe_get_default_domain_type</c>, spec 5.2).
    /// </summary>
    public bool IdentityWinsConflicts => AtLeast(6, 4);

    /// <summary>The DMA ownership API (<c>iommu_group_claim_dma_owner</c>…) exists (5.19+, spec 7).</summary>
    public bool HasDmaOwnership => AtLeast(5, 19);

    /// <summary>The DMA_FQ domain type exists (5.15+, UNVERIFIED); before, lazy mode was a domain attribute and the type reads DMA.</summary>
    public bool HasDmaFqType => AtLeast(5, 15);

    /// <summary><c>use_default_domain</c> returns EPROBE_DEFER while the default domain is not set up (6.4+).</summary>
    public bool DefersUseBeforeDefaultDomain => AtLeast(6, 4);

    /// <summary>Hot-plug into an existing group maps the device's direct regions before attaching (6.4+); older kernels mapped after attach.</summary>
    public bool DirectMappingsBeforeHotplugAttach => AtLeast(6, 4);

    /// <summary>Adjacent same-type reserved regions coalesce (current rule); 4.x coalesced only overlaps (spec 8.2, S4; cut-over UNVERIFIED, taken as 5.3).</summary>
    public bool ReservedRegionsCoalesceAdjacent => AtLeast(5, 3);

    /// <summary>A device with direct regions refuses a blocking domain in the core with EINVAL (6.4+); before, VT-d refused UNMANAGED attach of an RMRR device with EPERM.</summary>
    public bool CoreRefusesBlockingForDirect => AtLeast(6, 4);

    /// <summary>
    /// A failed blocking-domain allocation returns the allocator's error (current); older kernels
    /// (<c>__iommu_group_alloc_blocking_domain</c>, 5.19-6.3) returned EINVAL when neither BLOCKED nor UNMANAGED could be
    /// allocated (spec 4.2; cut-over UNVERIFIED, taken as 6.4).
    /// </summary>
    public bool BlockingAllocErrorPropagates => AtLeast(6, 4);

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Major}.{Minor}");
}
