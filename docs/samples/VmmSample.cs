using IommuKit.Core;
using IommuKit.Dma;
using IommuKit.Drivers;
using IommuKit.Grouping;
using IommuKit.Paging;
using IommuKit.Pci;
using IommuKit.Simulation;
using IommuKit.Sources;

namespace IommuKit.Samples;

/// <summary>What the sample saw, for the test that runs it.</summary>
public sealed record VmmSampleResult(string Received, DmaFaultReason OldMapping, Errno UnmapOld, string ReceivedAfterChange,
    IReadOnlyList<DmaFaultEvent> Faults);

/// <summary>
/// A VMM's use of IommuKit: load a machine, boot the IOMMU core on it with an emulated VT-d unit, give a NIC its DMA
/// API, let the VMM's own NIC model DMA into the VMM's own guest memory, change the group's type and watch the old
/// mapping fault.
/// </summary>
public static class VmmSample
{
    /// <summary>Guest RAM as the VMM keeps it (here one array); the bus writes translated DMA into it.</summary>
    public sealed class GuestRam(int bytes) : IGuestMemory, IDmaPageAllocator
    {
        private readonly byte[] _ram = new byte[bytes];
        private ulong _next = 0x10_0000; // a bump allocator for coherent buffers, from 1 MiB

        public void Read(ulong address, Span<byte> destination) => _ram.AsSpan(checked((int)address), destination.Length).CopyTo(destination);

        public void Write(ulong address, ReadOnlySpan<byte> source) => source.CopyTo(_ram.AsSpan(checked((int)address)));

        public ulong AllocatePages(ulong bytes) => Interlocked.Add(ref _next, bytes) - bytes;

        public void FreePages(ulong address, ulong bytes) { }
    }

    /// <summary>
    /// The VMM's NIC model. Register 0x08 holds a receive buffer's DMA address; writing 1 to register 0x00 (the
    /// doorbell) makes it receive a frame: a DMA write through its bus port, the way real hardware does.
    /// </summary>
    public sealed class NicModel(string frame) : IMmioDevice
    {
        private ulong _rxAddress;

        public SimulatedDevice? Port { get; set; }

        public DmaFaultReason LastDma { get; private set; }

        public void MmioRead(ulong offset, Span<byte> data) => data.Clear();

        public void MmioWrite(ulong offset, ReadOnlySpan<byte> data)
        {
            if (offset == 0x08) _rxAddress = BitConverter.ToUInt64(data);
            if (offset == 0x00 && data[0] == 1) LastDma = Port!.Write(_rxAddress, System.Text.Encoding.ASCII.GetBytes(frame));
        }
    }

    public static VmmSampleResult Run(string machinePath)
    {
        // 1. The machine (a sysfs snapshot, an lspci dump or machine JSON) and the kernel rules to apply.
        Machine machine = MachineSource.Load(machinePath);
        var cmdline = KernelCommandLine.Parse(machine.CommandLine ?? "");
        var core = new IommuCore(KernelVersion.V6_12, cmdline);

        // 2. Boot: one emulated VT-d unit covering every device, groups from the kernel's pci_device_group.
        var dmar0 = new IommuHardware(name: "dmar0");
        var vtd = new VtdDriver([new VtdUnit("dmar0", [], IncludeAll: true)], f => IoPageTables.Create(f),
            PciGroupResolvers.Kernel(GroupingContext.Create(machine, cmdline, iommuActive: true)))
        {
            Hardware = new Dictionary<string, IommuHardware> { ["dmar0"] = dmar0 },
        };
        foreach (var pci in machine.Topology.Devices) core.AddDevice(IommuDevice.FromPci(pci));
        if (core.RegisterDriver(vtd) is { IsOk: false } boot) throw new InvalidOperationException(boot.ToString());

        // 3. Watch DMA faults as typed events.
        var faults = new List<DmaFaultEvent>();
        using var subscription = core.Subscribe(e => { if (e is DmaFaultEvent f) lock (faults) faults.Add(f); });

        // 4. The fabric with the VMM's memory and NIC model: an e1000 behind a PCIe-to-PCI bridge, so its DMA carries
        //    the bridge's alias requester ID; the core programmed that alias too.
        var nicAddress = PciAddress.Parse("0000:04:01.0");
        const ulong NicBar = 0xfebf_0000;
        var ram = new GuestRam(16 << 20);
        var nicModel = new NicModel("hello, guest");
        var bus = SimulatedBus.FromTopology(machine, ram, dmar0,
            bars: p => p.Address == nicAddress ? new DeviceBar(NicBar, 0x1000, nicModel) : null,
            groupOf: p => core.FindDevice(p.Address)?.Group?.Id);
        nicModel.Port = bus.Devices.Single(d => d.Address == nicAddress);

        // 5. The guest driver's view: the NIC's DMA API from the core, bound to its group's default domain.
        var nic = core.FindDevice(nicAddress)!;
        using var dma = core.DmaApiFor(nic, ram);
        const ulong RxBuffer = 0x20_0000;
        var mapped = dma.MapSingle(RxBuffer, 64, DmaDirection.FromDevice, out ulong handle);
        if (!mapped.IsOk) throw new InvalidOperationException(mapped.ToString());
        bus.CpuWrite(NicBar + 0x08, BitConverter.GetBytes(handle)); // program the receive address
        bus.CpuWrite(NicBar + 0x00, [1]);                           // ring the doorbell
        string received = ReadAscii(ram, RxBuffer, 12);

        // 6. An administrator changes the group's type (sysfs "DMA"): a new default domain replaces the old one.
        var changed = core.StoreType(nic.Group!, "DMA");
        if (!changed.IsOk) throw new InvalidOperationException(changed.ToString());
        bus.CpuWrite(NicBar + 0x00, [1]);                           // the NIC still uses the old address: refused
        DmaFaultReason old = nicModel.LastDma;
        Errno unmapOld = dma.UnmapSingle(handle, 64, DmaDirection.FromDevice).Errno;

        const ulong RxBuffer2 = 0x30_0000;
        dma.MapSingle(RxBuffer2, 64, DmaDirection.FromDevice, out ulong handle2); // the new domain works
        bus.CpuWrite(NicBar + 0x08, BitConverter.GetBytes(handle2));
        bus.CpuWrite(NicBar + 0x00, [1]);
        string after = ReadAscii(ram, RxBuffer2, 12);
        dma.UnmapSingle(handle2, 64, DmaDirection.FromDevice);

        lock (faults) return new VmmSampleResult(received, old, unmapOld, after, [.. faults]);
    }

    private static string ReadAscii(IGuestMemory memory, ulong address, int length)
    {
        var bytes = new byte[length];
        memory.Read(address, bytes);
        return System.Text.Encoding.ASCII.GetString(bytes);
    }
}
