using IommuKit.Dma;
using Microsoft.Extensions.Time.Testing;
using IommuKit.Paging;
using IommuKit.Simulation;

namespace IommuKit.Tests.Dma;

/// <summary>A small machine for DMA tests: memory, one IOMMU, a bus, one translated domain and a manual clock.</summary>
internal sealed class DmaRig : IDisposable
{
    public const int DomainId = 7;
    private readonly List<IDisposable> _owned = [];

    public DmaRig(IoPageTableFormat format = IoPageTableFormat.X86_64Level4)
    {
        Memory = new PhysicalMemory(capBytes: 256UL << 20);
        Iommu = new IommuHardware();
        Bus = new SimulatedBus(Memory, Iommu);
        Table = IoPageTables.Create(format);
        Iovad = new IovaAllocator(4096, 1);
        Clock = new FakeTimeProvider();
    }

    public PhysicalMemory Memory { get; }
    public IommuHardware Iommu { get; }
    public SimulatedBus Bus { get; }
    public IIoPageTable Table { get; }
    public IovaAllocator Iovad { get; }
    public FakeTimeProvider Clock { get; }

    public IommuContext Context => IommuContext.Translated(DomainId, Table);

    /// <summary>A device at requester ID <paramref name="rid"/> attached to the rig's domain (or the given context).</summary>
    public SimulatedDevice AddDevice(ushort rid, IommuContext? context = null, string name = "dev")
    {
        Iommu.SetContext(rid, context ?? Context);
        return Bus.AddDevice(name, rid);
    }

    /// <summary><see cref="AddDevice"/> for tests that add devices from several threads (the bus is built single-threaded).</summary>
    public SimulatedDevice AddDeviceThreadSafe(ushort rid)
    {
        lock (_owned)
            return AddDevice(rid);
    }

    /// <summary>The DMA API over the rig's domain; Lazy mode gets a flush queue on the manual clock with one ring.</summary>
    public DmaApi Api(DmaMode mode, ulong mask = ulong.MaxValue, IReadOnlyList<IovaReservedRegion>? reserved = null,
        bool forceDac = false, int queueCount = 1)
    {
        FlushQueue? fq = mode == DmaMode.Lazy ? new FlushQueue(Iommu.InvalidatorFor(DomainId), Iovad, Clock, queueCount: queueCount) : null;
        if (fq is not null)
            _owned.Add(fq);
        var api = new DmaApi(Iommu.InvalidatorFor(DomainId), Table, Iovad, mode, mask, reserved, fq, Memory, forceDac);
        _owned.Add(api);
        return api;
    }

    public static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    public void Dispose()
    {
        foreach (var d in _owned)
            d.Dispose();
    }
}
