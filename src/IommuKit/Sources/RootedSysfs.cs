using IommuKit.Pci;

namespace IommuKit.Sources;

/// <summary>
/// Reads and writes sysfs attributes under a directory that plays <c>/</c> (the live host's <c>/</c>, or a directory
/// root given with <c>--source</c>), confined to it: every component of a path is resolved inside the root (a relative
/// link from where it sits, an absolute link from the root), at most <see cref="MaxLinkHops"/> links, and a path whose
/// resolution climbs above the root is refused. Only a regular file (or a missing one whose directory resolves inside the
/// root: a directory root lacks attributes a live sysfs has) is written, in one write as <c>echo</c> does.
/// </summary>
/// <remarks>The same approach as the root-confined writer of the <c>hostile</c> branch; one of the two goes when both are on main.</remarks>
public sealed class RootedSysfs
{
    /// <summary>Links followed while resolving one path (the kernel's own limit for a lookup is 40).</summary>
    public const int MaxLinkHops = 40;

    private readonly string _root;

    /// <param name="root">The directory that plays <c>/</c>.</param>
    public RootedSysfs(string root)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        _root = Path.GetFullPath(root).TrimEnd('/');
    }

    /// <summary>True when the root is the host's own <c>/</c>: writes reach the kernel.</summary>
    public bool Live => _root.Length == 0;

    /// <summary>
    /// The full path <paramref name="hostPath"/> (<c>/sys/...</c>) names inside the root, links resolved inside it.
    /// </summary>
    /// <exception cref="IOException">The path leaves the root, or has too many links.</exception>
    public string Resolve(string hostPath)
    {
        ArgumentNullException.ThrowIfNull(hostPath);
        var pending = new Stack<string>(hostPath.Split('/', StringSplitOptions.RemoveEmptyEntries).Reverse());
        var done = new List<string>();
        int hops = 0;
        while (pending.Count > 0)
        {
            string c = pending.Pop();
            if (c == ".") continue;
            if (c == "..")
            {
                if (done.Count == 0) throw new IOException($"{hostPath}: climbs above the root {Shown}; refusing");
                done.RemoveAt(done.Count - 1);
                continue;
            }
            string here = _root + "/" + string.Join('/', done.Append(c));
            if (new FileInfo(here).LinkTarget is { } t)
            {
                if (++hops > MaxLinkHops) throw new IOException($"{hostPath}: more than {MaxLinkHops} links; refusing");
                if (t.StartsWith('/')) done.Clear();
                foreach (var part in t.Split('/', StringSplitOptions.RemoveEmptyEntries).Reverse()) pending.Push(part);
                continue;
            }
            done.Add(c);
        }
        return _root + "/" + string.Join('/', done);
    }

    private string Shown => Live ? "/" : _root;

    /// <summary>Writes <paramref name="text"/> to the attribute <paramref name="hostPath"/> in one write.</summary>
    /// <exception cref="IOException">It resolves outside the root, to something that is not a regular file, or the write fails.</exception>
    public void Write(string hostPath, string text)
    {
        string full = Resolve(hostPath);
        if (Directory.Exists(full)) throw new IOException($"{hostPath}: is a directory, not an attribute");
        string? dir = Path.GetDirectoryName(full);
        if (dir is null || !Directory.Exists(dir)) throw new IOException($"{hostPath}: its directory does not exist");
        try
        {
            using var fs = new FileStream(full, FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite, 1);
            if (!Live) fs.SetLength(0);
            var bytes = System.Text.Encoding.UTF8.GetBytes(text);
            fs.Write(bytes);
            fs.Flush();
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new IOException($"{hostPath}: {ex.Message}", ex);
        }
    }

    /// <summary>The attribute's text (at most 4 KiB, trailing newline trimmed); null when missing or unreadable.</summary>
    public string? Read(string hostPath)
    {
        try
        {
            string full = Resolve(hostPath);
            if (!File.Exists(full)) return null;
            using var fs = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
            var buf = new byte[4096];
            int n = fs.Read(buf);
            return System.Text.Encoding.UTF8.GetString(buf, 0, n).TrimEnd('\n');
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// The driver <paramref name="device"/> is bound to: the last component of its <c>driver</c> link, else the
    /// driver directory under <c>/sys/bus/pci/drivers</c> that lists it (how a snapshot records binding); null for none.
    /// </summary>
    public string? DriverOf(PciAddress device)
    {
        try
        {
            string dev = Resolve($"/sys/bus/pci/devices/{device}");
            var link = new FileInfo(dev + "/driver");
            if (link.LinkTarget is { } t) return t.TrimEnd('/').Split('/')[^1];
            string drivers = Resolve("/sys/bus/pci/drivers");
            if (!Directory.Exists(drivers)) return null;
            foreach (var d in Directory.EnumerateDirectories(drivers))
                if (new FileInfo(Path.Combine(d, device.ToString())).LinkTarget is not null) return Path.GetFileName(d);
            return null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
