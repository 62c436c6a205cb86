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

    /// <summary>Bytes of a text input (JSON machine, lspci dump) or of a tarball file on disk.</summary>
    public const long MaxInputFileBytes = 64L * 1024 * 1024;

    /// <summary>Longest path inside a tree or tarball, in characters (see <see cref="FileTree.MaxPathLength"/>).</summary>
    public const int MaxPathLength = FileTree.MaxPathLength;

    /// <summary>Symlinks followed in one lookup (see <see cref="FileTree.MaxLinkHops"/>).</summary>
    public const int MaxLinkHops = FileTree.MaxLinkHops;

    /// <summary>One line for <c>--help</c>: every cap with its value.</summary>
    public static string HelpText =>
        $"Input caps (bad input beyond them, exit 3): tarball {MaxTarUncompressedBytes / (1024 * 1024)} MiB uncompressed, " +
        $"{MaxEntries} entries, {MaxFileBytes / 1024} KiB per member, paths of {MaxPathLength} characters, " +
        $"{MaxLinkHops} symlink hops per lookup; JSON/lspci/tarball files of {MaxInputFileBytes / (1024 * 1024)} MiB; " +
        $"{Pci.PciTopologyBuilder.MaxDevices} PCI functions.";
}
