using System.Buffers.Binary;

namespace IommuKit.Pci;

/// <summary>One entry of a capability list: its ID, offset and version (extended capabilities only).</summary>
public readonly record struct PciCapability(ushort Id, int Offset, bool Extended, byte Version = 0)
{
    /// <summary>Name of the capability (standard or extended), e.g. <c>PCI Express</c>, <c>ACS</c>.</summary>
    public string Name => Extended ? PciCapabilityIds.ExtendedName(Id) : PciCapabilityIds.StandardName(Id);
}

/// <summary>
/// A function's configuration space as read: 64 bytes (what an unprivileged user may read from sysfs), 256 bytes
/// (conventional PCI) or 4096 bytes (PCIe extended). Immutable. Decoding is on demand and bounded: capability walks
/// stop after <see cref="MaxStandardCapabilities"/> steps and track visited offsets, so a looping or truncated list is
/// reported as an error, never a hang.
/// </summary>
/// <remarks>
/// A config space read from a live host holds only the registers the model decodes (<see cref="IsComplete"/> false):
/// reading a device's sysfs <c>config</c> makes the kernel read the device dword by dword (drivers/pci/pci-sysfs.c
/// <c>pci_read_config</c> -> <c>pci_user_read_config_dword</c>), each access a trap to the hypervisor in a guest, so
/// the source reads the header, the capability headers and the bodies the model uses, and nothing else. Such a
/// config space knows which dwords it holds: <c>TryRead*</c> of a dword that was not read returns false,
/// <see cref="ReadUInt32"/> and the other plain reads throw, and <see cref="Bytes"/> is refused (never a made-up 0).
/// A complete config space keeps its bytes only up to the last non-zero one (the rest of a 4 KiB extended space is
/// usually zeros): every read, <see cref="Length"/> and <see cref="Bytes"/> are as if all were kept.
/// </remarks>
public sealed class ConfigSpace
{
    /// <summary>Conventional config space size.</summary>
    public const int ConventionalSize = 256;
    /// <summary>PCIe extended config space size.</summary>
    public const int ExtendedSize = 4096;
    /// <summary>What an unprivileged reader sees of the sysfs <c>config</c> file.</summary>
    public const int UnprivilegedSize = 64;
    /// <summary>The kernel's <c>PCI_FIND_CAP_TTL</c>: at most 48 standard capabilities are walked.</summary>
    public const int MaxStandardCapabilities = 48;
    /// <summary>At most (4096 - 256) / 8 extended capabilities fit: the kernel's extended-walk TTL.</summary>
    public const int MaxExtendedCapabilities = (ExtendedSize - ConventionalSize) / 8;

    // The bytes held. A complete config space keeps only up to its last non-zero byte (at least the header): the rest
    // of its _length bytes are zero (a 4 KiB extended space is mostly zeros, and a load of a big machine would
    // otherwise hold 4 KiB per function). A sparse one holds all _length bytes, read or not (see _known).
    private readonly byte[] _bytes;
    private readonly int _length;
    // Bytes of a trimmed complete space, made whole the first time they are asked for.
    private byte[]? _whole;

    /// <summary>
    /// For a sparse config space, one bit per dword (bit <c>offset / 4</c>) that was read; null when every byte up to
    /// <see cref="Length"/> was read.
    /// </summary>
    private readonly ulong[]? _known;

    /// <summary>
    /// While a sparse config space is being decoded by its source: reads the dword at an offset (a multiple of 4)
    /// from the device, false when the file ended there. Null once <see cref="Seal"/> ran (or for a complete one).
    /// </summary>
    private DwordFetch? _fetch;

    /// <summary>Reads the dword at <paramref name="offset"/> (a multiple of 4) of a function's config space from its source.</summary>
    /// <returns>False when the source has no such dword (the file ended before it).</returns>
    internal delegate bool DwordFetch(int offset, out uint value);

