global using IommuKit.Testing;
using System.Formats.Tar;
using System.IO.Compression;

namespace IommuKit.Testing;

/// <summary>One tar member: a file (Data), a symlink (Link) or a directory (neither); Type forces another entry type.</summary>
internal sealed record Member(string Name, byte[]? Data = null, string? Link = null, TarEntryType? Type = null)
{
    public bool IsDirectory => Data is null && Link is null && Type is null;
}

/// <summary>
/// Reads and writes tarballs as lists of members, for the tests of both test projects (linked into each from
/// tests/Shared, so the two projects share one copy).
/// </summary>
internal static class TarMembers
{
    /// <summary>The members of a gzip'd tarball (files with data, links with targets, directories), in archive order.</summary>
    public static List<Member> Read(string tarGzPath)
    {
        var list = new List<Member>();
        using var fs = File.OpenRead(tarGzPath);
        using var gz = new GZipStream(fs, CompressionMode.Decompress);
        using var tar = new TarReader(gz);
        while (tar.GetNextEntry() is { } e)
        {
            if (e.EntryType == TarEntryType.SymbolicLink) list.Add(new Member(e.Name, Link: e.LinkName));
            else if (e.EntryType == TarEntryType.Directory) list.Add(new Member(e.Name));
            else
            {
                var data = new byte[e.Length];
                e.DataStream?.ReadExactly(data);
                list.Add(new Member(e.Name, data));
            }
        }
        return list;
    }

    /// <summary>A GNU tar of the members, in the order given; gzip'd when asked.</summary>
    public static byte[] Write(IEnumerable<Member> members, bool gzip)
    {
        using var ms = new MemoryStream();
        if (gzip)
        {
            using var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true);
            WriteTo(gz, members);
        }
        else WriteTo(ms, members);
        return ms.ToArray();
    }

    private static void WriteTo(Stream stream, IEnumerable<Member> members)
    {
        using var tar = new TarWriter(stream, TarEntryFormat.Gnu, leaveOpen: true);
        foreach (var m in members)
        {
            TarEntryType type = m.Type ?? (m.Link is not null ? TarEntryType.SymbolicLink : m.Data is not null ? TarEntryType.RegularFile : TarEntryType.Directory);
            var e = new GnuTarEntry(type, m.Name);
            if (m.Link is not null) e.LinkName = m.Link;
            if (m.Data is not null && type == TarEntryType.RegularFile) e.DataStream = new MemoryStream(m.Data);
            tar.WriteEntry(e);
        }
    }
}
