namespace IommuKit.Sources;

/// <summary>
/// Hard caps on what an input may make us read or hold, so a hostile or broken input (a gzip bomb, a tar header that
/// declares a 2 GB member, millions of entries) is refused fast with an <see cref="InputException"/>, never a hang or an
/// out-of-memory. The values are far above any real machine (a 4,096-function host snapshot is about 42 MB
/// uncompressed and 50,000 entries) and are listed in <c>iommu --help</c> and docs/sources.md.
/// </summary>
public static class SourceLimits
{
    /// <summary>Total uncompressed bytes read from one tarball (headers included).</summary>
    public const long MaxTarUncompressedBytes = 256L * 1024 * 1024;

    /// <summary>Members in one tarball, and names in one directory of a directory root.</summary>
    public const int MaxEntries = 500_000;

    /// <summary>Bytes of one tarball member (a <c>config</c> file is at most 4096).</summary>
    public const int MaxFileBytes = 1024 * 1024;

    /// <summary>Bytes of a small sysfs/proc attribute (<c>vendor</c>, <c>type</c>, <c>reserved_regions</c>, <c>cmdline</c>).</summary>
    public const int MaxAttributeBytes = 64 * 1024;

    /// <summary>
    /// Bytes of an input file on disk (tarball, JSON machine, lspci dump), checked before it is read. It is the largest
    /// input any reader accepts (a plain tar of <see cref="MaxTarUncompressedBytes"/>), so the reader's own cap is the
    /// one that binds: <see cref="MaxTarUncompressedBytes"/> for a tarball, <see cref="Lspci.LspciReader.MaxTextLength"/>
    /// for an lspci dump (a 4,096-device <c>-vvnn -xxxx</c> dump is about 70 MB), <see cref="MachineJson.MaxBytes"/> for JSON.
    /// </summary>
    public const long MaxInputFileBytes = MaxTarUncompressedBytes;

    /// <summary>Longest path inside a tree or tarball, in characters (see <see cref="FileTree.MaxPathLength"/>).</summary>
    public const int MaxPathLength = FileTree.MaxPathLength;

    /// <summary>Warnings kept per load about single devices, lines or entries; the rest are counted in one line (summaries are always kept).</summary>
    public const int MaxWarnings = 64;

    /// <summary>Symlinks followed in one lookup (see <see cref="FileTree.MaxLinkHops"/>).</summary>
    public const int MaxLinkHops = FileTree.MaxLinkHops;

    /// <summary>One line for <c>--help</c>: every cap with its value.</summary>
    public static string HelpText =>
        $"Input caps (bad input beyond them, exit 3): tarball {MaxTarUncompressedBytes / (1024 * 1024)} MiB uncompressed, " +
        $"{MaxEntries} entries, {MaxFileBytes / 1024} KiB per member, paths of {MaxPathLength} characters, " +
        $"{MaxLinkHops} symlink hops per lookup; input files of {Mib(MaxInputFileBytes)} (lspci dumps {Mib(Lspci.LspciReader.MaxTextLength)}, " +
        $"JSON machines {Mib(MachineJson.MaxBytes)}); {Pci.PciTopologyBuilder.MaxDevices} PCI functions. " +
        $"At most {MaxWarnings} warnings about single devices are listed per input; the rest are counted.";

    /// <summary>A cap in bytes as messages show it: <c>256 MiB</c>, or the byte count when it is not whole MiB.</summary>
    internal static string Mib(long bytes) => bytes % (1024 * 1024) == 0 ? $"{bytes / (1024 * 1024)} MiB" : $"{bytes}-byte";

    /// <summary>
    /// Reads <paramref name="stream"/> to its end into memory, refusing more than <paramref name="cap"/> bytes as soon as
    /// they arrive: the one capped read every source uses (a file, a JSON stream, a non-seekable tarball stream).
    /// </summary>
    /// <param name="what">What is read, for the message (<c>file</c>, <c>JSON machine</c>).</param>
    /// <exception cref="InputException">More than <paramref name="cap"/> bytes; the message names <paramref name="origin"/> and the cap.</exception>
    internal static byte[] ReadAllCapped(Stream stream, long cap, string origin, string what)
    {
        using var ms = new MemoryStream();
        var buf = new byte[81920];
        int n;
        while ((n = stream.Read(buf, 0, buf.Length)) > 0)
        {
            if (ms.Length + n > cap)
                throw InputException.At(origin, $"{what} is larger than the {Mib(cap)} cap");
            ms.Write(buf, 0, n);
        }
        return ms.ToArray();
    }
}
