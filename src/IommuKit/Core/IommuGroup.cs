using System.Diagnostics;

namespace IommuKit.Core;

/// <summary>
/// An IOMMU group (<c>struct iommu_group</c>): the devices that must share one domain, the default, blocking and
/// current domains, and DMA ownership. All mutable state is guarded by <see cref="Sync"/> (the group mutex);
/// public getters take it and return a snapshot.
/// </summary>
public sealed class IommuGroup
{
    internal IommuGroup(IommuCore core, int id, string? name)
    {
        Core = core;
        Id = id;
        _name = name;
    }

    internal IommuCore Core { get; }

    /// <summary>The group mutex. Lock order: probe lock → device lock → group lock → leaf locks; never two group locks.</summary>
    internal readonly object Sync = new();

    // --- guarded by Sync ---
    internal readonly List<IommuDevice> DevicesLocked = new();
    internal IommuDomain? DefaultDomainLocked;
    internal IommuDomain? BlockingDomainLocked;
    internal IommuDomain? DomainLocked;
    internal uint OwnerCntLocked;
    internal object? OwnerLocked;
    internal bool SetupPendingLocked;
    // --- guarded by the core's registry lock ---
    internal int RefsRegistry;
    internal bool ReleasedRegistry;
    private volatile string? _name;

    /// <summary>Sysfs number (<c>/sys/kernel/iommu_groups/N</c>), lowest free when allocated, reused after release.</summary>
    public int Id { get; }

    /// <summary>The driver-set name (<c>domain0-pe1</c> on POWER); the sysfs <c>name</c> file exists only when set.</summary>
    public string? Name { get => _name; set => _name = value; }

    /// <summary>Opaque driver data (<c>iommu_group_set_iommudata</c>).</summary>
    public object? DriverData { get; set; }

    [Conditional("DEBUG")]
    internal void AssertLocked() => Debug.Assert(Monitor.IsEntered(Sync), $"group {Id} lock not held");

    private T Read<T>(Func<IommuGroup, T> f)
    {
        using (new GroupLockScope(this)) return f(this);
    }

    /// <summary>Members in the order they were added (the first one chooses ops and allocates domains).</summary>
    public IReadOnlyList<IommuDevice> Devices => Read(g => (IReadOnlyList<IommuDevice>)g.DevicesLocked.ToArray());
    /// <summary>The default domain (<c>group-&gt;default_domain</c>), read under the group lock.</summary>
    public IommuDomain? DefaultDomain => Read(g => g.DefaultDomainLocked);
    /// <summary>The blocking domain, once one was needed (ownership), read under the group lock.</summary>
    public IommuDomain? BlockingDomain => Read(g => g.BlockingDomainLocked);
    /// <summary>The domain every member is attached to right now.</summary>
    public IommuDomain? Domain => Read(g => g.DomainLocked);
    /// <summary><c>owner_cnt</c>: DMA-API drivers bound (kernel use) or claims with the owner's cookie (user use).</summary>
    public uint OwnerCount => Read(g => g.OwnerCntLocked);
    /// <summary>The user owner's cookie, or null when kernel-owned.</summary>
    public object? Owner => Read(g => g.OwnerLocked);
    /// <summary>The IOMMU driver of the group's devices (its first device's; every member has the same), or null when empty.</summary>
    public IIommuDriver? Driver => Read(g => g.DevicesLocked.Count > 0 ? g.DevicesLocked[0].IommuDriver : null);

    /// <summary>A consistent snapshot of the group's state under one lock acquisition.</summary>
    public IommuGroupState Snapshot()
    {
        using (new GroupLockScope(this))
        {
            return new IommuGroupState(Id, Name, DevicesLocked.ToArray(), DefaultDomainLocked, BlockingDomainLocked, DomainLocked,
                OwnerCntLocked, OwnerLocked, DefaultDomainLocked?.Type ?? IommuDomainType.None);
        }
    }

    /// <inheritdoc/>
    public override string ToString() => Name is null ? $"group {Id}" : $"group {Id} ({Name})";
}

/// <summary>A snapshot of one group taken under its lock.</summary>
public sealed record IommuGroupState(int Id, string? Name, IReadOnlyList<IommuDevice> Devices, IommuDomain? DefaultDomain,
    IommuDomain? BlockingDomain, IommuDomain? Domain, uint OwnerCount, object? Owner, IommuDomainType DefaultType)
{
    /// <summary>The sysfs <c>type</c> text (no newline): the default domain's type, or <c>unknown</c> without one.</summary>
    public string TypeText => DefaultDomain is null ? "unknown" : DefaultType.SysfsName();
}
