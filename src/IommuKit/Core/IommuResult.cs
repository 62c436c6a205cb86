namespace IommuKit.Core;

/// <summary>
/// The outcome of a core operation: the errno the kernel would return (<see cref="Errno.Ok"/> on success) and, on
/// failure, one line naming the device or group and the reason, in the kernel's words where it logs one.
/// </summary>
public readonly record struct IommuResult(Errno Errno, string? Reason = null)
{
    public static IommuResult Ok => default;
    public bool IsOk => Errno == Errno.Ok;
    public static IommuResult Fail(Errno errno, string reason) => new(errno, reason);
    public static implicit operator Errno(IommuResult r) => r.Errno;
    public override string ToString() => IsOk ? "ok" : $"{Errno}: {Reason}";
}
