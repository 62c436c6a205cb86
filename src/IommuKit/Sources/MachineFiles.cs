namespace IommuKit.Sources;

/// <summary>
/// The files a many-machine command reads (<c>iommu fleet</c>): each path given as it is, and each directory's files
/// (not recursively, sorted) whose first bytes look like a machine (<see cref="MachineSource.Detect"/>).
/// </summary>
public static class MachineFiles
{
    /// <summary>How many bytes of a file's start decide whether it looks like a machine.</summary>
    public const int HeadBytes = 8192;

    /// <summary>The files to read, in the order given (a directory's files sorted by name).</summary>
    /// <exception cref="InputException">A path that does not exist, or more than <paramref name="max"/> files.</exception>
    public static List<string> Find(IEnumerable<string> paths, int max)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var files = new List<string>();
        foreach (var p in paths)
        {
            if (Directory.Exists(p))
            {
                foreach (var f in Directory.GetFiles(p).Order(StringComparer.Ordinal))
                    if (LooksLikeMachine(f)) files.Add(f);
            }
            else if (File.Exists(p)) files.Add(p);
            else throw InputException.At(p, "no such file or directory");
            if (files.Count > max) throw InputException.At(p, $"more than {max} machines: survey them in parts");
        }
        return files;
    }

    /// <summary>
    /// Whether the file's first <see cref="HeadBytes"/> bytes look like a snapshot, JSON machine or lspci dump. A file
    /// that cannot be opened counts as one, so that reading it reports why.
    /// </summary>
    public static bool LooksLikeMachine(string path)
    {
        try
        {
            using var s = File.OpenRead(path);
            var head = new byte[HeadBytes];
            int n = s.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            return MachineSource.Detect(head.AsSpan(0, n)) is not null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return true;
        }
    }

    /// <summary>
    /// The UTF-8 text of a small side file a many-machine command takes (a baseline of fingerprints): a regular file
    /// only, refused past <paramref name="cap"/> bytes, errors naming <paramref name="origin"/>.
    /// </summary>
    /// <exception cref="InputException">Not a regular file, unreadable, or larger than the cap.</exception>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    public static string ReadText(string path, string origin, long cap) =>
        System.Text.Encoding.UTF8.GetString(RegularFile.ReadAllCapped(path, origin, cap));
}
