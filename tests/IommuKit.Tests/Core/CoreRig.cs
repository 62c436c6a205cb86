using IommuKit.Core;
using IommuKit.Drivers;
using IommuKit.Paging;
using IommuKit.Pci;

namespace IommuKit.Tests.Core;

/// <summary>
/// A test IOMMU driver: groups by a key per device name, per-device type requirements and reserved regions, real
/// page tables, fault injection from the base (attach/alloc) plus "cannot map before attach" and an identity toggle.
/// </summary>
internal sealed class TestDriver : IommuDriverBase
{
    public Dictionary<string, string> GroupKey { get; } = new();
    public Dictionary<string, IommuDomainType> Requires { get; } = new();
    public Dictionary<string, List<ReservedRegion>> Regions { get; } = new();
    /// <summary>Group ids asked for by key (<see cref="IGroupContext.AllocateInRange"/> of one id), else the lowest free.</summary>
    public Dictionary<string, int> WantId { get; } = new();
    private readonly Dictionary<string, IommuGroup> _groups = new();
    public bool MapOnlyAfterAttach { get; set; }
    public bool DeferredFlush { get; set; } = true;
    public Action<IommuDevice>? OnDefDomainType { get; set; }

    public TestDriver(bool staticIdentity = true, bool staticBlocked = false, string name = "test-iommu")
        : base(name, f => IoPageTables.Create(f))
    {
        if (staticIdentity) StaticIdentityDomain = new IommuDomain(IommuDomainType.Identity, this, isStatic: true);
        if (staticBlocked) StaticBlockedDomain = new IommuDomain(IommuDomainType.Blocked, this, isStatic: true);
    }

    protected override IoPageTableFormat PageTableFormat => IoPageTableFormat.X86_64Level4;

    public override IommuResult ProbeDevice(IommuDevice device) =>
        device.Name.StartsWith("noiommu", StringComparison.Ordinal) ? IommuResult.Fail(Errno.ENODEV, "no") : IommuResult.Ok;

    public override IommuGroup? DeviceGroup(IommuDevice device, IGroupContext context)
    {
        lock (_groups)
        {
            string key;
            lock (GroupKey) key = GroupKey.GetValueOrDefault(device.Name, device.Name);
            if (_groups.TryGetValue(key, out var g) && g.Devices.Count > 0) return g;
            g = WantId.TryGetValue(key, out int want) ? context.AllocateInRange(want, want) ?? context.Allocate() : context.Allocate();
            _groups[key] = g;
            return g;
        }
    }

    public override IommuDomainType DefDomainType(IommuDevice device)
    {
        OnDefDomainType?.Invoke(device);
        return Requires.GetValueOrDefault(device.Name, IommuDomainType.None);
    }

    public override bool Capable(IommuDevice device, IommuCapability capability) =>
        capability == IommuCapability.DeferredFlush ? DeferredFlush : base.Capable(device, capability);

    public override IommuResult AllocPagingDomain(IommuDevice device, IommuDomainType type, out IommuDomain? domain)
    {
        var r = base.AllocPagingDomain(device, type, out domain);
        if (r.IsOk && MapOnlyAfterAttach)
        {
            // The table appears only at the first attach: maps before that fail (ENODEV), as with drivers that settle
            // their format on attach.
            var table = domain!.PageTable!;
            domain = new IommuDomain(type, this, table.PageSizeBitmap, 0, domain.ApertureEnd, true, null);
            lock (_deferred) _deferred[domain] = table;
        }
        return r;
    }

    public override void GetReservedRegions(IommuDevice device, List<ReservedRegion> regions)
    {
        if (Regions.TryGetValue(device.Name, out var l)) regions.AddRange(l);
        regions.Add(X86MsiRegion);
    }

    private readonly Dictionary<IommuDomain, IIoPageTable> _deferred = new();

    protected override IommuResult AttachDeviceCore(IommuDomain domain, IommuDevice device)
    {
        lock (_deferred)
        {
            if (_deferred.Remove(domain, out var t)) domain.TrySetPageTable(t);
        }
        return IommuResult.Ok;
    }
}

/// <summary>Builders for cores, devices and PCI functions.</summary>
internal static class CoreRig
{
    public static IommuCore NewCore(string cmdline = "", KernelVersion? kernel = null, IommuBootConfig? boot = null) =>
        new(kernel ?? KernelVersion.V6_12, KernelCommandLine.Parse(cmdline), boot);

    public static IommuDevice Dev(string name) => new(name, IommuBusKind.Platform);

    /// <summary>PCI functions on bus 0 (and bus 1 behind 00:1c.0 when asked), keyed by address.</summary>
    public static PciTopology PciTopo(params (string Bdf, uint Class, ushort Vendor, ushort Device, bool Untrusted)[] fns)
    {
        var b = new PciTopologyBuilder();
        foreach (var f in fns)
        {
            var a = PciAddress.Parse(f.Bdf);
            b.Add(new PciDeviceFacts
            {
                Address = a, ClassCode = f.Class, VendorId = f.Vendor, DeviceId = f.Device, Untrusted = f.Untrusted,
                HeaderLayout = f.Class >> 8 == 0x0604 ? 1 : 0,
                BridgeBuses = f.Class >> 8 == 0x0604 ? ((byte)a.Bus, (byte)(a.Bus + 1), (byte)(a.Bus + 1)) : null,
            });
        }
        return b.Build();
    }

    /// <summary>Adds the devices, registers the driver (boot), asserts it worked.</summary>
    public static void Boot(IommuCore core, IIommuDriver driver, params IommuDevice[] devices)
    {
        foreach (var d in devices) core.AddDevice(d);
        var r = core.RegisterDriver(driver);
        Xunit.Assert.True(r.IsOk, r.ToString());
    }

    public static ReservedRegion Region(ulong start, ulong last, ReservedRegionType type) =>
        ReservedRegion.FromInclusive(start, last, IommuProt.Read | IommuProt.Write, type);
}
