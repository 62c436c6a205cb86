namespace IommuKit.Sources;

/// <summary>
/// A <see cref="FileTree"/> that reads through another and remembers every name it looked at: the directories, the
/// links (as their raw text) and the files (as their bytes). <see cref="SnapshotWriter"/> runs a reader over it and
/// stores what was seen, so the snapshot holds exactly what that reader needs and reads back to the same answer.
/// </summary>
internal sealed class RecordingFileTree(FileTree inner, bool absoluteLinksFromRoot) : FileTree(inner.Origin)
{
    /// <summary>Canonical path to what it was when seen: a directory (null), or a file's bytes (up to the reader's cap).</summary>
    public SortedDictionary<string, byte[]?> Seen { get; } = new(StringComparer.Ordinal);

    /// <summary>Canonical paths of the symlinks seen.</summary>
    public SortedSet<string> Links { get; } = new(StringComparer.Ordinal);

    /// <inheritdoc/>
    protected override bool AbsoluteLinksFromRoot => absoluteLinksFromRoot;

    /// <inheritdoc/>
    protected override FileNodeKind LstatCore(string canonicalPath)
    {
        var kind = inner.Lstat(canonicalPath);
        if (kind == FileNodeKind.Directory && Seen.Count < SourceLimits.MaxEntries) Seen.TryAdd(canonicalPath, null);
        return kind;
    }

    /// <inheritdoc/>
    protected override string ReadLinkCore(string canonicalPath)
    {
        string target = inner.ReadLink(canonicalPath) ?? "";
        if (Links.Count < SourceLimits.MaxEntries) Links.Add(canonicalPath);
        return target;
    }

    /// <inheritdoc/>
    protected override IReadOnlyList<string> ListCore(string canonicalPath) => inner.List(canonicalPath) ?? [];

    /// <inheritdoc/>
    protected override byte[] ReadCore(string canonicalPath, int maxBytes)
    {
        var bytes = inner.ReadBytes(canonicalPath, maxBytes) ?? [];
        if (Seen.Count < SourceLimits.MaxEntries) Seen[canonicalPath] = bytes;
        return bytes;
    }
}