    /// <summary>Wraps a copy of <paramref name="bytes"/> (at most 4096 bytes are kept).</summary>
    /// <exception cref="ArgumentException">Fewer than 64 bytes: even the header is not there.</exception>
    public ConfigSpace(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < UnprivilegedSize)
            throw new ArgumentException($"config space of {bytes.Length} bytes is shorter than the 64-byte header", nameof(bytes));
        bytes = bytes[..Math.Min(bytes.Length, ExtendedSize)];
        _length = bytes.Length;
        _bytes = bytes[..Math.Max(bytes.LastIndexOfAnyExcept((byte)0) + 1, UnprivilegedSize)].ToArray();
    }

    private ConfigSpace(byte[] bytes)
    {
        _bytes = bytes;
        _length = bytes.Length;
    }

    /// <summary>
    /// As the public constructor, but keeps <paramref name="bytes"/> itself instead of a copy when it fits (64 to 4096
    /// bytes): for a source that has just read or decoded the array and hands it over, so config is not copied twice.
    /// </summary>
    /// <exception cref="ArgumentException">Fewer than 64 bytes.</exception>
    internal static ConfigSpace FromOwned(byte[] bytes) =>
        bytes.Length is >= UnprivilegedSize and <= ExtendedSize ? new ConfigSpace(bytes) : new ConfigSpace(bytes.AsSpan());

    private ConfigSpace(byte[] bytes, ulong[] known, DwordFetch fetch)
    {
        _bytes = bytes;
        _length = bytes.Length;
        _known = known;
        _fetch = fetch;
    }

    /// <summary>
    /// A sparse config space of <paramref name="length"/> bytes (a multiple of 4, 256 to 4096) of which
    /// <paramref name="header"/> (a whole number of dwords from offset 0) is read; any other dword is read through
    /// <paramref name="fetch"/> the first time it is asked for, until <see cref="Seal"/>. The source decodes it
    /// (<see cref="PciDeviceFacts.FromConfig"/>, plus whatever registers the model reads later) and then seals it.
    /// </summary>
    internal static ConfigSpace Sparse(ReadOnlySpan<byte> header, int length, DwordFetch fetch)
    {
        if (length < ConventionalSize || length > ExtendedSize || length % 4 != 0)
            throw new ArgumentOutOfRangeException(nameof(length), length, "a sparse config space is 256 to 4096 bytes, whole dwords");
        if (header.Length < UnprivilegedSize || header.Length > length || header.Length % 4 != 0)
            throw new ArgumentException($"a sparse config space starts with at least the 64-byte header in whole dwords, not {header.Length} bytes", nameof(header));
        var bytes = new byte[length];
        header.CopyTo(bytes);
        var known = new ulong[ExtendedSize / 4 / 64];
        for (int d = 0; d < header.Length / 4; d++) known[d >> 6] |= 1UL << (d & 63);
        return new ConfigSpace(bytes, known, fetch);
    }

    /// <summary>Stops reading through the source: from now on a dword that was not read stays not read.</summary>
    internal void Seal() => _fetch = null;

    /// <summary>True when every byte up to <see cref="Length"/> was read; false for a live host's sparse read (see remarks).</summary>
    public bool IsComplete => _known is null;

    /// <summary>How many dwords were read (<see cref="Length"/> / 4 when <see cref="IsComplete"/>).</summary>
    public int DwordsRead
    {
        get
        {
            if (_known is null) return (_length + 3) / 4;
            int n = 0;
            foreach (var w in _known) n += System.Numerics.BitOperations.PopCount(w);
            return n;
        }
    }

    /// <summary>True when the <paramref name="count"/> bytes at <paramref name="offset"/> lie within <see cref="Length"/> and were read.</summary>
    public bool IsRead(int offset, int count)
    {
        if (offset < 0 || count < 0 || offset + count > _length) return false;
        if (_known is null) return true;
        for (int d = offset >> 2; d <= (offset + count - 1) >> 2; d++)
        {
            if ((_known[d >> 6] & (1UL << (d & 63))) == 0) return false;
        }
        return true;
    }

    /// <summary>
    /// Makes sure the bytes at <paramref name="offset"/> (within <see cref="Length"/>) were read, reading them through
    /// the source while it is still open. False when they were not read and cannot be.
    /// </summary>
    private bool Ensure(int offset, int count)
    {
        if (_known is null) return true;
        for (int d = offset >> 2; d <= (offset + count - 1) >> 2; d++)
        {
            if ((_known[d >> 6] & (1UL << (d & 63))) != 0) continue;
            if (_fetch is null || !_fetch(d * 4, out uint v)) return false;
            BinaryPrimitives.WriteUInt32LittleEndian(_bytes.AsSpan(d * 4, 4), v);
            _known[d >> 6] |= 1UL << (d & 63);
        }
        return true;
    }

    private void Require(int offset, int count)
    {
        if (offset < 0 || offset + count > _length)
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"config offset 0x{offset:x} is beyond the {_length} bytes read");
        if (!Ensure(offset, count))
            throw new InvalidOperationException($"config offset 0x{offset:x} was not read (a live host's config is read sparsely: only the registers the model decodes)");
    }

    /// <summary>
    /// The little-endian value of the <paramref name="count"/> (1, 2 or 4) bytes at <paramref name="offset"/> within
    /// <see cref="Length"/>, a byte past the stored ones reading 0 (a trimmed complete space).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Not within <see cref="Length"/>.</exception>
    private uint Stored(int offset, int count)
    {
        if (offset < 0 || offset > _length - count)
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"config offset 0x{offset:x} is beyond the {_length} bytes read");
        if (offset <= _bytes.Length - count)
        {
            return count switch
            {
                1 => _bytes[offset],
                2 => BinaryPrimitives.ReadUInt16LittleEndian(_bytes.AsSpan(offset, 2)),
                _ => BinaryPrimitives.ReadUInt32LittleEndian(_bytes.AsSpan(offset, 4)),
            };
        }
        uint v = 0;
        for (int i = count - 1; i >= 0; i--) v = v << 8 | (offset + i < _bytes.Length ? _bytes[offset + i] : 0u);
        return v;
    }

    /// <summary>All <see cref="Length"/> bytes of a complete space (the stored ones and the zeros after them).</summary>
    private byte[] Whole()
    {
        if (_bytes.Length == _length) return _bytes;
        if (_whole is { } known) return known;
        var whole = new byte[_length];
        _bytes.CopyTo(whole, 0);
        return _whole = whole; // a race makes two equal arrays; either is right
    }

    /// <summary>How many bytes were read (64, 256, 4096 or anything in between for a partial dump).</summary>
    /// <remarks>For a sparse config space (<see cref="IsComplete"/> false), the size of the space, of which some dwords were read.</remarks>
    public int Length => _length;

    /// <summary>The config space bytes that were read (<see cref="Length"/> of them).</summary>
    /// <exception cref="InvalidOperationException">The config space is sparse (<see cref="IsComplete"/> false): load the machine with a whole read.</exception>
    public ReadOnlySpan<byte> Bytes => _known is null ? Whole()
        : throw new InvalidOperationException("this config space holds only the registers the model decodes (a live host's sparse read); load the machine with a whole config read for the raw bytes");

    /// <summary>True when only the header was readable (an unprivileged sysfs read or a non-root <c>lspci -x</c>).</summary>
    public bool HeaderOnly => _length < ConventionalSize;

    /// <summary>True when the 4 KiB extended space was read.</summary>
    public bool HasExtendedSpace => _length >= ExtendedSize;

    /// <summary>The byte at <paramref name="offset"/>; throws when it is beyond <see cref="Length"/> or was not read.</summary>
    public byte ReadByte(int offset)
    {
        if (_known is not null) Require(offset, 1);
        return (byte)Stored(offset, 1);
    }

    /// <summary>The little-endian 16-bit value at <paramref name="offset"/>; throws when it is beyond <see cref="Length"/> or was not read.</summary>
    public ushort ReadUInt16(int offset)
    {
        if (_known is not null) Require(offset, 2);
        return (ushort)Stored(offset, 2);
    }

    /// <summary>The little-endian 32-bit value at <paramref name="offset"/>; throws when it is beyond <see cref="Length"/> or was not read.</summary>
    public uint ReadUInt32(int offset)
    {
        if (_known is not null) Require(offset, 4);
        return Stored(offset, 4);
    }

    /// <summary>Reads the little-endian 16-bit value at <paramref name="offset"/> if all its bytes were read.</summary>
    /// <returns>False (and <paramref name="value"/> 0) when the offset is negative, past the bytes read, or was not read.</returns>
    public bool TryReadUInt16(int offset, out ushort value)
    {
        value = 0;
        if (offset < 0 || offset + 2 > _length || !Ensure(offset, 2)) return false;
        value = (ushort)Stored(offset, 2);
        return true;
    }

    /// <summary>Reads the little-endian 32-bit value at <paramref name="offset"/> if all its bytes were read.</summary>
    /// <returns>False (and <paramref name="value"/> 0) when the offset is negative, past the bytes read, or was not read.</returns>
    public bool TryReadUInt32(int offset, out uint value)
    {
        value = 0;
        if (offset < 0 || offset + 4 > _length || !Ensure(offset, 4)) return false;
        value = Stored(offset, 4);
        return true;
    }

    // Header (PCI Local Bus Spec 3.0 §6.1; PCIe r6.0 §7.5.1).
    /// <summary>Vendor ID (offset 0x00).</summary>
    public ushort VendorId => ReadUInt16(0x00);
    /// <summary>Device ID (offset 0x02).</summary>
    public ushort DeviceId => ReadUInt16(0x02);
    /// <summary>Command register (offset 0x04).</summary>
    public ushort Command => ReadUInt16(0x04);
    /// <summary>Status register (offset 0x06).</summary>
    public ushort Status => ReadUInt16(0x06);
    /// <summary>Revision ID (offset 0x08).</summary>
    public byte Revision => ReadByte(0x08);
    /// <summary>24-bit class code: base class, sub-class, programming interface (<c>0x060400</c>).</summary>
    public uint ClassCode => ReadUInt32(0x08) >> 8;
    /// <summary>The raw header type byte (offset 0x0e): layout in bits 6:0, multifunction in bit 7.</summary>
    public byte HeaderTypeRaw => ReadByte(0x0e);
    /// <summary>Header layout: 0 normal, 1 PCI-to-PCI bridge, 2 CardBus bridge.</summary>
    public int HeaderLayout => HeaderTypeRaw & 0x7f;
    /// <summary>Bit 7 of the header type: the device says it has more than one function.</summary>
    public bool MultifunctionBit => (HeaderTypeRaw & 0x80) != 0;

    /// <summary>Subsystem vendor ID (type 0 at 0x2c; CardBus at 0x40 when visible; bridges have none here).</summary>
    public ushort SubsystemVendorId => HeaderLayout switch
    {
        0 => ReadUInt16(0x2c),
        2 when _length >= 0x44 => ReadUInt16(0x40),
        _ => 0,
    };

    /// <summary>Subsystem ID (type 0 at 0x2e; CardBus at 0x42 when visible; 0 for bridges).</summary>
    public ushort SubsystemDeviceId => HeaderLayout switch
    {
        0 => ReadUInt16(0x2e),
        2 when _length >= 0x44 => ReadUInt16(0x42),
        _ => 0,
    };

    /// <summary>Bridge bus numbers (type 1 and 2 headers at 0x18-0x1a); null for a type 0 header.</summary>
    public (byte Primary, byte Secondary, byte Subordinate)? BridgeBuses =>
        HeaderLayout is 1 or 2 ? (ReadByte(0x18), ReadByte(0x19), ReadByte(0x1a)) : null;

    private int CapabilityPointerOffset => HeaderLayout == 2 ? 0x14 : 0x34;

    /// <summary>
    /// Walks the standard capability list (status bit 4, pointer at 0x34, or 0x14 for CardBus) and then the extended
    /// list at 0x100. Stops at <see cref="MaxStandardCapabilities"/> or <see cref="MaxExtendedCapabilities"/> entries.
    /// </summary>
    /// <param name="capabilities">Every capability found before any error.</param>
    /// <param name="error">Null, or a one-line description: "capability pointer 0x40 at 0x34 loops back", ….</param>
    /// <returns>False when the list is malformed (looping, out of bounds, too long).</returns>
    /// <remarks>
    /// A pointer beyond what was read is an error only when the whole 256-byte space was read; with a header-only read
    /// the capabilities are simply unknown (<see cref="HeaderOnly"/>).
    /// </remarks>
    public bool TryReadCapabilities(out List<PciCapability> capabilities, out string? error)
    {
        capabilities = new List<PciCapability>();
        error = null;
        if (HeaderOnly) return true;
        if ((Status & 0x10) != 0)
        {
            Span<bool> visited = stackalloc bool[64]; // DWORD-aligned offsets 0x40..0xfc, indexed by offset/4
            int at = CapabilityPointerOffset;
            int pos = ReadByte(at) & 0xfc;
            int steps = 0;
            while (pos != 0)
            {
                if (pos < 0x40)
                {
                    error = $"capability pointer 0x{pos:x2} at 0x{at:x2} points into the header";
                    return false;
                }
                if (visited[pos >> 2])
                {
                    error = $"capability pointer 0x{pos:x2} at 0x{at:x2} loops back to a capability already seen";
                    return false;
                }
                if (++steps > MaxStandardCapabilities)
                {
                    error = $"more than {MaxStandardCapabilities} standard capabilities";
                    return false;
                }
                visited[pos >> 2] = true;
                byte id = ReadByte(pos);
                if (id == 0xff) break; // the kernel stops at an all-ones ID (device gone)
                capabilities.Add(new PciCapability(id, pos, Extended: false));
                at = pos + 1;
                pos = ReadByte(at) & 0xfc;
            }
        }
        if (!HasExtendedSpace) return true;
        // Extended capabilities start at 0x100 (PCIe r6.0 §7.6.3). A header of 0 or all ones means none.
        int epos = 0x100;
        var evisited = new HashSet<int>();
        int esteps = 0;
        int eat = -1;
        while (true)
        {
            if (!TryReadUInt32(epos, out uint header))
            {
                // Only a sparse config space can lack a dword inside its length: its source ended early.
                error = $"extended capability header at 0x{epos:x3} was not read";
                return false;
            }
            if (header == 0 || header == 0xffffffff) break;
            if (!evisited.Add(epos))
            {
                error = $"extended capability pointer 0x{epos:x3} at 0x{eat:x3} loops back to a capability already seen";
                return false;
            }
            if (++esteps > MaxExtendedCapabilities)
            {
                error = $"more than {MaxExtendedCapabilities} extended capabilities";
                return false;
            }
            capabilities.Add(new PciCapability((ushort)(header & 0xffff), epos, Extended: true, Version: (byte)((header >> 16) & 0xf)));
            int next = (int)(header >> 20) & 0xffc;
            if (next == 0) break;
            if (next < 0x100 || next + 4 > ExtendedSize)
            {
                error = $"extended capability at 0x{epos:x3} points to 0x{next:x3}, outside the extended space";
                return false;
            }
            eat = epos;
            epos = next;
        }
        return true;
    }

    /// <summary>Finds the first capability with this ID, or null. A malformed list yields what was found before the fault.</summary>
    public PciCapability? FindCapability(ushort id, bool extended)
    {
        TryReadCapabilities(out var caps, out _);
        foreach (var c in caps)
        {
            if (c.Extended == extended && c.Id == id) return c;
        }
        return null;
    }
}

