using IommuKit.Pci;

namespace IommuKit.Sources;

/// <summary>How much of each function's <c>config</c> file a machine source reads.</summary>
public enum ConfigRead
{
    /// <summary>
    /// On a live sysfs, only the registers the model decodes (a sparse <see cref="ConfigSpace"/>: see
    /// docs/sources.md); anywhere else (a snapshot tarball, an extracted tree) the whole file, which is cheaper there.
    /// </summary>
    Needed,
    /// <summary>The whole file everywhere, so <see cref="ConfigSpace.Bytes"/> can be written out (<c>export</c>).</summary>
    Whole,
}

/// <summary>Test seams of the config read: force the sparse read on a tree that is not a live sysfs, and see every read.</summary>
/// <param name="ForceSparse">Read sparsely even when the tree is not a live sysfs (tests compare it with the whole read on captured machines).</param>
/// <param name="OnRead">Called with the file, offset and byte count of every read of a <c>config</c> file that returned bytes.</param>
internal sealed record ConfigReadHooks(bool ForceSparse = false, Action<string, long, int>? OnRead = null);

/// <summary>
/// Reads a function's sysfs <c>config</c> file. On a live host, reading it costs the kernel one config access per
/// dword (drivers/pci/pci-sysfs.c <c>pci_read_config</c> loops over <c>pci_user_read_config_dword</c>; in a virtual
/// machine each is a trap to the hypervisor, ~5 us), so the whole 4 KiB of a PCIe function is 1,024 accesses. The sparse
/// read takes the 64-byte header, then lets <see cref="PciDeviceFacts.FromConfig"/> walk the capability lists and decode
/// the PCIe, ACS, ARI and SR-IOV capabilities, reading each dword it asks for with one <c>pread</c>, plus the registers
/// the grouping rules read later (<see cref="ExtraRegisters"/>); the result is sealed so a dword not read stays unknown.
/// </summary>
internal static class ConfigReader
{
    private const ushort VendorIntel = 0x8086;

    /// <summary>What <see cref="ReadSparse"/> got: a sparse config space, or (a file the sparse read does not fit) the whole file's bytes.</summary>
    internal readonly record struct Result(ConfigSpace? Space, byte[]? Whole);

    /// <summary>
    /// Reads <paramref name="path"/> sparsely; null when it does not exist. A file whose size is not whole dwords
    /// between 256 and 4096, that ends before its stated size (an unprivileged read: sysfs serves 64 bytes, 128 for
    /// CardBus), or shorter than the header, is read whole from where the sparse read stopped, exactly as the whole
    /// read would give it (at most <see cref="ConfigSpace.ExtendedSize"/> + 1 bytes).
    /// </summary>
    /// <exception cref="FileReadException">The file cannot be read (a FIFO, permission denied, EIO).</exception>
    public static Result? ReadSparse(FileTree tree, string path, PciAddress address, Action<string, long, int>? onRead)
    {
        using var file = tree.OpenRandomAccess(path, ConfigSpace.ExtendedSize);
        if (file is null) return null;
        long stated = file.StatedSize;
        var header = new byte[ConfigSpace.UnprivilegedSize];
        int got = ReadFully(file, path, 0, header, onRead);
        if (got < header.Length || stated < ConfigSpace.ConventionalSize || stated % 4 != 0)
            return new Result(null, ReadRest(file, path, header.AsSpan(0, got), onRead));

        bool ended = false;
        int highest = header.Length - 4; // the highest dword offset read so far
        var cfg = ConfigSpace.Sparse(header, (int)Math.Min(stated, ConfigSpace.ExtendedSize), Fetch);
        try
        {
            PciDeviceFacts.FromConfig(address, cfg, out _);
            if (!ended) ExtraRegisters(cfg, address);
            // Sysfs serves an unprivileged reader only the first 64 bytes (128 for CardBus) of a file that says 256 or
            // 4096 (pci_read_config); the whole read would then give just those, a header-only view. When nothing past
            // them was read, one dword there tells the two apart.
            int limit = cfg.HeaderLayout == 2 ? 2 * ConfigSpace.UnprivilegedSize : ConfigSpace.UnprivilegedSize;
            if (!ended && highest < limit) cfg.TryReadUInt32(limit, out _);
        }
        catch (InvalidOperationException) when (ended)
        {
            // A dword the walk needed was past the end: handled below like any early end.
        }
        if (ended)
        {
            // The file is shorter than it says (an unprivileged read of a sysfs config): read on to its end.
            return new Result(null, ReadRest(file, path, header, onRead));
        }
        cfg.Seal();
        return new Result(cfg, null);

        bool Fetch(int offset, out uint value)
        {
            value = 0;
            Span<byte> dword = stackalloc byte[4];
            if (ended || ReadFully(file, path, offset, dword, onRead) < 4)
            {
                ended = true;
                return false;
            }
            value = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(dword);
            highest = Math.Max(highest, offset);
            return true;
        }
    }

    /// <summary>
    /// Reads the registers the model reads besides those <see cref="PciDeviceFacts.FromConfig"/> decodes: the dword
    /// at ACS + 8 (the Egress Control Vector; the Sunrise Point quirk's 32-bit control register,
    /// <c>pci_quirk_enable_intel_spt_pch_acs</c>), an Intel root port's MPC and an Intel 1f.0 function's RCBA
    /// (<c>pci_quirk_enable_intel_pch_acs</c>).
    /// </summary>
    internal static void ExtraRegisters(ConfigSpace cfg, PciAddress address)
    {
        cfg.TryReadCapabilities(out var caps, out _);
        foreach (var c in caps)
        {
            if (c.Extended && c.Id == PciCapabilityIds.ExtAcs) cfg.TryReadUInt32(c.Offset + 8, out _);
        }
        if (cfg.VendorId == VendorIntel)
        {
            foreach (var c in caps)
            {
                if (!c.Extended && c.Id == PciCapabilityIds.Pcie && PcieInfo.Decode(cfg, c.Offset)?.Type == PcieType.RootPort)
                {
                    cfg.TryReadUInt32(IntelPchRegisters.Mpc, out _);
                    break;
                }
            }
            if (address.Device == 31 && address.Function == 0) cfg.TryReadUInt32(IntelPchRegisters.LpcRcba, out _);
        }
    }

    /// <summary>Reads until <paramref name="buffer"/> is full or the file ends; the bytes read.</summary>
    private static int ReadFully(RandomAccessFile file, string path, long offset, Span<byte> buffer, Action<string, long, int>? onRead)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = file.ReadAt(offset + total, buffer[total..]);
            if (n <= 0) break;
            onRead?.Invoke(path, offset + total, n);
            total += n;
        }
        return total;
    }

    /// <summary>The whole file as the whole read gives it: <paramref name="prefix"/> (its first bytes) and the rest to the end, at most 4096 + 1 bytes.</summary>
    private static byte[] ReadRest(RandomAccessFile file, string path, ReadOnlySpan<byte> prefix, Action<string, long, int>? onRead)
    {
        var buf = new byte[ConfigSpace.ExtendedSize + 1];
        prefix.CopyTo(buf);
        int total = prefix.Length;
        if (total == ConfigSpace.UnprivilegedSize) // else the file ended inside the header
            total += ReadFully(file, path, total, buf.AsSpan(total), onRead);
        return buf[..total];
    }
}
