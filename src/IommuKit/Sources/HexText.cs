using System.Globalization;

namespace IommuKit.Sources;

/// <summary>
/// Hex numbers as the kernel prints them in sysfs (<c>0x8086</c>: drivers/pci/pci-sysfs.c <c>vendor_show</c> "0x%04x",
/// drivers/iommu/iommu.c <c>iommu_group_show_resv_regions</c> "0x%016llx") and as JSON machines write them: one parser
/// for every source.
/// </summary>
internal static class HexText
{
    /// <summary>Parses <c>0x…</c> (the prefix in either case, then 1-16 hex digits, nothing else).</summary>
    public static bool TryParsePrefixed(ReadOnlySpan<char> s, out ulong value)
    {
        value = 0;
        return s.StartsWith("0x", StringComparison.OrdinalIgnoreCase) && TryParseDigits(s[2..], out value);
    }

    /// <summary>Parses <c>0x…</c> or bare hex digits (sysfs attributes some kernels print without the prefix).</summary>
    public static bool TryParse(ReadOnlySpan<char> s, out ulong value) =>
        s.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? TryParseDigits(s[2..], out value) : TryParseDigits(s, out value);

    private static bool TryParseDigits(ReadOnlySpan<char> digits, out ulong value) =>
        ulong.TryParse(digits, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
}
