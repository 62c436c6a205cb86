using System.Runtime.CompilerServices;

namespace IommuKit.Paging;

/// <summary>
/// How one page-table format encodes its entries. Implemented by empty structs so the generic
/// <see cref="RadixIoPageTable{TFormat}"/> is specialised per format by the JIT (no virtual call per PTE).
/// Levels are numbered from the leaf: level 0 holds 4 KiB pages, level 1 2 MiB, level 2 1 GiB, and so on.
/// </summary>
internal interface IPteFormat
{
    static abstract IoPageTableFormat Format { get; }

    /// <summary>Number of translation levels (4 or 5).</summary>
    static abstract int Levels { get; }

    /// <summary>Output (physical) address width in bits.</summary>
    static abstract int OutputBits { get; }

    /// <summary>A leaf entry (page at level 0, large page/block above) mapping <paramref name="phys"/>.</summary>
    static abstract ulong MakeLeaf(ulong phys, IommuProt prot, int level);

    /// <summary>A next-level-table entry pointing at a table whose (model) physical address is <paramref name="tablePhys"/>.</summary>
    static abstract ulong MakeTable(ulong tablePhys);

    static abstract bool IsPresent(ulong pte);

    /// <summary>Bits of which at least one is set in every present entry (for vectorised presence checks).</summary>
    static abstract ulong PresentMask { get; }

    /// <summary>True when a present entry at <paramref name="level"/> is a leaf (page or block), not a table pointer.</summary>
    static abstract bool IsLeaf(ulong pte, int level);

    static abstract ulong OutputAddress(ulong pte);

    static abstract IommuProt ProtOf(ulong pte);
}

