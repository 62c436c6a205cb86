using System.Diagnostics;
using IommuKit.Pci;

namespace IommuKit.Core;

/// <summary>
/// The IOMMU core (drivers/iommu/iommu.c): driver instances, device probe and release, groups and their ids, default
/// domains, attach/detach, DMA ownership, reserved regions and the sysfs <c>type</c> file, with the semantics of the
/// chosen <see cref="KernelVersion"/>. Thread-safe; lock order in docs/LOCKING.md:
/// probe lock → device lock → group lock → leaf locks (registry, log, driver-internal).
/// </summary>
/// <remarks>
/// Typical use: create the core, add the devices the buses enumerated (<see cref="AddDevice"/>), register the IOMMU
/// driver (<see cref="RegisterDriver"/>: every device is probed and grouped, then every group gets its default
/// domain), then bind drivers (<see cref="BindDriver"/>), claim groups, change types, hot-plug.
/// </remarks>
public sealed partial class IommuCore
{
    /// <summary>Most log lines kept; older lines are dropped (a long stress run must not grow memory).</summary>
    public const int MaxLogLines = 4096;
    /// <summary>Most devices a core accepts (a cap on what input can grow).</summary>
    public const int MaxDevices = 1 << 20;

    // Lock order (docs/LOCKING.md): _probeLock → IommuDevice.DeviceLock → IommuGroup.Sync → {_registryLock, _logLock}.
    private readonly object _probeLock = new();
    /// <summary>Leaf lock guarding _bus, _onBus, _byPci, _groups, _idsInUse, _drivers and group refcounts.</summary>
    private readonly object _registryLock = new();
    private readonly object _logLock = new();

    private readonly List<IommuDevice> _bus = new();              // registry: every device the buses know, in add order
    private readonly HashSet<IommuDevice> _onBus = new();         // registry: the same devices, for O(1) membership
    private readonly Dictionary<PciAddress, IommuDevice> _byPci = new(); // registry
    private readonly SortedDictionary<int, IommuGroup> _groups = new();  // registry: live groups by id
    private readonly List<bool> _idsInUse = new();                // registry: the ida (lowest free id)
    private int _idsFreeFrom;                                     // registry: no id below this one is free
    private readonly List<IIommuDriver> _drivers = new();         // registry: ready driver instances
    private readonly Queue<string> _log = new();                  // _logLock

    private volatile int _defType;
    private volatile bool _dmaStrict;

    /// <param name="kernel">The kernel generation to imitate (6.1: pre-6.4 rules; 6.12: current rules).</param>
    /// <param name="cmdline">Kernel command line (<c>iommu.passthrough=</c>, <c>iommu.strict=</c>, <c>iommu=pt|nopt</c>, driver options).</param>
    /// <param name="boot">Build default and memory encryption; Debian (lazy DMA-FQ) when null.</param>
    public IommuCore(KernelVersion kernel, KernelCommandLine? cmdline = null, IommuBootConfig? boot = null)
    {
        Kernel = kernel;
        CommandLine = cmdline ?? KernelCommandLine.Empty;
        var d = IommuDefaults.Resolve(CommandLine, boot, kernel);
        _defType = (int)d.Type;
        _dmaStrict = d.DmaStrict;
        Defaults = d;
        Subscribe(KeepLogLine);
        foreach (var line in d.Log) AddLog(line);
    }

    /// <summary>The kernel generation whose rules the core follows.</summary>
    public KernelVersion Kernel { get; }
    /// <summary>The kernel command line the core was booted with.</summary>
    public KernelCommandLine CommandLine { get; }
    /// <summary>The boot-time decision before any driver forced strict mode.</summary>
    public IommuDefaults Defaults { get; }

    /// <summary>The global default domain type (<c>iommu_def_domain_type</c>): Identity, Dma or DmaFq.</summary>
    public IommuDomainType DefaultDomainType => (IommuDomainType)_defType;

    /// <summary><c>iommu_dma_strict</c>.</summary>
    public bool DmaStrict => _dmaStrict;

