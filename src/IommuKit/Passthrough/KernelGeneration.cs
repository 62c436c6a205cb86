using System.Globalization;

namespace IommuKit.Passthrough;

/// <summary>A kernel release's major.minor, enough to pick between rule generations.</summary>
public readonly record struct KernelVersion(int Major, int Minor) : IComparable<KernelVersion>
{
    /// <summary>5.19: <c>iommu_group_claim_dma_owner</c> and <c>driver_managed_dma</c> replace VFIO's viability rule.</summary>
    public static readonly KernelVersion DmaOwnership = new(5, 19);

    /// <summary>Parses the start of <c>uname -r</c> (<c>6.1.0-56-amd64</c>, <c>5.15.0+</c>); false when it is not <c>N.M…</c>.</summary>
    public static bool TryParse(string? release, out KernelVersion version)
    {
        version = default;
        if (string.IsNullOrWhiteSpace(release)) return false;
        var s = release.AsSpan().Trim();
        int dot = s.IndexOf('.');
        if (dot <= 0 || dot > 4) return false;
        int end = dot + 1;
        while (end < s.Length && end - dot <= 4 && char.IsAsciiDigit(s[end])) end++;
        if (end == dot + 1) return false;
        if (!int.TryParse(s[..dot], NumberStyles.None, CultureInfo.InvariantCulture, out int major)) return false;
        if (!int.TryParse(s[(dot + 1)..end], NumberStyles.None, CultureInfo.InvariantCulture, out int minor)) return false;
        version = new KernelVersion(major, minor);
        return true;
    }

    public int CompareTo(KernelVersion other) => Major != other.Major ? Major.CompareTo(other.Major) : Minor.CompareTo(other.Minor);
    public static bool operator <(KernelVersion a, KernelVersion b) => a.CompareTo(b) < 0;
    public static bool operator >(KernelVersion a, KernelVersion b) => a.CompareTo(b) > 0;
    public static bool operator <=(KernelVersion a, KernelVersion b) => a.CompareTo(b) <= 0;
    public static bool operator >=(KernelVersion a, KernelVersion b) => a.CompareTo(b) >= 0;
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Major}.{Minor}");
}