/// <summary>
/// VT-d second-level (second-stage) entries, used for both the 4-level (48-bit) and 5-level (57-bit) x86-64 tables:
/// bit 0 Read, bit 1 Write, bit 7 PS (super page, at levels 1 and 2), bit 11 SNP (snoop, for <see cref="IommuProt.Cache"/>),
/// address in bits 12..51 (Intel VT-d spec 9.8, "Second-Stage Paging Entries"; kernel drivers/iommu/intel/iommu.h
/// DMA_PTE_READ/DMA_PTE_WRITE/DMA_PTE_LARGE_PAGE/DMA_PTE_SNP). Unlike first-level x86 tables, R and W are separate,
/// so a write-only mapping is representable. Non-leaf entries carry R|W.
/// </summary>
internal static class VtdSlPte
{
    public const ulong Read = 1UL << 0;
    public const ulong Write = 1UL << 1;
    public const ulong LargePage = 1UL << 7;
    public const ulong Snoop = 1UL << 11;
    public const ulong AddrMask = 0x000F_FFFF_FFFF_F000UL; // bits 12..51

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong MakeLeaf(ulong phys, IommuProt prot, int level)
    {
        ulong pte = phys & AddrMask;
        if ((prot & IommuProt.Read) != 0) pte |= Read;
        if ((prot & IommuProt.Write) != 0) pte |= Write;
        if ((prot & IommuProt.Cache) != 0) pte |= Snoop;
        if (level > 0) pte |= LargePage;
        return pte;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static IommuProt ProtOf(ulong pte)
    {
        var p = IommuProt.None;
        if ((pte & Read) != 0) p |= IommuProt.Read;
        if ((pte & Write) != 0) p |= IommuProt.Write;
        if ((pte & Snoop) != 0) p |= IommuProt.Cache;
        return p;
    }
}

internal readonly struct X86Level4Format : IPteFormat
{
    public static IoPageTableFormat Format => IoPageTableFormat.X86_64Level4;
    public static int Levels => 4;
    public static int OutputBits => 52;
    public static ulong MakeLeaf(ulong phys, IommuProt prot, int level) => VtdSlPte.MakeLeaf(phys, prot, level);
    public static ulong MakeTable(ulong tablePhys) => (tablePhys & VtdSlPte.AddrMask) | VtdSlPte.Read | VtdSlPte.Write;
    public static bool IsPresent(ulong pte) => (pte & (VtdSlPte.Read | VtdSlPte.Write)) != 0;
    public static ulong PresentMask => VtdSlPte.Read | VtdSlPte.Write;
    public static bool IsLeaf(ulong pte, int level) => level == 0 || (pte & VtdSlPte.LargePage) != 0;
    public static ulong OutputAddress(ulong pte) => pte & VtdSlPte.AddrMask;
    public static IommuProt ProtOf(ulong pte) => VtdSlPte.ProtOf(pte);
}

internal readonly struct X86Level5Format : IPteFormat
{
    public static IoPageTableFormat Format => IoPageTableFormat.X86_64Level5;
    public static int Levels => 5;
    public static int OutputBits => 52;
    public static ulong MakeLeaf(ulong phys, IommuProt prot, int level) => VtdSlPte.MakeLeaf(phys, prot, level);
    public static ulong MakeTable(ulong tablePhys) => (tablePhys & VtdSlPte.AddrMask) | VtdSlPte.Read | VtdSlPte.Write;
    public static bool IsPresent(ulong pte) => (pte & (VtdSlPte.Read | VtdSlPte.Write)) != 0;
    public static ulong PresentMask => VtdSlPte.Read | VtdSlPte.Write;
    public static bool IsLeaf(ulong pte, int level) => level == 0 || (pte & VtdSlPte.LargePage) != 0;
    public static ulong OutputAddress(ulong pte) => pte & VtdSlPte.AddrMask;
    public static IommuProt ProtOf(ulong pte) => VtdSlPte.ProtOf(pte);
}

/// <summary>
/// ARM LPAE (VMSAv8-64) stage-1 descriptors, 4 KiB granule, 48-bit input and output: bits[1:0] = 0b11 for a table
/// (levels 3..1 here, ARM levels 0..2) or a page (level 0 here, ARM level 3), 0b01 for a block (2 MiB, 1 GiB); AF bit
/// 10 and nG bit 11 set on leaves; AP[2] (bit 7) = read-only; AP[1] (bit 6) = unprivileged access; SH (bits 9:8) inner
/// shareable and AttrIndx 1 (cacheable) for <see cref="IommuProt.Cache"/>; XN (bit 54) for <see cref="IommuProt.NoExec"/>.
/// Follows drivers/iommu/io-pgtable-arm.c <c>arm_lpae_prot_to_pte</c>: stage 1 cannot express "write without read",
/// so a write-only request is mapped read/write (it reads back as Read|Write).
/// </summary>
internal readonly struct ArmLpae4KFormat : IPteFormat
{
    private const ulong TypeMask = 0b11;
    private const ulong TypeTableOrPage = 0b11;
    private const ulong TypeBlock = 0b01;
    private const ulong ApUnpriv = 1UL << 6;
    private const ulong ApReadOnly = 1UL << 7;
    private const ulong ShInner = 3UL << 8;
    private const ulong AttrIdxCache = 1UL << 2;
    private const ulong AccessFlag = 1UL << 10;
    private const ulong NotGlobal = 1UL << 11;
    private const ulong ExecuteNever = 1UL << 54;
    private const ulong AddrMask = 0x0000_FFFF_FFFF_F000UL; // bits 12..47

    public static IoPageTableFormat Format => IoPageTableFormat.ArmLpae4K;
    public static int Levels => 4;
    public static int OutputBits => 48;

    public static ulong MakeLeaf(ulong phys, IommuProt prot, int level)
    {
        ulong pte = (phys & AddrMask) | AccessFlag | NotGlobal | (level == 0 ? TypeTableOrPage : TypeBlock);
        if ((prot & IommuProt.Write) == 0) pte |= ApReadOnly;
        if ((prot & IommuProt.Priv) == 0) pte |= ApUnpriv;
        if ((prot & IommuProt.Cache) != 0) pte |= ShInner | AttrIdxCache;
        if ((prot & IommuProt.NoExec) != 0) pte |= ExecuteNever;
        return pte;
    }

    public static ulong MakeTable(ulong tablePhys) => (tablePhys & AddrMask) | TypeTableOrPage;
    public static bool IsPresent(ulong pte) => (pte & 1) != 0;
    public static ulong PresentMask => 1;
    public static bool IsLeaf(ulong pte, int level) => level == 0 || (pte & TypeMask) == TypeBlock;
    public static ulong OutputAddress(ulong pte) => pte & AddrMask;

    public static IommuProt ProtOf(ulong pte)
    {
        var p = IommuProt.Read;
        if ((pte & ApReadOnly) == 0) p |= IommuProt.Write;
        if ((pte & ApUnpriv) == 0) p |= IommuProt.Priv;
        if ((pte & AttrIdxCache) != 0) p |= IommuProt.Cache;
        if ((pte & ExecuteNever) != 0) p |= IommuProt.NoExec;
        return p;
    }
}
