namespace IommuKit.Sources;

/// <summary>
/// A file of a <see cref="FileTree"/> open for reads at offsets, so a reader can take only the bytes it needs (a live
/// host's <c>config</c>: see <see cref="ConfigReader"/>). Opened by <see cref="FileTree.OpenRandomAccess"/> under
/// the same rules as <see cref="FileTree.ReadBytes"/>: links resolved inside the tree, only a regular file.
/// </summary>
internal abstract class RandomAccessFile : IDisposable
{
    /// <summary>The size the file states (sysfs: the attribute's size; never trusted to be where it ends).</summary>
    public abstract long StatedSize { get; }

    /// <summary>Reads up to <c>buffer.Length</c> bytes at <paramref name="offset"/>: fewer at the end of the file, 0 past it.</summary>
    /// <exception cref="FileReadException">An I/O error.</exception>
    public abstract int ReadAt(long offset, Span<byte> buffer);

    /// <summary>Closes the file.</summary>
    public virtual void Dispose() { }
}

/// <summary>A file already read into memory (a tarball member), served at offsets.</summary>
internal sealed class MemoryRandomAccessFile(byte[] bytes) : RandomAccessFile
{
    /// <inheritdoc/>
    public override long StatedSize => bytes.Length;

    /// <inheritdoc/>
    public override int ReadAt(long offset, Span<byte> buffer)
    {
        if (offset < 0 || offset >= bytes.Length) return 0;
        int n = (int)Math.Min(buffer.Length, bytes.Length - offset);
        bytes.AsSpan((int)offset, n).CopyTo(buffer);
        return n;
    }
}

/// <summary>A regular file open on a descriptor (Linux): each <see cref="ReadAt"/> is one <c>pread(2)</c>.</summary>
internal sealed class DescriptorRandomAccessFile(int fd, long statedSize, string display) : RandomAccessFile
{
    private int _fd = fd;

    /// <inheritdoc/>
    public override long StatedSize => statedSize;

    /// <inheritdoc/>
    public override int ReadAt(long offset, Span<byte> buffer)
    {
        ObjectDisposedException.ThrowIf(_fd < 0, this);
        return RegularFile.ReadAt(_fd, offset, buffer, display);
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        if (_fd >= 0) RegularFile.Close(_fd);
        _fd = -1;
    }
}
