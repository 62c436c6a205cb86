using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Simulation;

/// <summary>
/// A PCIe switch: one upstream port, and one downstream port per device added under it. Peer-to-peer requests between
/// devices under the switch are routed by the switch itself unless ACS P2P Request Redirect is enabled on the ingress
/// downstream port (PCIe r6.0 §6.12.1.2), in which case they go upstream to the root complex and its IOMMU.
/// </summary>
/// <remarks>Each downstream port may have its own ACS control (<see cref="SimulatedDevice.PortAcs"/>, set by
/// <see cref="SimulatedBus.FromTopology"/> from the machine); a device without one uses the switch-wide
/// <see cref="Acs"/>.</remarks>
public sealed class PcieSwitch
{
    private SimulatedDevice[] _devices = [];
    private long _peerToPeerRequests;

    internal PcieSwitch(string name, AcsFlags acs)
    {
        Name = name;
        Acs = acs;
    }

    /// <summary>The switch's name, for messages.</summary>
    public string Name { get; }

    /// <summary>ACS control bits enabled on every downstream port. Only <see cref="AcsFlags.RR"/> changes routing here.</summary>
    public AcsFlags Acs { get; set; }

    /// <summary>Requests the switch routed directly between its downstream ports (never seen by the IOMMU).</summary>
    public long PeerToPeerRequests => Interlocked.Read(ref _peerToPeerRequests);

    /// <summary>Devices below this switch, in the order added.</summary>
    public IReadOnlyList<SimulatedDevice> Devices => _devices;

    internal void Add(SimulatedDevice device) => _devices = [.. _devices, device];

    /// <summary>
    /// Switch routing for a memory request of <paramref name="from"/>: a peer whose BAR holds the address, when ACS
    /// Request Redirect is off on the ingress port (PCIe §6.12.1.2 / the kernel's reason for REQ_ACS_FLAGS).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal SimulatedDevice? RoutePeer(SimulatedDevice from, ulong address)
    {
        if (((from.PortAcs ?? Acs) & AcsFlags.RR) != 0)
            return null; // redirected upstream: the root complex (and the IOMMU) sees it
        SimulatedDevice[] devices = _devices;
        for (int i = 0; i < devices.Length; i++)
        {
            SimulatedDevice d = devices[i];
            if (!ReferenceEquals(d, from) && d.BarContains(address))
            {
                Interlocked.Increment(ref _peerToPeerRequests);
                if (from.Group is { } a && d.Group is { } b && a != b)
                    from.Bus.ReportCrossGroup(new IsolationViolation(from, d, address));
                return d;
            }
        }
        return null;
    }
}

/// <summary>
/// The bus model: physical memory, one IOMMU at the root complex, switches and devices. Routes each device's DMA the way
/// PCIe does: first the switch (peer-to-peer without ACS), then upstream through the IOMMU (translate or fault; MSI
/// window = interrupt), then the root complex sends the physical address to RAM or to a device BAR.
/// </summary>
/// <remarks>Adding switches and devices is not thread-safe and should happen before DMA starts; DMA itself is
/// thread-safe and lock-free on the translation path.</remarks>
public sealed class SimulatedBus
{
    private SimulatedDevice[] _barDevices = [];
    // The in-process memory when that is what was given: copies then call the sealed type directly (no interface dispatch).
    private readonly PhysicalMemory? _physical;

    /// <summary>A bus over <paramref name="memory"/> (the caller's guest memory, or a <see cref="PhysicalMemory"/>)
    /// with <paramref name="iommu"/> at the root complex.</summary>
    public SimulatedBus(IGuestMemory memory, IommuHardware iommu)
    {
        Memory = memory ?? throw new ArgumentNullException(nameof(memory));
        Iommu = iommu ?? throw new ArgumentNullException(nameof(iommu));
        _physical = memory as PhysicalMemory;
    }

    /// <summary>The guest memory translated requests reach.</summary>
    public IGuestMemory Memory { get; }

    /// <summary>The IOMMU that translates every request reaching the root complex.</summary>
    public IommuHardware Iommu { get; }

