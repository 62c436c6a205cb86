namespace IommuKit;

/// <summary>
/// Linux errno values, as the kernel returns them (negated there). IommuKit's core and data path report failures
/// with these, so a result can be compared with what a real kernel returned (e.g. the oracle's <c>type_writes</c>).
/// </summary>
public enum Errno
{
    /// <summary>Success (0).</summary>
    Ok = 0,
    /// <summary>Operation not permitted (1): e.g. a type write while a driver is bound.</summary>
    EPERM = 1,
    /// <summary>No such entry (2): e.g. unmapping what is not mapped.</summary>
    ENOENT = 2,
    /// <summary>I/O error (5).</summary>
    EIO = 5,
    /// <summary>Out of memory (12): an allocation failed.</summary>
    ENOMEM = 12,
    /// <summary>Permission denied (13): e.g. the read-only type file before 5.11.</summary>
    EACCES = 13,
    /// <summary>Bad address (14).</summary>
    EFAULT = 14,
    /// <summary>Busy (16): e.g. a group already attached to a user domain.</summary>
    EBUSY = 16,
    /// <summary>Exists (17): e.g. mapping over a mapping.</summary>
    EEXIST = 17,
    /// <summary>No such device (19): not behind an IOMMU, or gone.</summary>
    ENODEV = 19,
    /// <summary>Invalid argument (22): incompatible or malformed request.</summary>
    EINVAL = 22,
    /// <summary>No space (28): e.g. no free domain id on an IOMMU unit.</summary>
    ENOSPC = 28,
    /// <summary>Out of range (34).</summary>
    ERANGE = 34,
    /// <summary>Not implemented (38).</summary>
    ENOSYS = 38,
    /// <summary>Inappropriate ioctl (25).</summary>
    ENOTTY = 25,
    /// <summary>Operation not supported (95): e.g. no identity domain.</summary>
    EOPNOTSUPP = 95,
    /// <summary>Kernel-internal: probe again later (<c>-EPROBE_DEFER</c>, 517).</summary>
    EPROBE_DEFER = 517,
}

/// <summary>Text for <see cref="Errno"/> values.</summary>
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