/// <summary>
/// Vendor registers in the conventional config space that the kernel's ACS quirks read (drivers/pci/quirks.c
/// <c>pci_quirk_enable_intel_pch_acs</c>): named once here for the grouping rule that decodes them and for the live
/// sparse read that must fetch them.
/// </summary>
public static class IntelPchRegisters
{
    /// <summary>The root port's MPC register (bit 26, IRBNCE, is the ACS enable).</summary>
    public const int Mpc = 0xD8;
    /// <summary>The RCBA register of the LPC bridge at 1f.0 (the root complex base address).</summary>
    public const int LpcRcba = 0xF0;
}

/// <summary>Capability IDs (PCI Code and ID Assignment Spec r1.11) and their names as lspci prints them.</summary>
public static class PciCapabilityIds
{
    /// <summary>Power Management.</summary>
    public const ushort PowerManagement = 0x01;
    /// <summary>MSI.</summary>
    public const ushort Msi = 0x05;
    /// <summary>Vendor Specific.</summary>
    public const ushort Vendor = 0x09;
    /// <summary>Slot Identification.</summary>
    public const ushort SlotId = 0x04;
    /// <summary>PCI Express.</summary>
    public const ushort Pcie = 0x10;
    /// <summary>MSI-X.</summary>
    public const ushort MsiX = 0x11;
    /// <summary>Subsystem vendor ID (bridges).</summary>
    public const ushort SubsystemVendor = 0x0d;
    /// <summary>SATA HBA.</summary>
    public const ushort Sata = 0x12;
    /// <summary>PCI Advanced Features.</summary>
    public const ushort AdvancedFeatures = 0x13;