    /// <summary>Adds a switch whose downstream ports have <paramref name="acs"/> enabled.</summary>
    public PcieSwitch AddSwitch(string name, AcsFlags acs = AcsFlags.None) => new(name, acs);

    /// <summary>
    /// Adds a device. <paramref name="requesterId"/> is the ID the IOMMU sees for its requests: its own bus/devfn, or the
    /// alias a PCIe-to-PCI bridge substitutes (the last alias of pci_for_each_dma_alias, spec 2.2), supplied by the PCI
    /// model. <paramref name="barBase"/>/<paramref name="barSize"/> give one memory BAR (MMIO backed by a byte array),
    /// reachable by peers and by the root complex.
    /// </summary>
    /// <param name="mmio">The caller's device model: BAR reads and writes (from peers, from DMA the IOMMU let through,
    /// and from the CPU through <see cref="CpuRead"/>/<see cref="CpuWrite"/>) go to it instead of a byte array.</param>
    /// <param name="portAcs">ACS control of the downstream port the device sits behind (null: the switch's).</param>
    public SimulatedDevice AddDevice(string name, ushort requesterId, PcieSwitch? under = null, ulong barBase = 0,
        int barSize = 0, PciAddress? address = null, IMmioDevice? mmio = null, AcsFlags? portAcs = null)
    {
        if (barSize < 0 || (barSize > 0 && barBase > ulong.MaxValue - (ulong)barSize))
            ThrowHelper.ThrowArgument(nameof(barSize), "the BAR must not wrap the address space");
        var dev = new SimulatedDevice(this, name, requesterId, under, barBase, barSize, address, mmio) { PortAcs = portAcs };
        under?.Add(dev);
        _devices = [.. _devices, dev];
        if (barSize > 0)
            _barDevices = [.. _barDevices, dev];
        return dev;
    }

    /// <summary>
    /// Builds the bus of <paramref name="machine"/>: one device per PCI function that is not a bridge, with the requester
    /// ID its DMA carries at the IOMMU (the last alias of <c>pci_for_each_dma_alias</c>), one <see cref="PcieSwitch"/>
    /// per switch upstream port, and each device's downstream-port ACS control as the machine shows it. So a
    /// peer-to-peer request between devices the kernel put in different groups (ACS RR on their ports) goes to the
    /// IOMMU and faults unless mapped, and one between devices of one group reaches the peer directly.
    /// </summary>
    /// <param name="bars">The memory BAR (and optional device model) of each function that has one; null = none.</param>
    /// <param name="groupOf">The IOMMU group number of each function (from the core or the grouping rules); with it,
    /// a peer-to-peer request the switch routes between devices of different groups is caught as an
    /// <see cref="IsolationViolation"/>: the groups promised an isolation the fabric does not give.</param>
    /// <exception cref="ArgumentNullException">A null argument.</exception>
    public static SimulatedBus FromTopology(Machine machine, IGuestMemory memory, IommuHardware iommu,
        Func<PciDevice, DeviceBar?>? bars = null, Func<PciDevice, int?>? groupOf = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        var bus = new SimulatedBus(memory, iommu);
        var aliases = DmaAliasWalk.ContextFor(machine.Topology);
        var switches = new Dictionary<PciDevice, PcieSwitch>();
        foreach (var pci in machine.Topology.Devices)
        {
            if (pci.IsBridge) continue;
            PcieSwitch? under = null;
            AcsFlags? portAcs = null;
            // PCIe r6.0 §6.12.1.2: ACS P2P Request Redirect is a control of the ingress downstream port.
            if (!pci.Bus.IsRoot && pci.Bus.Self is { PcieType: PcieType.Downstream } port && !port.Bus.IsRoot && port.Bus.Self is { } up)
            {
                if (!switches.TryGetValue(up, out under))
                    switches[up] = under = bus.AddSwitch(up.Address.ToString());
                portAcs = port.Acs?.Control ?? AcsFlags.None;
            }
            var bar = bars?.Invoke(pci);
            var dev = bus.AddDevice(pci.Address.ToString(), DmaAliasWalk.VisibleRequesterId(pci, aliases), under,
                bar?.Base ?? 0, bar?.Size ?? 0, pci.Address, bar?.Model, portAcs);
            dev.Group = groupOf?.Invoke(pci);
        }
        return bus;
    }