    /// <summary>
    /// Fault injection for tests: when it returns true for a domain, <c>iommu_dma_init_fq</c> fails with ENOMEM (the
    /// flush queue allocation of dma-iommu.c).
    /// </summary>
    internal Func<IommuDomain, bool>? FlushQueueInitFault { get; set; }

    /// <summary>
    /// <c>iommu_set_dma_strict</c>: drivers force strict invalidation (VT-d caching mode, <c>intel_iommu=strict</c>,
    /// <c>amd_iommu=fullflush</c>); a DMA-FQ global default becomes DMA. Call from <see cref="IIommuDriver.Init"/>.
    /// </summary>
    public void SetDmaStrict(string? reason = null)
    {
        if (reason is not null) AddLog(reason);
        _dmaStrict = true;
        Interlocked.CompareExchange(ref _defType, (int)IommuDomainType.Dma, (int)IommuDomainType.DmaFq);
    }

    /// <summary>The kernel log lines the core produced (oldest first, at most <see cref="MaxLogLines"/>): the text
    /// subscriber of <see cref="LogLineEvent"/>s, installed by the constructor.</summary>
    public IReadOnlyList<string> Log
    {
        get { lock (_logLock) return _log.ToArray(); }
    }

    internal void AddLog(string line) => Raise(new LogLineEvent(line));

    private void KeepLogLine(IommuEvent e)
    {
        if (e is not LogLineEvent l) return;
        lock (_logLock)
        {
            if (_log.Count >= MaxLogLines) _log.Dequeue();
            _log.Enqueue(l.Line);
        }
    }

    // Copy-on-write list of event handlers; _handlersLock (leaf) serialises Subscribe and unsubscribe.
    private readonly Lock _handlersLock = new();
    private volatile Action<IommuEvent>[] _handlers = [];

    /// <summary>
    /// Calls <paramref name="handler"/> with every <see cref="IommuEvent"/> from now on, until the returned handle is
    /// disposed. Handlers run synchronously on the thread that caused the event, possibly with a group lock held and
    /// from several threads at once: keep them short, thread-safe, and do not call back into the core from them.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="handler"/> is null.</exception>
    public IDisposable Subscribe(Action<IommuEvent> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        lock (_handlersLock) _handlers = [.. _handlers, handler];
        return new Subscription(this, handler);
    }