    /// <summary>Extended: Advanced Error Reporting.</summary>
    public const ushort ExtAer = 0x0001;
    /// <summary>Extended: Virtual Channel.</summary>
    public const ushort ExtVc = 0x0002;
    /// <summary>Extended: Device Serial Number.</summary>
    public const ushort ExtDsn = 0x0003;
    /// <summary>Extended: Access Control Services.</summary>
    public const ushort ExtAcs = 0x000d;
    /// <summary>Extended: Alternative Routing-ID Interpretation.</summary>
    public const ushort ExtAri = 0x000e;
    /// <summary>Extended: Address Translation Services.</summary>
    public const ushort ExtAts = 0x000f;
    /// <summary>Extended: Single Root I/O Virtualization.</summary>
    public const ushort ExtSriov = 0x0010;
    /// <summary>Extended: Process Address Space ID.</summary>
    public const ushort ExtPasid = 0x001b;
    /// <summary>Extended: Latency Tolerance Reporting.</summary>
    public const ushort ExtLtr = 0x0018;
    /// <summary>Extended: L1 PM Substates.</summary>
    public const ushort ExtL1ss = 0x001e;
    /// <summary>Extended: Downstream Port Containment.</summary>
    public const ushort ExtDpc = 0x001d;

    /// <summary>lspci's name for a standard capability ID; <c>#xx</c> for an unknown one.</summary>
    public static string StandardName(ushort id) => id switch
    {
        0x01 => "Power Management",
        0x02 => "AGP",
        0x03 => "Vital Product Data",
        0x04 => "Slot Identification",
        0x05 => "MSI",
        0x06 => "CompactPCI Hot Swap",
        0x07 => "PCI-X",
        0x08 => "HyperTransport",
        0x09 => "Vendor Specific",
        0x0a => "Debug port",
        0x0b => "CompactPCI Central Resource Control",
        0x0c => "PCI Hot-plug",
        0x0d => "Subsystem",
        0x0e => "AGP 8x",
        0x0f => "Secure Device",
        0x10 => "Express",
        0x11 => "MSI-X",
        0x12 => "SATA HBA",
        0x13 => "PCI Advanced Features",
        0x14 => "Enhanced Allocation",
        0x15 => "Flattening Portal Bridge",
        _ => $"#{id:x2}",
    };

