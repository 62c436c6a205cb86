using IommuKit.Grouping;
using IommuKit.Pci;
using IommuKit.Simulation;
using IommuKit.Tests.Grouping;
using Xunit;

namespace IommuKit.Tests.Simulation;

/// <summary>The bus built from a machine: per-port ACS, DMA aliases, and device models the caller implements.</summary>
public class BusFromTopologyTests
{
    private const ulong VictimBar = 0xd000_0000;

    /// <summary>Root port 00:1c.0 → switch (upstream 01:00.0) → downstream ports 02:00.0 and 02:01.0 → 03:00.0 and 04:00.0.</summary>
    private static Machine Switch((AcsFlags, AcsFlags)? portAcs) =>
        T.New().RootPort("00:1c.0", sec: 1, sub: 4, acs: T.AcsOn)
            .Dev("01:00.0", T.Other, 0x8001, PcieType.Upstream, portAcs, sec: 2, sub: 4)
            .Dev("02:00.0", T.Other, 0x8002, PcieType.Downstream, portAcs, sec: 3)
            .Dev("02:01.0", T.Other, 0x8002, PcieType.Downstream, portAcs, sec: 4)
            .Endpoint("03:00.0").Endpoint("04:00.0").Build();

    private sealed class Registers : IMmioDevice
    {
        public readonly byte[] Regs = new byte[0x1000];
        public int Writes;

        public void MmioRead(ulong offset, Span<byte> data) => Regs.AsSpan((int)offset, data.Length).CopyTo(data);

        public void MmioWrite(ulong offset, ReadOnlySpan<byte> data)
        {
            Interlocked.Increment(ref Writes);
            data.CopyTo(Regs.AsSpan((int)offset));
        }
    }

    private static (SimulatedBus Bus, IommuHardware Hw, Registers Victim) BusOf(Machine m)
    {
        var hw = new IommuHardware();
        var victim = new Registers();
        var bus = SimulatedBus.FromTopology(m, new PhysicalMemory(capBytes: 1 << 20), hw,
            p => p.Address.Bus == 4 ? new DeviceBar(VictimBar, 0x1000, victim) : null);
        return (bus, hw, victim);
    }

    [Fact]
    public void PeerToPeerBetweenDevicesOfDifferentGroupsGoesToTheIommuAndFaults()
    {
        var m = Switch(T.AcsOn);
        var (bus, hw, victim) = BusOf(m);
        var attacker = bus.Devices.Single(d => d.Name == "0000:03:00.0");
        Assert.Equal(AcsFlags.Required, attacker.PortAcs & AcsFlags.Required);
        Assert.Equal(DmaFaultReason.NoContext, attacker.Write(VictimBar + 0x10, [0xde, 0xad]));
        Assert.Equal(0, victim.Writes);
        Assert.Equal(VictimBar + 0x10, hw.Faults[^1].Address);
    }

    [Fact]
    public void PeerToPeerBetweenDevicesOfDifferentGroupsBehindPortsWithoutAcsIsCaught()
    {
        // pci_device_group gives each downstream port without ACS its own group (with its endpoint), yet the switch
        // routes 03:00.0's write to 04:00.0 directly: the request never reaches the IOMMU, and the bus catches it.
        var m = Switch(null);
        var groups = IommuKit.Host.ModelGrouping.Compute(m, new GroupingOptions());
        Assert.False(groups.Together("03:00.0", "04:00.0"));
        var hw = new IommuHardware();
        var victim = new Registers();
        var bus = SimulatedBus.FromTopology(m, new PhysicalMemory(capBytes: 1 << 20), hw,
            p => p.Address.Bus == 4 ? new DeviceBar(VictimBar, 0x1000, victim) : null,
            p => groups.GroupOf(p.Address)?.Id);
        var caught = new List<IsolationViolation>();
        bus.IsolationViolationHandler = caught.Add;
        var attacker = bus.Devices.Single(d => d.Name == "0000:03:00.0");
        Assert.Equal(DmaFaultReason.None, attacker.Write(VictimBar + 0x10, [0xde, 0xad]));
        Assert.Equal(0xde, victim.Regs[0x10]);                     // the fabric delivered it
        Assert.Equal(1, bus.CrossGroupPeerRequests);                // and the bus noticed
        var v = Assert.Single(caught);
        Assert.Equal(("0000:03:00.0", "0000:04:00.0", VictimBar + 0x10), (v.From.Name, v.To.Name, v.Address));
        Assert.Empty(hw.Faults);
    }

    [Fact]
    public void TheCpuReachesACallersDeviceModelThroughItsBar()
    {
        var (bus, _, victim) = BusOf(Switch(T.AcsOn));
        bus.CpuWrite(VictimBar + 4, [1, 2, 3, 4]);
        Span<byte> back = stackalloc byte[4];
        bus.CpuRead(VictimBar + 4, back);
        Assert.Equal([1, 2, 3, 4], back.ToArray());
        Assert.Equal(1, victim.Writes);
    }

    [Fact]
    public void ADeviceBehindAPcieToPciBridgeGetsTheBridgeAliasAsItsRequesterId()
    {
        var m = T.New().RootPort("00:1c.0", sec: 5, sub: 6, acs: T.AcsOn)
            .Dev("05:00.0", T.Qemu, 0x000e, PcieType.PciBridge, sec: 6).Conventional("06:02.0").Build();
        var bus = SimulatedBus.FromTopology(m, new PhysicalMemory(capBytes: 1 << 20), new IommuHardware());
        Assert.Equal(new PciAddress(0, 6, 0, 0).RequesterId, Assert.Single(bus.Devices).RequesterId);
    }
}
