using System.Text;
using IommuKit.Pci;

namespace IommuKit.Sources;

/// <summary>The kind of input <see cref="MachineSource.Detect"/> found.</summary>
public enum MachineSourceKind
{
    /// <summary>A directory used as <c>/</c> (a live host or an extracted snapshot).</summary>
    Directory,
    /// <summary>A tarball (gzip'd or not) mirroring <c>/sys</c> and <c>/proc</c>.</summary>
    Tarball,
    /// <summary>An IommuKit JSON machine (docs/machine-json.md).</summary>
    Json,
    /// <summary><c>lspci -vvnn</c> text and/or <c>lspci -xxx</c> hex.</summary>
    Lspci,
}

/// <summary>
/// Entry point for every way a user hands us a machine. <see cref="Load(string)"/> auto-detects the kind of a path;
/// <see cref="LoadHost"/> reads a live sysfs root.
/// </summary>
public static class MachineSource
{
    /// <summary>Origin used for the live host at <c>/</c>.</summary>
    public const string LiveHostOrigin = "live host";

    /// <summary>The path that names standard input (<c>--source -</c>), as in most Unix tools; <c>./-</c> names a file called <c>-</c>.</summary>
    public const string StandardInputPath = "-";

    /// <summary>Origin of a machine read from standard input, as messages show it.</summary>
    public const string StandardInputOrigin = "standard input";

    /// <summary>
    /// Loads a machine from a directory root, a (gzip'd) snapshot tarball, a JSON machine file, or an lspci dump,
    /// detected from the content (gzip magic, tar magic, a leading '{', lspci's shape), not from the file name.
    /// </summary>
    /// <exception cref="InputException">The path does not exist, is not a regular file or directory (a FIFO, a device), is of no known kind, or breaks a rule of its kind.</exception>
    public static Machine Load(string path) => Load(path, null);

    /// <summary>
    /// As <see cref="Load(string)"/>; <see cref="StandardInputPath"/> (<c>-</c>) reads the machine from
    /// <paramref name="standardInput"/> (the process's standard input when null) with <see cref="LoadStream"/>.
    /// </summary>
    /// <exception cref="InputException">As <see cref="Load(string)"/>; for standard input, also when it is empty.</exception>
    public static Machine Load(string path, Func<Stream>? standardInput) => Load(path, standardInput, ConfigRead.Needed);

