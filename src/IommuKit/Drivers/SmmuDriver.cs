using IommuKit.Core;
using IommuKit.Paging;

namespace IommuKit.Drivers;

/// <summary>
/// The SMMU-like reference driver for platform devices (drivers/iommu/arm/arm-smmu): devices carry stream IDs
/// (<see cref="IommuDevice.StreamIds"/>); devices that share a stream ID share a group (the SMMUv2 stream-map rule:
/// the group recorded in the device's stream-map entries is reused, two different ones are EINVAL), reserved regions
/// are the software MSI window plus any firmware (IORT RMR) regions, and domains use ARM LPAE 4K tables.
/// </summary>
public sealed class SmmuDriver : IommuDriverBase
{
    private readonly string _instance;
    private readonly object _smeLock = new(); // leaf: guards _smes
    private readonly Dictionary<uint, (IommuGroup Group, int Users)> _smes = new();
    private readonly IReadOnlyDictionary<string, IReadOnlyList<ReservedRegion>> _firmwareRegions;

    /// <param name="instance">The SMMU instance name devices point at (<see cref="IommuDevice.Instance"/>); null accepts any platform device with stream IDs.</param>
    /// <param name="firmwareRegions">Per device name: IORT RMR / reserved-memory regions.</param>
    public SmmuDriver(string? instance, Func<IoPageTableFormat, IIoPageTable>? pageTables,
        IReadOnlyDictionary<string, IReadOnlyList<ReservedRegion>>? firmwareRegions = null)
        : base("arm-smmu", pageTables)
    {
        _instance = instance ?? "";
        _firmwareRegions = firmwareRegions ?? new Dictionary<string, IReadOnlyList<ReservedRegion>>();
        StaticIdentityDomain = new IommuDomain(IommuDomainType.Identity, this, isStatic: true);
        StaticBlockedDomain = new IommuDomain(IommuDomainType.Blocked, this, isStatic: true);
    }

    /// <inheritdoc/>
    protected override IoPageTableFormat PageTableFormat => IoPageTableFormat.ArmLpae4K;

    /// <inheritdoc/>
    public override IommuResult ProbeDevice(IommuDevice device)
    {
        if (device.Bus != IommuBusKind.Platform || device.StreamIds.Count == 0 || (_instance.Length > 0 && device.Instance != _instance))
            return IommuResult.Fail(Errno.ENODEV, $"{device.Name}: no stream IDs for {Name} {_instance}");
        return IommuResult.Ok;
    }

    /// <summary><c>arm_smmu_device_group</c>: reuse the one group found in the device's stream-map entries; two differing groups are EINVAL (null).</summary>
    public override IommuGroup? DeviceGroup(IommuDevice device, IGroupContext context)
    {
        lock (_smeLock)
        {
            IommuGroup? found = null;
            foreach (var sid in device.StreamIds)
            {
                if (!_smes.TryGetValue(sid, out var e)) continue;
                if (found is not null && found != e.Group)
                {
                    Core?.AddLog($"{device.Name}: stream IDs already belong to two different groups");
                    return null;
                }
                found = e.Group;
            }
            found ??= context.Allocate();
            foreach (var sid in device.StreamIds)
                _smes[sid] = _smes.TryGetValue(sid, out var e) ? (found, e.Users + 1) : (found, 1);
            return found;
        }
    }

    /// <inheritdoc/>
    public override void ReleaseDevice(IommuDevice device)
    {
        base.ReleaseDevice(device);
        lock (_smeLock)
        {
            // arm_smmu_master_free_smes: an entry forgets its group when its last user goes.
            foreach (var sid in device.StreamIds)
            {
                if (!_smes.TryGetValue(sid, out var e)) continue;
                if (e.Users <= 1) _smes.Remove(sid);
                else _smes[sid] = (e.Group, e.Users - 1);
            }
        }
    }

    /// <inheritdoc/>
    public override void GetReservedRegions(IommuDevice device, List<ReservedRegion> regions)
    {
        if (_firmwareRegions.TryGetValue(device.Name, out var fw)) regions.AddRange(fw);
        // arm_smmu_get_resv_regions: the software-managed MSI window (MSI_IOVA_BASE, MSI_IOVA_LENGTH).
        regions.Add(new ReservedRegion(VirtioIommuDriver.SwMsiBase, VirtioIommuDriver.SwMsiLength,
            IommuProt.Write | IommuProt.NoExec | IommuProt.Mmio, ReservedRegionType.SwMsi));
    }
}
