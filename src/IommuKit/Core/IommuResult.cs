namespace IommuKit.Core;

/// <summary>
/// The outcome of a core operation: the errno the kernel would return (<see cref="Errno.Ok"/> on success) and, on
/// failure, one line naming the device or group and the reason, in the kernel's words where it logs one.
/// </summary>
public readonly record struct IommuResult(Errno Errno, string? Reason = null)
{
    /// <summary>Success.</summary>
    public static IommuResult Ok => default;
    /// <summary>True when the errno is <see cref="Errno.Ok"/>.</summary>
    public bool IsOk => Errno == Errno.Ok;
    /// <summary>A failure with <paramref name="errno"/> and a one-line reason naming the device or group.</summary>
    public static IommuResult Fail(Errno errno, string reason) => new(errno, reason);
    /// <summary>The errno of a result.</summary>
    public static implicit operator Errno(IommuResult r) => r.Errno;
    /// <inheritdoc/>
    public override string ToString() => IsOk ? "ok" : $"{Errno}: {Reason}";
}