    /// <summary>
    /// As <see cref="Load(string, Func{Stream})"/>, saying how much of each <c>config</c> file a directory that is a
    /// live sysfs is read: <see cref="ConfigRead.Needed"/> (the registers the model decodes) or
    /// <see cref="ConfigRead.Whole"/> (for writing the raw bytes out). Other sources hold the whole config anyway.
    /// </summary>
    /// <exception cref="InputException">As <see cref="Load(string)"/>.</exception>
    public static Machine Load(string path, Func<Stream>? standardInput, ConfigRead config)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path == StandardInputPath)
        {
            using var stream = standardInput is null ? Console.OpenStandardInput() : standardInput();
            return LoadStream(stream, StandardInputOrigin);
        }
        if (Directory.Exists(path))
        {
            var tree = new DirectoryFileTree(path);
            return SysfsReader.Read(tree, path, config);
        }
        if (path.Length == 0) throw InputException.At("--source", "an empty path names no file");
        byte[] bytes;
        try
        {
            // Only a regular file (a FIFO would block, /dev/zero never ends: both are refused at once, naming the file),
            // refused from its size before a byte is read, and capped as it is read in case it grows meanwhile.
            bytes = RegularFile.ReadAllCapped(path, path, SourceLimits.MaxInputFileBytes);
        }
        catch (FileNotFoundException)
        {
            throw InputException.At(path, "no such file or directory");
        }
        return LoadBytes(bytes, path);
    }

    /// <summary>
    /// Loads a machine from a stream (standard input, a pipe) of any kind <see cref="Detect"/> knows, reading at most
    /// <see cref="SourceLimits.MaxInputFileBytes"/> (refused as soon as more arrive, so an endless stream cannot hang us).
    /// </summary>
    /// <exception cref="InputException">The stream is empty, over the cap, of no known kind, or breaks a rule of its kind; messages name <paramref name="origin"/>.</exception>
    public static Machine LoadStream(Stream stream, string origin)
    {
        ArgumentNullException.ThrowIfNull(stream);
        byte[] bytes;
        try
        {
            bytes = SourceLimits.ReadAllCapped(stream, SourceLimits.MaxInputFileBytes, origin, "input");
        }
        catch (IOException ex)
        {
            throw InputException.At(origin, $"read failed: {ex.Message}");
        }
        if (bytes.Length == 0)
            throw InputException.At(origin, "nothing was given; expected a .tar.gz snapshot, an IommuKit JSON machine or lspci output");
        return LoadBytes(bytes, origin);
    }

    /// <summary>Loads a machine from bytes already in memory (an embedded resource, a test fixture), detecting the kind.</summary>
    /// <exception cref="InputException">Bad input; messages name <paramref name="origin"/>.</exception>
    public static Machine LoadBytes(byte[] bytes, string origin)
    {
        switch (Detect(bytes))
        {
            case MachineSourceKind.Tarball:
                return LoadTarball(new MemoryStream(bytes, writable: false), origin);
            case MachineSourceKind.Json:
                return MachineJson.Read(bytes, origin);
            case MachineSourceKind.Lspci:
                // UTF-8 takes at least a byte per character and lspci prints (almost) only ASCII: refuse on bytes, before decoding.
                if (bytes.Length > Lspci.LspciReader.MaxTextLength)
                    throw InputException.At(origin, $"lspci dump of {bytes.Length} bytes is larger than the {SourceLimits.Mib(Lspci.LspciReader.MaxTextLength)} cap");
                return Lspci.LspciReader.Read(DecodeText(bytes, origin), origin);
            default:
                throw InputException.At(origin, "not a machine: expected a directory, a .tar.gz snapshot, an IommuKit JSON machine or lspci output");
        }
    }

    /// <summary>Reads a snapshot tarball (gzip'd or plain) from a stream.</summary>
    public static Machine LoadTarball(Stream stream, string origin)
    {
        var tree = TarFileTree.Read(stream, origin);
        return SysfsReader.Read(tree, origin);
    }

    /// <summary>
    /// Reads the live host (or a directory standing in for <c>/</c>). Null when it has no <c>sys/bus/pci/devices</c>
    /// or that directory is empty (a container, another OS).
    /// </summary>
    /// <param name="root">The directory that plays <c>/</c>.</param>
    /// <param name="config">
    /// How much of each <c>config</c> file is read when the root is a live sysfs: <see cref="ConfigRead.Needed"/> (the
    /// default: only the registers the model decodes, so <see cref="IommuKit.Pci.ConfigSpace.IsComplete"/> is false)
    /// or <see cref="ConfigRead.Whole"/> (the raw bytes, e.g. to export them).
    /// </param>
    /// <exception cref="InputException">The sysfs is there but no device could be read.</exception>
    public static Machine? LoadHost(string root = "/", ConfigRead config = ConfigRead.Needed)
    {
        var tree = new DirectoryFileTree(root, root == "/" ? LiveHostOrigin : root);
        var list = tree.List(SysfsReader.DevicesDir);
        if (list is null || list.Count == 0) return null;
        return SysfsReader.Read(tree, tree.Origin, config);
    }

    /// <summary>The kind of input these bytes are, or null when none fits.</summary>
    public static MachineSourceKind? Detect(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) return MachineSourceKind.Tarball;
        // POSIX/GNU tar: "ustar" at offset 257.
        if (bytes.Length >= 262 && bytes.Slice(257, 5).SequenceEqual("ustar"u8)) return MachineSourceKind.Tarball;
        int i = 0;
        if (bytes.Length >= 3 && bytes[0] == 0xef && bytes[1] == 0xbb && bytes[2] == 0xbf) i = 3; // UTF-8 BOM
        while (i < bytes.Length && bytes[i] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n') i++;
        if (i < bytes.Length && bytes[i] == (byte)'{') return MachineSourceKind.Json;
        if (bytes.IndexOf((byte)0) >= 0) return null; // binary
        if (!System.Text.Unicode.Utf8.IsValid(bytes)) return null;
        // LooksLikeLspci reads only the first lines: decode a prefix, not the whole dump (LoadBytes decodes it once).
        var head = bytes[..Math.Min(bytes.Length, Lspci.LspciReader.DetectWindow)];
        return Lspci.LspciReader.LooksLikeLspci(Encoding.UTF8.GetString(head)) ? MachineSourceKind.Lspci : null;
    }

    private static string DecodeText(byte[] bytes, string origin)
    {
        try { return new UTF8Encoding(false, true).GetString(bytes); }
        catch (DecoderFallbackException) { throw InputException.At(origin, "text is not valid UTF-8"); }
    }

}
