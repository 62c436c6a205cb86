using IommuKit.Paging;

namespace IommuKit.Simulation;

/// <summary>What a context entry (VT-d context table / SMMU stream table entry) tells the IOMMU to do with a requester.</summary>
public enum IommuContextKind
{
    /// <summary>Every DMA faults (the kernel's IOMMU_DOMAIN_BLOCKED, spec 4.1).</summary>
    Blocked,
    /// <summary>DMA address = physical address (IOMMU_DOMAIN_IDENTITY, "Passthrough").</summary>
    Identity,
    /// <summary>DMA addresses are IOVAs translated through a page table, cached in the IOTLB under a domain id.</summary>
    Translated,
}

/// <summary>
/// One context entry of the emulated IOMMU: Blocked, Identity, or Translated(domainId, table). Immutable; replace the
/// entry with <see cref="IommuHardware.SetContext"/> to change it.
/// </summary>
public sealed class IommuContext
{
    private IommuContext(IommuContextKind kind, int domainId, IIoPageTable? table)
    {
        Kind = kind;
        DomainId = domainId;
        Table = table;
        // The aperture is what the table's format can address: [0, 2^IovaBits).
        ApertureShift = table?.IovaBits ?? 64;
    }

    /// <summary>The shared Blocked entry.</summary>
    public static IommuContext Blocked { get; } = new(IommuContextKind.Blocked, -1, null);

    /// <summary>What an empty slot of the unit's context table holds (no context entry: the requester faults
    /// NoContext); never handed out (<see cref="IommuHardware.GetContext"/> shows it as null). Its kind is none of the
    /// public ones, so the hit path needs no null check.</summary>
    internal static IommuContext Absent { get; } = new((IommuContextKind)(-1), -1, null);

    /// <summary>The shared Identity (pass-through) entry.</summary>
    public static IommuContext Identity { get; } = new(IommuContextKind.Identity, -1, null);

    /// <summary>A translated entry: IOTLB entries are tagged with <paramref name="domainId"/> (the VT-d DID / SMMU ASID).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="domainId"/> is outside 0..65535.</exception>
    public static IommuContext Translated(int domainId, IIoPageTable table)
    {
        IommuHardware.CheckDomainId(domainId);
        ArgumentNullException.ThrowIfNull(table);
        return new IommuContext(IommuContextKind.Translated, domainId, table);
    }

    /// <summary>Blocked, Identity or Translated.</summary>
    public IommuContextKind Kind { get; }

    /// <summary>Domain id of a Translated entry; -1 otherwise.</summary>
    public int DomainId { get; }

    /// <summary>Page table of a Translated entry; null otherwise.</summary>
    public IIoPageTable? Table { get; }

    /// <summary>IOVAs at or above 2^ApertureShift fault with <see cref="DmaFaultReason.OutsideAperture"/>.</summary>
    internal int ApertureShift { get; }

    /// <inheritdoc/>
    public override string ToString() => Kind == IommuContextKind.Translated ? $"Translated(domain {DomainId}, {Table!.Format})" : Kind.ToString();
}

/// <summary>Why the emulated IOMMU refused a DMA (the fault record's reason).</summary>
public enum DmaFaultReason : byte
{
    /// <summary>No fault.</summary>
    None = 0,
    /// <summary>The IOVA has no mapping in the domain's page table (VT-d fault reason 6 / SMMU F_TRANSLATION).</summary>
    NotPresent,
    /// <summary>The mapping lacks the needed read or write permission (VT-d reasons 5/6 / SMMU F_PERMISSION); also a
    /// read of the MSI window, which only accepts interrupt writes.</summary>
    Permission,
    /// <summary>The requester is attached to a blocking domain.</summary>
    Blocked,
    /// <summary>The IOVA is above what the domain's page-table format can address (VT-d "address beyond MGAW" /
    /// SMMU F_ADDR_SIZE).</summary>
    OutsideAperture,
    /// <summary>No context entry for the requester ID (VT-d fault reason 2 / SMMU C_BAD_STREAMID).</summary>
    NoContext,
}

/// <summary>One recorded DMA fault (what the IOMMU's fault recording registers hold).</summary>
/// <param name="RequesterId">The requester ID the IOMMU saw (after any DMA alias).</param>
/// <param name="Address">The DMA address (IOVA) that faulted.</param>
/// <param name="Write">True for a write (DMA from the device into memory).</param>
/// <param name="Reason">Why it faulted.</param>
/// <param name="DomainId">Domain of the requester's context, or -1.</param>
public readonly record struct DmaFault(ushort RequesterId, ulong Address, bool Write, DmaFaultReason Reason, int DomainId)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"DMA {(Write ? "write" : "read")} fault: requester {RequesterId >> 8:x2}:{(RequesterId >> 3) & 0x1f:x2}.{RequesterId & 7:x} " +
        $"address 0x{Address:x} reason {Reason}{(DomainId >= 0 ? $" domain {DomainId}" : "")}";
}

/// <summary>An interrupt message: a DMA write into the MSI window.</summary>
public readonly record struct MsiMessage(ushort RequesterId, ulong Address, uint Data);

/// <summary>Outcome kind of <see cref="IommuHardware.Translate"/>.</summary>
public enum DmaTranslationKind : byte
{
    /// <summary>Translated (or passed through): <see cref="DmaTranslation.Phys"/> is valid.</summary>
    Memory,
    /// <summary>A write into the MSI window: an interrupt, not a memory access; not translated.</summary>
    Interrupt,
    /// <summary>Refused; <see cref="DmaTranslation.Fault"/> says why. The fault has been recorded and reported.</summary>
    Fault,
}

/// <summary>Result of one translation: a physical address, an interrupt, or a fault. Valid up to the end of the
/// 4 KiB page containing the IOVA.</summary>
public readonly struct DmaTranslation
{
    // Two 8-byte fields, one per return register: a caller that inlines Translate keeps the result in registers
    // where the hit and the slow path's returned value merge (with three fields the JIT kept it on the stack).
    private readonly ulong _phys;
    private readonly ulong _kindAndFault; // kind | fault << 8

    internal DmaTranslation(ulong phys, DmaTranslationKind kind, DmaFaultReason fault)
    {
        _phys = phys;
        _kindAndFault = (ulong)kind | (ulong)fault << 8;
    }

    /// <summary>Physical address for the translated IOVA (byte-exact, offset included) when <see cref="Kind"/> is Memory.</summary>
    public ulong Phys => _phys;

    /// <summary>Memory, interrupt or fault.</summary>
    public DmaTranslationKind Kind => (DmaTranslationKind)(byte)_kindAndFault;

    /// <summary>Why it faulted, when <see cref="Kind"/> is Fault.</summary>
    public DmaFaultReason Fault => (DmaFaultReason)(byte)(_kindAndFault >> 8);

    /// <summary>True when <see cref="Phys"/> is valid.</summary>
    public bool IsMemory => Kind == DmaTranslationKind.Memory;

    /// <inheritdoc/>
    public override string ToString() => Kind switch
    {
        DmaTranslationKind.Memory => $"0x{Phys:x}",
        DmaTranslationKind.Interrupt => "interrupt",
        _ => $"fault {Fault}",
    };
}
