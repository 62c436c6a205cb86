namespace IommuKit.Sources;

/// <summary>
/// A write-only stream that passes writes through until one would take the total past a limit, and then throws the
/// exception <paramref name="overflow"/> makes without writing that chunk. The JSON export uses it to stay loadable;
/// tests use it as a disk that fills up.
/// </summary>
internal sealed class WriteLimitStream(Stream inner, long limit, Func<Exception> overflow) : Stream
{
    private long _written;
    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _written; set => throw new NotSupportedException(); }
    public override void Flush() => inner.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (_written + buffer.Length > limit) throw overflow();
        inner.Write(buffer);
        _written += buffer.Length;
    }
}