    // _violationLock guards _violations (bounded log, cold path).
    private readonly Lock _violationLock = new();
    private readonly Queue<IsolationViolation> _violations = new();
    private long _crossGroup;

    /// <summary>Violations kept in <see cref="IsolationViolations"/>; older ones are dropped.</summary>
    public const int MaxViolationLog = 1024;

    /// <summary>Peer-to-peer requests the fabric delivered between devices of different IOMMU groups.</summary>
    public long CrossGroupPeerRequests => Interlocked.Read(ref _crossGroup);

    /// <summary>The last <see cref="MaxViolationLog"/> cross-group peer-to-peer requests, oldest first.</summary>
    public IReadOnlyList<IsolationViolation> IsolationViolations
    {
        get { lock (_violationLock) return _violations.ToArray(); }
    }

    /// <summary>Called for each cross-group peer-to-peer request, after it is recorded. May run concurrently.</summary>
    public Action<IsolationViolation>? IsolationViolationHandler { get; set; }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal void ReportCrossGroup(IsolationViolation v)
    {
        Interlocked.Increment(ref _crossGroup);
        lock (_violationLock)
        {
            if (_violations.Count == MaxViolationLog) _violations.Dequeue();
            _violations.Enqueue(v);
        }
        IsolationViolationHandler?.Invoke(v);
    }

    /// <summary>The devices on this bus, in the order added.</summary>
    public IReadOnlyList<SimulatedDevice> Devices => _devices;

    private SimulatedDevice[] _devices = [];

    /// <summary>A CPU read of physical <paramref name="address"/>: a device BAR (its MMIO callback) or memory.</summary>
    public void CpuRead(ulong address, Span<byte> destination)
    {
        CheckNoWrap(address, Math.Max(destination.Length, 1));
        CompleteRead(address, destination);
    }

