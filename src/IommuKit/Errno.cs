namespace IommuKit;

/// <summary>
/// Linux errno values, as the kernel returns them (negated there). IommuKit's core and data path report failures
/// with these, so a result can be compared with what a real kernel returned (e.g. the oracle's <c>type_writes</c>).
/// </summary>
public enum Errno
{
    Ok = 0,
    EPERM = 1,
    ENOENT = 2,
    EIO = 5,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    ENODEV = 19,
    EINVAL = 22,
    ENOSPC = 28,
    ERANGE = 34,
    ENOSYS = 38,
    ENOTTY = 25,
    EOPNOTSUPP = 95,
    /// <summary>Kernel-internal: probe again later (<c>-EPROBE_DEFER</c>, 517).</summary>
    EPROBE_DEFER = 517,
}

public static class ErrnoText
{
    /// <summary>The C library's message for the errno, as a shell prints after "write error:".</summary>
    public static string Describe(this Errno e) => e switch
    {
        Errno.Ok => "Success",
        Errno.EPERM => "Operation not permitted",
        Errno.ENOENT => "No such file or directory",
        Errno.EIO => "Input/output error",
        Errno.ENOMEM => "Cannot allocate memory",
        Errno.EACCES => "Permission denied",
        Errno.EFAULT => "Bad address",
        Errno.EBUSY => "Device or resource busy",
        Errno.EEXIST => "File exists",
        Errno.ENODEV => "No such device",
        Errno.EINVAL => "Invalid argument",
        Errno.ENOSPC => "No space left on device",
        Errno.ERANGE => "Numerical result out of range",
        Errno.ENOSYS => "Function not implemented",
        Errno.ENOTTY => "Inappropriate ioctl for device",
        Errno.EOPNOTSUPP => "Operation not supported",
        Errno.EPROBE_DEFER => "Probe deferred",
        _ => $"Unknown error {(int)e}",
    };
}
