using IommuKit.Paging;

namespace IommuKit.Core;

/// <summary>The kernel's <c>enum iommu_resv_type</c> with its values (spec 8.1); the order is the insertion sort key.</summary>
public enum ReservedRegionType
{
    /// <summary>Must be identity-mapped at all times (firmware keeps using it, e.g. a VT-d RMRR).</summary>
    Direct = 0,
    /// <summary>Advertised 1:1 but may be relaxed (USB and graphics RMRRs, the ISA floppy range).</summary>
    DirectRelaxable = 1,
    /// <summary>Never mapped, never handed out as IOVA.</summary>
    Reserved = 2,
    /// <summary>Hardware MSI window, untranslated.</summary>
    Msi = 3,
    /// <summary>Software-managed MSI window (ARM).</summary>
    SwMsi = 4,
}

/// <summary>
/// One reserved region (<c>struct iommu_resv_region</c>): start and length in bytes, protection, type. Half-open
/// internally; <see cref="Last"/> is the inclusive end sysfs prints.
/// </summary>
public readonly record struct ReservedRegion
{
    /// <exception cref="ArgumentOutOfRangeException">Zero length, or start + length overflows 64 bits.</exception>
    public ReservedRegion(ulong start, ulong length, IommuProt prot, ReservedRegionType type)
    {
        if (length == 0) throw new ArgumentOutOfRangeException(nameof(length), "a reserved region has a length");
        // start + length may reach exactly 2^64 (a region ending at the top of the space); beyond that it wraps.
        if (start != 0 && length > ulong.MaxValue - start + 1) throw new ArgumentOutOfRangeException(nameof(length), $"region at 0x{start:x} of 0x{length:x} bytes wraps past 2^64");
        Start = start;
        Length = length;
        Prot = prot;
        Type = type;
    }

    /// <summary>Builds a region from an inclusive [start, last] range, as firmware tables (RMRR) give them.</summary>
    public static ReservedRegion FromInclusive(ulong start, ulong last, IommuProt prot, ReservedRegionType type)
    {
        if (last < start) throw new ArgumentOutOfRangeException(nameof(last), $"region end 0x{last:x} below its start 0x{start:x}");
        if (start == 0 && last == ulong.MaxValue) throw new ArgumentOutOfRangeException(nameof(last), "a region cannot cover the whole 64-bit space");
        return new ReservedRegion(start, last - start + 1, prot, type);
    }

    /// <summary>First address of the region, in bytes.</summary>
    public ulong Start { get; }
    /// <summary>Length in bytes, at least 1.</summary>
    public ulong Length { get; }
    /// <summary>Inclusive last byte (start + length − 1), never overflows.</summary>
    public ulong Last => Start + (Length - 1);
    /// <summary>The protection a direct mapping of the region gets.</summary>
    public IommuProt Prot { get; }
    /// <summary>The region type (<c>enum iommu_resv_type</c>).</summary>
    public ReservedRegionType Type { get; }

    /// <summary>The sysfs type string: direct, direct-relaxable, reserved, msi (MSI and SW_MSI alike).</summary>
    public string TypeName => Type switch
    {
        ReservedRegionType.Direct => "direct",
        ReservedRegionType.DirectRelaxable => "direct-relaxable",
        ReservedRegionType.Reserved => "reserved",
        ReservedRegionType.Msi or ReservedRegionType.SwMsi => "msi",
        _ => "unknown",
    };

    /// <summary>The line of <c>reserved_regions</c>: <c>0x%016llx 0x%016llx %s</c>.</summary>
    public ReservedRegionText ToText() => new(Start, Last, TypeName);

    /// <inheritdoc/>
    public override string ToString() => ToText().ToString();
}

/// <summary>The kernel's group aggregation of reserved regions (<c>iommu_insert_resv_region</c>, spec 8.2).</summary>
public static class ReservedRegionList
{
    /// <summary>
    /// Inserts a copy of <paramref name="region"/> into <paramref name="list"/> and merges, exactly as
    /// <c>iommu_insert_resv_region</c> (current): place it before the first element with a larger start, or the same
    /// start and a type not below it; then, for elements of the new region's type only, coalesce each one that
    /// overlaps <b>or touches</b> the last kept element of that type. Regions of different types are never merged.
    /// </summary>
    /// <param name="adjacentCoalesce">False gives the 4.x rule (spec 8.2, S4): only overlapping regions of the same type coalesce.</param>
    public static void Insert(List<ReservedRegion> list, ReservedRegion region, bool adjacentCoalesce = true)
    {
        int pos = list.Count;
        for (int i = 0; i < list.Count; i++)
        {
            var e = list[i];
            if (region.Start < e.Start || (region.Start == e.Start && region.Type <= e.Type)) { pos = i; break; }
        }
        list.Insert(pos, region);

        // Merge pass (iommu_insert_resv_region's list walk): S is rebuilt in place.
        var output = new List<ReservedRegion>(list.Count);
        foreach (var x in list)
        {
            if (x.Type != region.Type) { output.Add(x); continue; }
            int t = -1;
            for (int j = output.Count - 1; j >= 0; j--)
            {
                if (output[j].Type == region.Type) { t = j; break; }
            }
            if (t < 0) { output.Add(x); continue; }
            var top = output[t];
            // A gap: x starts after top's last byte + 1 (adjacent counts as touching in current kernels).
            bool gap = adjacentCoalesce
                ? top.Last != ulong.MaxValue && x.Start > top.Last + 1
                : x.Start > top.Last;
            if (gap) { output.Add(x); continue; }
            ulong last = Math.Max(top.Last, x.Last);
            output[t] = ReservedRegion.FromInclusive(top.Start, last, top.Prot, top.Type);
        }
        list.Clear();
        list.AddRange(output);
    }
}