    /// <summary>A CPU write of physical <paramref name="address"/>: a device BAR (its MMIO callback, e.g. a doorbell)
    /// or memory.</summary>
    public void CpuWrite(ulong address, ReadOnlySpan<byte> source)
    {
        CheckNoWrap(address, Math.Max(source.Length, 1));
        CompleteWrite(address, source);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private SimulatedDevice? FindBar(ulong phys)
    {
        SimulatedDevice[] bars = _barDevices;
        for (int i = 0; i < bars.Length; i++)
        {
            if (bars[i].BarContains(phys))
                return bars[i];
        }
        return null;
    }

    internal DmaFaultReason Write(SimulatedDevice dev, ulong address, ReadOnlySpan<byte> source)
    {
        if (source.IsEmpty)
            return DmaFaultReason.None;
        CheckNoWrap(address, source.Length);
        if (dev.Switch is { } sw && sw.RoutePeer(dev, address) is { } peer)
        {
            peer.MmioWrite(address, source);
            return DmaFaultReason.None;
        }
        ushort rid = dev.RequesterId;
        IommuHardware iommu = Iommu;
        while (true)
        {
            // One translation per run of physically contiguous pages, then one bulk copy per run.
            DmaTranslation t = iommu.TranslateRun(rid, address, source.Length, write: true, out int run);
            if (t.Kind != DmaTranslationKind.Memory)
            {
                if (t.Kind == DmaTranslationKind.Fault)
                    return t.Fault;
                iommu.DeliverInterrupt(rid, address, ReadMsiData(source));
                return DmaFaultReason.None;
            }
            CompleteWrite(t.Phys, source[..run]);
            if (run == source.Length)
                return DmaFaultReason.None;
            source = source[run..];
            address += (ulong)run;
        }
    }

    internal DmaFaultReason Read(SimulatedDevice dev, ulong address, Span<byte> destination)
    {
        if (destination.IsEmpty)
            return DmaFaultReason.None;
        CheckNoWrap(address, destination.Length);
        if (dev.Switch is { } sw && sw.RoutePeer(dev, address) is { } peer)
        {
            peer.MmioRead(address, destination);
            return DmaFaultReason.None;
        }
        ushort rid = dev.RequesterId;
        IommuHardware iommu = Iommu;
        while (true)
        {
            DmaTranslation t = iommu.TranslateRun(rid, address, destination.Length, write: false, out int run);
            if (t.Kind != DmaTranslationKind.Memory)
                return t.Fault; // a read of the MSI window comes back as a Permission fault
            CompleteRead(t.Phys, destination[..run]);
            if (run == destination.Length)
                return DmaFaultReason.None;
            destination = destination[run..];
            address += (ulong)run;
        }
    }

    /// <summary>Root-complex routing of an already translated write: a device BAR (IOMMU-mediated peer-to-peer) or RAM.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CompleteWrite(ulong phys, ReadOnlySpan<byte> data)
    {
        if (_barDevices.Length != 0 && FindBar(phys) is { } target)
            target.MmioWrite(phys, data);
        else if (_physical is not null)
            _physical.Write(phys, data);
        else
            Memory.Write(phys, data);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CompleteRead(ulong phys, Span<byte> data)
    {
        if (_barDevices.Length != 0 && FindBar(phys) is { } target)
            target.MmioRead(phys, data);
        else if (_physical is not null)
            _physical.Read(phys, data);
        else
            Memory.Read(phys, data);
    }

    private static uint ReadMsiData(ReadOnlySpan<byte> source)
    {
        Span<byte> b = stackalloc byte[4];
        b.Clear();
        source[..Math.Min(4, source.Length)].CopyTo(b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CheckNoWrap(ulong address, int length)
    {
        // Overflow case: a request whose last byte would pass 2^64 - 1.
        if (address > ulong.MaxValue - (ulong)(length - 1))
            ThrowHelper.ThrowAddressOutOfRange(address, (ulong)length, 64);
    }
}

/// <summary>
/// A PCI function that does DMA. Its requests carry <see cref="RequesterId"/> (what the IOMMU sees, DMA alias included)
/// and go through the bus model: switch, IOMMU, root complex.
/// </summary>
public sealed class SimulatedDevice
{
    private readonly SimulatedBus _bus;
    private readonly byte[] _bar;
    private readonly IMmioDevice? _mmio;
    private readonly int _barSize;

    internal SimulatedDevice(SimulatedBus bus, string name, ushort requesterId, PcieSwitch? under, ulong barBase, int barSize,
        PciAddress? address, IMmioDevice? mmio = null)
    {
        _bus = bus;
        _mmio = mmio;
        _barSize = barSize;
        Name = name;
        RequesterId = requesterId;
        Switch = under;
        BarBase = barBase;
        _bar = mmio is null ? new byte[barSize] : [];
        Address = address;
    }

    /// <summary>The device's name, for messages.</summary>
    public string Name { get; }

    /// <summary>The requester ID the IOMMU sees for this device's requests (bus &lt;&lt; 8 | devfn, after aliasing).</summary>
    public ushort RequesterId { get; }

    /// <summary>The device's own PCI address, when the model has one (its requester ID may differ: DMA alias).</summary>
    public PciAddress? Address { get; }

    /// <summary>The switch above the device, or null when it sits directly on a root port.</summary>
    public PcieSwitch? Switch { get; }

    /// <summary>Bus address of the memory BAR (0 size = none).</summary>
    public ulong BarBase { get; }

    /// <summary>Size of the memory BAR in bytes (0 = none).</summary>
    public int BarSize => _barSize;

    /// <summary>The BAR's contents (MMIO registers/memory), as peers and the CPU see them; empty when a caller's
    /// <see cref="IMmioDevice"/> backs the BAR.</summary>
    public Span<byte> Bar => _bar;

    /// <summary>ACS control of the downstream port the device sits behind; null = the switch's <see cref="PcieSwitch.Acs"/>.</summary>
    public AcsFlags? PortAcs { get; internal init; }

    /// <summary>The device's IOMMU group number, when the bus was told (<see cref="SimulatedBus.FromTopology"/>).</summary>
    public int? Group { get; set; }

    internal SimulatedBus Bus => _bus;

    /// <summary>DMA read of <paramref name="destination"/>.Length bytes at DMA address <paramref name="address"/>.
    /// Returns <see cref="DmaFaultReason.None"/> or the fault that stopped it; bytes before the faulting page were
    /// transferred (as on hardware).</summary>
    public DmaFaultReason Read(ulong address, Span<byte> destination) => _bus.Read(this, address, destination);

    /// <summary>DMA write of <paramref name="source"/> at DMA address <paramref name="address"/>; a write into the MSI
    /// window is an interrupt message whose data is its first 4 bytes. Returns None or the fault that stopped it.</summary>
    public DmaFaultReason Write(ulong address, ReadOnlySpan<byte> source) => _bus.Write(this, address, source);

    /// <summary>Signals an MSI: a 4-byte write of <paramref name="data"/> to <paramref name="address"/> (normally inside
    /// the MSI window 0xfee00000-0xfeefffff).</summary>
    public DmaFaultReason SignalMsi(ulong address, uint data)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, data);
        return Write(address, b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool BarContains(ulong address) => address - BarBase < (ulong)_barSize;

    internal void MmioWrite(ulong address, ReadOnlySpan<byte> data)
    {
        int offset = (int)(address - BarBase);
        if (_mmio is not null)
        {
            _mmio.MmioWrite((ulong)offset, data[..Math.Min(data.Length, _barSize - offset)]);
            return;
        }
        int n = Math.Min(data.Length, _bar.Length - offset); // bytes past the BAR end are dropped (unsupported request)
        data[..n].CopyTo(_bar.AsSpan(offset));
    }

    internal void MmioRead(ulong address, Span<byte> data)
    {
        int offset = (int)(address - BarBase);
        if (_mmio is not null)
        {
            int m = Math.Min(data.Length, _barSize - offset);
            _mmio.MmioRead((ulong)offset, data[..m]);
            data[m..].Fill(0xff);
            return;
        }
        int n = Math.Min(data.Length, _bar.Length - offset);
        _bar.AsSpan(offset, n).CopyTo(data);
        data[n..].Fill(0xff); // past the BAR: an unsupported request completes with all ones
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} (requester {RequesterId >> 8:x2}:{(RequesterId >> 3) & 0x1f:x2}.{RequesterId & 7:x})";
}

/// <summary>
/// A device model the caller implements (a VMM's NIC, disk, GPU): the bus calls it for every access to its BAR, from
/// the CPU (<see cref="SimulatedBus.CpuWrite"/>), from a peer the switch routed directly, or from DMA the IOMMU let
/// through. The model does its own DMA through the <see cref="SimulatedDevice"/> the bus returned for it.
/// </summary>
/// <remarks>Calls may come from several threads at once; offsets are from the BAR base and the span never runs past
/// the BAR's end.</remarks>
public interface IMmioDevice
{
    /// <summary>A read of <paramref name="data"/>.Length bytes at <paramref name="offset"/> into the BAR.</summary>
    void MmioRead(ulong offset, Span<byte> data);

    /// <summary>A write of <paramref name="data"/> at <paramref name="offset"/> into the BAR (a register, a doorbell).</summary>
    void MmioWrite(ulong offset, ReadOnlySpan<byte> data);
}

/// <summary>One memory BAR of a device built by <see cref="SimulatedBus.FromTopology"/>: bus address, size in bytes,
/// and the caller's model behind it (null: plain memory).</summary>
public readonly record struct DeviceBar(ulong Base, int Size, IMmioDevice? Model = null);

/// <summary>A peer-to-peer request the fabric routed between devices of different IOMMU groups, which the IOMMU never
/// saw: the grouping promised isolation the hardware does not provide.</summary>
public readonly record struct IsolationViolation(SimulatedDevice From, SimulatedDevice To, ulong Address)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"{From.Name} (group {From.Group}) reached {To.Name} (group {To.Group}) at 0x{Address:x} through the switch, bypassing the IOMMU";
}
