using System.Diagnostics;

namespace IommuKit.Core;

/// <summary>
/// Debug-build checker of the documented lock order (docs/LOCKING.md): probe lock → device lock → group lock, never
/// two group locks, never a device or probe lock taken while a later lock is held. A violation throws
/// <see cref="InvalidOperationException"/> at the acquisition, so tests (the stress test above all) fail on a wrong
/// order even when the interleaving that would deadlock did not happen. Compiled out of Release builds.
/// </summary>
internal static class LockOrder
{
    [ThreadStatic] private static int t_probe;
    [ThreadStatic] private static int t_devices;
    [ThreadStatic] private static int t_groups;
    [ThreadStatic] private static IommuGroup? t_group;

    [Conditional("DEBUG")]
    public static void EnterProbe()
    {
        if (t_probe == 0 && (t_devices > 0 || t_groups > 0))
            throw new InvalidOperationException("lock order: the probe lock is taken while a device or group lock is held");
        t_probe++;
    }

    [Conditional("DEBUG")]
    public static void ExitProbe() => t_probe--;

    [Conditional("DEBUG")]
    public static void EnterDevice()
    {
        if (t_groups > 0) throw new InvalidOperationException($"lock order: a device lock is taken while {t_group} is locked");
        t_devices++;
    }

    [Conditional("DEBUG")]
    public static void ExitDevice() => t_devices--;

    [Conditional("DEBUG")]
    public static void EnterGroup(IommuGroup group)
    {
        if (t_groups > 0 && !ReferenceEquals(t_group, group))
            throw new InvalidOperationException($"lock order: {group} is locked while {t_group} is held (never two group locks)");
        t_group = group;
        t_groups++;
    }

    [Conditional("DEBUG")]
    public static void ExitGroup()
    {
        if (--t_groups == 0) t_group = null;
    }
}

/// <summary>A held group lock (<c>using (new GroupLockScope(group))</c>): Monitor plus the debug lock-order check.</summary>
internal readonly ref struct GroupLockScope
{
    private readonly IommuGroup _group;

    public GroupLockScope(IommuGroup group)
    {
        LockOrder.EnterGroup(group);
        _group = group;
        Monitor.Enter(group.Sync);
    }

    public void Dispose()
    {
        Monitor.Exit(_group.Sync);
        LockOrder.ExitGroup();
    }
}

/// <summary>A held device lock (<c>using (new DeviceLockScope(device))</c>).</summary>
internal readonly ref struct DeviceLockScope
{
    private readonly IommuDevice _device;

    public DeviceLockScope(IommuDevice device)
    {
        LockOrder.EnterDevice();
        _device = device;
        Monitor.Enter(device.DeviceLock);
    }

    public void Dispose()
    {
        Monitor.Exit(_device.DeviceLock);
        LockOrder.ExitDevice();
    }
}

/// <summary>The held probe lock.</summary>
internal readonly ref struct ProbeLockScope
{
    private readonly object _lock;

    public ProbeLockScope(object probeLock)
    {
        LockOrder.EnterProbe();
        _lock = probeLock;
        Monitor.Enter(probeLock);
    }

    public void Dispose()
    {
        Monitor.Exit(_lock);
        LockOrder.ExitProbe();
    }
}