    private sealed class Subscription(IommuCore core, Action<IommuEvent> handler) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            lock (core._handlersLock)
            {
                int i = Array.IndexOf(core._handlers, handler);
                if (i >= 0) core._handlers = [.. core._handlers.AsSpan(0, i), .. core._handlers.AsSpan(i + 1)];
            }
        }
    }

    /// <summary>Delivers <paramref name="e"/> to every subscriber.</summary>
    internal void Raise(IommuEvent e)
    {
        foreach (var h in _handlers) h(e);
    }

    /// <summary>
    /// <c>report_iommu_fault</c>, for drivers: a unit refused a DMA; subscribers get a <see cref="DmaFaultEvent"/>.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="fault"/> is null.</exception>
    public void ReportFault(DmaFaultEvent fault)
    {
        ArgumentNullException.ThrowIfNull(fault);
        Raise(fault);
    }

    /// <summary>Live groups, sorted by id.</summary>
    public IReadOnlyList<IommuGroup> Groups
    {
        get { lock (_registryLock) return _groups.Values.ToArray(); }
    }

    /// <summary>The live group with this id, or null.</summary>
    public IommuGroup? FindGroup(int id)
    {
        lock (_registryLock) return _groups.GetValueOrDefault(id);
    }

    /// <summary>Every device the buses know (probed or not), in the order they were added.</summary>
    public IReadOnlyList<IommuDevice> Devices
    {
        get { lock (_registryLock) return _bus.ToArray(); }
    }

    /// <summary>How many devices the buses know (<see cref="Devices"/> without the copy).</summary>
    internal int DeviceCount
    {
        get { lock (_registryLock) return _bus.Count; }
    }

    /// <summary>The device with this name, or null.</summary>
    public IommuDevice? FindDevice(string name)
    {
        lock (_registryLock)
        {
            foreach (var d in _bus) if (d.Name == name) return d;
        }
        return null;
    }

    /// <summary>The device of a PCI function, or null.</summary>
    public IommuDevice? FindDevice(PciAddress address)
    {
        lock (_registryLock) return _byPci.GetValueOrDefault(address);
    }

    /// <summary>
    /// Adds a device the bus enumerated, without probing it (boot enumeration happens before the IOMMU driver
    /// registers). Use <see cref="HotplugAdd"/> after boot.
    /// </summary>
    /// <exception cref="InvalidOperationException">The device (or its PCI address) is already on the bus, or the cap was reached.</exception>
    public void AddDevice(IommuDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        lock (_registryLock) AddToBusRegistry(device);
    }

    private void AddToBusRegistry(IommuDevice device)
    {
        Debug.Assert(Monitor.IsEntered(_registryLock));
        if (_bus.Count >= MaxDevices) throw new InvalidOperationException($"more than {MaxDevices} devices");
        if (!_onBus.Add(device)) throw new InvalidOperationException($"{device.Name} is already on the bus");
        if (device.Pci is { } p)
        {
            if (_byPci.ContainsKey(p.Address))
            {
                _onBus.Remove(device);
                throw new InvalidOperationException($"{device.Name}: another device has PCI address {p.Address}");
            }
            _byPci[p.Address] = device;
        }
        _bus.Add(device);
    }

    // ---------------------------------------------------------------- group ids and references (registry lock)

    /// <summary>Group ids are below this bound (far above any machine's group count; the ida's range here).</summary>
    public const int MaxGroupId = 1 << 20;

    private IommuGroup AllocateGroup(string? name) =>
        AllocateGroupInRange(0, MaxGroupId - 1, name) ?? throw new InvalidOperationException($"all {MaxGroupId} IOMMU group ids are in use");

    private IommuGroup? AllocateGroupInRange(int min, int max, string? name)
    {
        lock (_registryLock)
        {
            // ida_alloc_range: the lowest free id in [min, max]; ids are reused after release (spec 1.1). The scan starts
            // at the lowest id that can be free, so a boot that allocates G groups costs O(G), not O(G^2).
            max = Math.Min(max, MaxGroupId - 1);
            int id = Math.Max(_idsFreeFrom, Math.Max(min, 0));
            while (id <= max && id < _idsInUse.Count && _idsInUse[id]) id++;
            if (id > max) return null;
            while (_idsInUse.Count <= id) _idsInUse.Add(false);
            _idsInUse[id] = true;
            if (min <= _idsFreeFrom) _idsFreeFrom = id + 1; // every id from _idsFreeFrom to id was in use
            var g = new IommuGroup(this, id, name);
            _groups[id] = g;
            return g;
        }
    }

    /// <summary><c>iommu_group_get</c> for drivers that keep a group alive without devices (POWER PEs): adds a reference.</summary>
    public void GroupGet(IommuGroup group)
    {
        lock (_registryLock)
        {
            if (group.ReleasedRegistry) throw new InvalidOperationException($"{group} was released");
            group.RefsRegistry++;
        }
    }

    /// <summary><c>iommu_group_put</c>: drops a reference; the last one releases the group and returns its id.</summary>
    public void GroupPut(IommuGroup group)
    {
        lock (_registryLock)
        {
            if (group.RefsRegistry <= 0) throw new InvalidOperationException($"{group}: reference count underflow");
            group.RefsRegistry--;
            ReleaseIfUnusedRegistry(group);
        }
    }

    private void ReleaseIfUnusedRegistry(IommuGroup group)
    {
        Debug.Assert(Monitor.IsEntered(_registryLock));
        if (group.RefsRegistry != 0 || group.ReleasedRegistry) return;
        // iommu_group_release: the id goes back to the allocator.
        group.ReleasedRegistry = true;
        _groups.Remove(group.Id);
        _idsInUse[group.Id] = false;
        _idsFreeFrom = Math.Min(_idsFreeFrom, group.Id);
    }

    private GroupContext? _groupContext;

    private sealed class GroupContext(IommuCore core) : IGroupContext
    {
        public IommuGroup? GroupOf(IommuDevice device) => device.Group;

        public IommuGroup? GroupOf(PciDevice pci)
        {
            IommuDevice? d;
            lock (core._registryLock) d = core._byPci.GetValueOrDefault(pci.Address);
            return d?.Group;
        }

        public IommuGroup Allocate(string? name = null) => core.AllocateGroup(name);

        public IommuGroup? AllocateInRange(int min, int max, string? name = null) => core.AllocateGroupInRange(min, max, name);
    }

    // ---------------------------------------------------------------- registration and probe (spec 11.1, 11.2, 5.4)

    /// <summary>
    /// <c>iommu_device_register</c> + <c>bus_iommu_probe</c>: the driver's <see cref="IIommuDriver.Init"/> runs, then
    /// every device on the buses (platform first, then PCI) is probed and put in its group; only then does each group
    /// get its default domain (setup target 0), so the type decision and the direct mappings see all of a group's
    /// devices. A setup failure aborts the scan and unregisters the driver (the error is returned).
    /// </summary>
    public IommuResult RegisterDriver(IIommuDriver driver)
    {
        ArgumentNullException.ThrowIfNull(driver);
        using (new ProbeLockScope(_probeLock))
        {
            // The kernel does not check a double registration (list corruption); the model refuses it with EBUSY,
            // the errno of the ~6.3 "single driver" rule (spec 11.1 step 1), before Init can reset the driver's state.
            // Every registration holds the probe lock, so nothing registers between this check and the add below.
            lock (_registryLock)
            {
                if (_drivers.Contains(driver)) return IommuResult.Fail(Errno.EBUSY, $"{driver.Name}: already registered");
            }
            driver.Init(this);
            IommuDevice[] devices;
            lock (_registryLock)
            {
                _drivers.Add(driver);
                // Bus order (spec 1.2): platform, then PCI.
                var list = new List<IommuDevice>(_bus.Count);
                foreach (var d in _bus) if (d.Bus == IommuBusKind.Platform) list.Add(d);
                foreach (var d in _bus) if (d.Bus == IommuBusKind.Pci) list.Add(d);
                devices = list.ToArray();
            }
            var pending = new List<IommuGroup>();
            foreach (var dev in devices)
            {
                var r = ProbeDeviceProbeLocked(dev, driver, single: false, pending);
                if (r.Errno == Errno.ENODEV) continue; // not behind this instance: ignored during a bus scan
                if (!r.IsOk)
                {
                    UnregisterProbeLocked(driver);
                    return r;
                }
            }
            foreach (var group in pending)
            {
                IommuResult r = IommuResult.Ok;
                using (new GroupLockScope(group))
                {
                    if (!group.SetupPendingLocked) continue;
                    group.SetupPendingLocked = false;
                    r = SetupDefaultDomainLocked(group, IommuDomainType.None, boot: true);
                    if (r.IsOk) SetupDmaOpsLocked(group);
                }
                if (!r.IsOk)
                {
                    // A setup failure aborts the scan and the registration (spec 5.4); the group lock is released
                    // first because unregistering takes device locks, which come before group locks.
                    UnregisterProbeLocked(driver);
                    return r;
                }
            }
            return IommuResult.Ok;
        }
    }

    /// <summary><c>iommu_device_unregister</c>: releases every device behind the driver and forgets the driver.</summary>
    public void UnregisterDriver(IIommuDriver driver)
    {
        using (new ProbeLockScope(_probeLock)) UnregisterProbeLocked(driver);
    }

    private void UnregisterProbeLocked(IIommuDriver driver)
    {
        Debug.Assert(Monitor.IsEntered(_probeLock));
        IommuDevice[] devices;
        lock (_registryLock) devices = _bus.ToArray();
        foreach (var d in devices)
        {
            if (d.IommuDriver == driver) ReleaseDeviceProbeLocked(d);
        }
        lock (_registryLock) _drivers.Remove(driver);
    }

    /// <summary>
    /// Hot-plug (<c>BUS_NOTIFY_ADD_DEVICE</c> → <c>iommu_probe_device</c>): adds the device to the bus and probes it.
    /// A device that starts a new group gets that group's default domain at once; a device joining a group that
    /// already has a domain is attached to it, and the type is <b>not</b> re-evaluated (spec 5.4). A failed first
    /// attach removes the device from the group again. ENODEV when no IOMMU driver claims it (it stays on the bus).
    /// </summary>
    public IommuResult HotplugAdd(IommuDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        using (new ProbeLockScope(_probeLock))
        {
            lock (_registryLock)
            {
                if (!_onBus.Contains(device)) AddToBusRegistry(device);
            }
            return ProbeDeviceProbeLocked(device, null, single: true, null);
        }
    }

    /// <summary>Probes one already-added device (after boot), like <see cref="HotplugAdd"/>.</summary>
    public IommuResult ProbeDevice(IommuDevice device) => HotplugAdd(device);

    private IommuResult ProbeDeviceProbeLocked(IommuDevice dev, IIommuDriver? only, bool single, List<IommuGroup>? pending)
    {
        Debug.Assert(Monitor.IsEntered(_probeLock));
        if (dev.Group is not null) return IommuResult.Ok; // already probed (spec 11.2 step 1)
        IIommuDriver[] drivers;
        lock (_registryLock) drivers = only is null ? _drivers.ToArray() : [only];
        IIommuDriver? ops = null;
        foreach (var drv in drivers)
        {
            var r = drv.ProbeDevice(dev);
            if (r.Errno == Errno.ENODEV) continue;
            if (!r.IsOk) return r;
            ops = drv;
            break;
        }
        // Spec 11.2 step 2: no ops for the device is ENODEV (ignored during a bus scan); driver errors propagate.
        if (ops is null) return IommuResult.Fail(Errno.ENODEV, $"{dev.Name}: no IOMMU driver manages this device");

        var group = ops.DeviceGroup(dev, _groupContext ??= new GroupContext(this)); // stateless: a race makes two equal ones
        if (group is null) // spec 11.2 step 2: device_group returning null is WARN + EINVAL, undone in reverse order
        {
            AddLog($"{dev.Name}: iommu_group_get_for_dev: device_group returned no group");
            ops.ReleaseDevice(dev);
            return IommuResult.Fail(Errno.EINVAL, $"{dev.Name}: {ops.Name} returned no group for the device");
        }

        using (new DeviceLockScope(dev))
        {
            if (dev.DriverName is not null)
                AddLog($"{dev.Name}: late IOMMU probe at driver bind, something fishy here!");
            using (new GroupLockScope(group))
            {
                lock (_registryLock)
                {
                    // A driver handing back a group whose last reference is gone is a driver bug (use after put).
                    if (group.ReleasedRegistry) throw new InvalidOperationException($"{ops.Name} returned released {group} for {dev.Name}");
                    group.RefsRegistry++;
                }
                group.DevicesLocked.Add(dev);
                dev.IommuDriver = ops;
                dev.Group = group;
                AddLog($"{dev.Name}: Adding to iommu group {group.Id}");

                IommuResult r = IommuResult.Ok;
                bool mapAfter = false;
                if (group.DefaultDomainLocked is { } def)
                {
                    if (Kernel.DirectMappingsBeforeHotplugAttach) CreateDirectMappingsLocked(group, def, dev);
                    else mapAfter = true;
                }
                if (group.DomainLocked is { } cur)
                {
                    // Joining a group with a domain: attach to it, no re-evaluation of the type (spec 5.4).
                    r = SetDeviceDomainLocked(group, dev, cur, null, mustSucceed: false);
                    if (r.IsOk && mapAfter && group.DefaultDomainLocked is { } d2) CreateDirectMappingsLocked(group, d2, dev);
                    if (r.IsOk && group.DefaultDomainLocked is not null) SetupDmaOpsLocked(group);
                }
                else if (single)
                {
                    r = SetupDefaultDomainLocked(group, IommuDomainType.None, boot: false);
                    if (r.IsOk) SetupDmaOpsLocked(group);
                }
                else if (!group.SetupPendingLocked)
                {
                    // Queued once per group for the deferred setup (the flag is the membership test).
                    group.SetupPendingLocked = true;
                    pending?.Add(group);
                }
                if (!r.IsOk)
                {
                    // The first attach must not fail; undo the add (spec 5.4 last bullet).
                    RemoveFromGroupLocked(group, dev, ops);
                    AddLog($"{dev.Name}: Failed to add to iommu group {group.Id}: {-(int)r.Errno}");
                }
                bool empty = group.DevicesLocked.Count == 0;
                if (!r.IsOk)
                {
                    lock (_registryLock)
                    {
                        group.RefsRegistry--;
                        if (empty) ReleaseIfUnusedRegistry(group);
                    }
                }
                return r;
            }
        }
    }

    /// <summary>
    /// Hot removal (<c>BUS_NOTIFY_REMOVED_DEVICE</c>): unbinds the device's driver, releases it from its group and,
    /// when the group becomes empty, frees its domains; the last reference releases the group and its id.
    /// </summary>
    public void RemoveDevice(IommuDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        using (new ProbeLockScope(_probeLock))
        {
            ReleaseDeviceProbeLocked(device);
            lock (_registryLock)
            {
                _bus.Remove(device);
                _onBus.Remove(device);
                if (device.Pci is { } p && _byPci.GetValueOrDefault(p.Address) == device) _byPci.Remove(p.Address);
            }
        }
    }

    private void ReleaseDeviceProbeLocked(IommuDevice dev)
    {
        Debug.Assert(Monitor.IsEntered(_probeLock));
        using (new DeviceLockScope(dev))
        {
            // The driver core unbinds before the removal notifier runs.
            if (dev.DriverName is not null) UnbindDeviceLocked(dev);
            var group = dev.Group;
            if (group is null) return;
            var ops = dev.IommuDriver!;
            bool empty;
            using (new GroupLockScope(group))
            {
                RemoveFromGroupLocked(group, dev, ops);
                empty = group.DevicesLocked.Count == 0;
            }
            lock (_registryLock)
            {
                group.RefsRegistry--;
                if (empty) ReleaseIfUnusedRegistry(group);
            }
        }
    }

    private void RemoveFromGroupLocked(IommuGroup group, IommuDevice dev, IIommuDriver ops)
    {
        group.AssertLocked();
        group.DevicesLocked.Remove(dev);
        ForgetSplitDeviceLocked(group, dev);
        bool empty = group.DevicesLocked.Count == 0;
        if (empty && (group.OwnerCntLocked != 0 || group.DomainLocked != group.DefaultDomainLocked))
            AddLog($"WARNING: {group}: last device {dev.Name} left while owner_cnt={group.OwnerCntLocked} or the domain is not the default");
        ops.ReleaseDevice(dev);
        dev.Group = null;
        dev.IommuDriver = null;
        dev.AttachedDomain = null;
        dev.RequireDirect = false;
        AddLog($"{dev.Name}: Removing from iommu group {group.Id}");
        if (empty)
        {
            // __iommu_group_remove_device: an empty group frees its default and blocking domains (6.4+; older kernels at
            // group release, which for us is the same moment unless a driver holds the group).
            var def = group.DefaultDomainLocked;
            var blk = group.BlockingDomainLocked;
            var cur = group.DomainLocked;
            group.DefaultDomainLocked = null;
            group.BlockingDomainLocked = null;
            group.DomainLocked = null;
            group.OwnerCntLocked = 0;
            group.OwnerLocked = null;
            group.SetupPendingLocked = false;
            FreeDomainInternal(def);
            if (blk != def) FreeDomainInternal(blk);
            _ = cur; // a user domain stays its user's to free
        }
    }
}