    /// <summary>lspci's name for an extended capability ID; <c>Extended Capability ID 0x....</c> for an unknown one.</summary>
    public static string ExtendedName(ushort id) => id switch
    {
        0x0001 => "Advanced Error Reporting",
        0x0002 => "Virtual Channel",
        0x0003 => "Device Serial Number",
        0x0004 => "Power Budgeting",
        0x0005 => "Root Complex Link",
        0x0006 => "Root Complex Internal Link",
        0x0007 => "Root Complex Event Collector",
        0x0008 => "Multi-Function VC",
        0x0009 => "Virtual Channel",
        0x000a => "Root Complex Register Block",
        0x000b => "Vendor Specific Information",
        0x000c => "Configuration Access Correlation",
        0x000d => "Access Control Services",
        0x000e => "Alternative Routing-ID Interpretation (ARI)",
        0x000f => "Address Translation Service (ATS)",
        0x0010 => "Single Root I/O Virtualization (SR-IOV)",
        0x0011 => "Multi-Root I/O Virtualization (MR-IOV)",
        0x0012 => "Multicast",
        0x0013 => "Page Request Interface (PRI)",
        0x0015 => "Resizable BAR",
        0x0016 => "Dynamic Power Allocation",
        0x0017 => "TPH Requester",
        0x0018 => "Latency Tolerance Reporting",
        0x0019 => "Secondary PCI Express",
        0x001a => "Protocol Multiplexing",
        0x001b => "Process Address Space ID (PASID)",
        0x001c => "LN Requester",
        0x001d => "Downstream Port Containment",
        0x001e => "L1 PM Substates",
        0x001f => "Precision Time Measurement",
        0x0023 => "Designated Vendor-Specific",
        0x0025 => "Data Link Feature",
        0x0026 => "Physical Layer 16.0 GT/s",
        0x0027 => "Lane Margining at the Receiver",
        _ => $"Extended Capability ID {id:#x4}",
    };
}
