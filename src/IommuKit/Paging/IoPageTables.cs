namespace IommuKit.Paging;

/// <summary>Creates IO page tables (the kernel's <c>alloc_io_pgtable_ops</c>).</summary>
public static class IoPageTables
{
    /// <summary>
    /// Default cap on table pages per page table: 65,536 table pages. Each of ours holds 512 PTEs and 512 child
    /// references (8 KiB of managed memory), so the cap bounds one domain's tables to 512 MiB, enough to map 128 GiB
    /// with 4 KiB pages. A map that would need more fails with <see cref="Errno.ENOMEM"/> and changes nothing.
    /// </summary>
    public const int DefaultMaxTablePages = 65_536;

    /// <summary>
    /// A new, empty page table of <paramref name="format"/>. Thread-safe; see <see cref="IIoPageTable"/> for the rules.
    /// </summary>
    /// <param name="maxTablePages">Cap on table pages, the root included (at least 1).</param>
    /// <exception cref="ArgumentOutOfRangeException">Unknown format or a cap below 1.</exception>
    public static IIoPageTable Create(IoPageTableFormat format, int maxTablePages = DefaultMaxTablePages) => format switch
    {
        IoPageTableFormat.X86_64Level4 => new RadixIoPageTable<X86Level4Format>(maxTablePages),
        IoPageTableFormat.X86_64Level5 => new RadixIoPageTable<X86Level5Format>(maxTablePages),
        IoPageTableFormat.ArmLpae4K => new RadixIoPageTable<ArmLpae4KFormat>(maxTablePages),
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "unknown IO page-table format"),
    };
}
