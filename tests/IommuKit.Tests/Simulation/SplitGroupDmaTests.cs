using IommuKit.Core;
using IommuKit.Paging;
using IommuKit.Pci;
using IommuKit.Simulation;
using IommuKit.Tests.Core;
using Xunit;

namespace IommuKit.Tests.Simulation;

/// <summary>
/// What <see cref="GroupPolicy.SplitByRequesterId"/> buys and what it does not, on the emulated data path: with the
/// two functions of a multifunction device without ACS on different domains, the IOMMU keeps each function's
/// translated DMA out of the other's mappings, but a peer-to-peer write between them never reaches the IOMMU. That
/// second fact is why only one owner may hold the whole group.
/// </summary>
public class SplitGroupDmaTests
{
    private const ulong IovaA = 0x10_0000, IovaB = 0x20_0000;
    private const ulong BarOfB = 0xe000_0000;

    private sealed class SplitRig
    {
        public readonly SplitByRequesterIdTests.Rig Rig = new();
        public readonly PhysicalMemory Memory = new();
        public readonly SimulatedBus Bus;
        public readonly PcieSwitch Slot;
        public readonly SimulatedDevice A, B;
        public readonly ulong PageA, PageB;

        public SplitRig(AcsFlags slotAcs)
        {
            Bus = new SimulatedBus(Memory, Rig.Hardware);
            // The functions of one device reach each other inside the device unless ACS redirects (modelled as a switch).
            Slot = Bus.AddSwitch("01:00", slotAcs);
            A = Bus.AddDevice("01:00.0", 0x0100, Slot, address: PciAddress.Parse("01:00.0"));
            B = Bus.AddDevice("01:00.1", 0x0101, Slot, barBase: BarOfB, barSize: 4096, address: PciAddress.Parse("01:00.1"));
            Rig.Claim("01:00.0");
            var domA = Rig.NewDomain("01:00.0");
            var domB = Rig.NewDomain("01:00.1");
            Assert.True(Rig.Core.AttachDevice(domA, Rig.Dev("01:00.0"), Rig.Owner).IsOk);
            Assert.True(Rig.Core.AttachDevice(domB, Rig.Dev("01:00.1"), Rig.Owner).IsOk);
            Assert.Empty(Rig.Core.CheckInvariants());
            PageA = Memory.AllocatePages(4096);
            PageB = Memory.AllocatePages(4096);
            Assert.Equal(Errno.Ok, domA.Map(IovaA, PageA, 4096, IommuProt.Read | IommuProt.Write));
            Assert.Equal(Errno.Ok, domB.Map(IovaB, PageB, 4096, IommuProt.Read | IommuProt.Write));
            Memory.WriteUInt32(PageB, 0xb0b0b0b0);
        }
    }

    [Fact]
    public void WithUnitsOnDifferentDomainsTranslatedDmaCannotReachTheOtherUnitsMappings()
    {
        var s = new SplitRig(AcsFlags.None);
        Span<byte> buf = stackalloc byte[4];
        // B reads its own buffer through its domain.
        Assert.Equal(DmaFaultReason.None, s.B.Read(IovaB, buf));
        Assert.Equal(0xb0b0b0b0u, BitConverter.ToUInt32(buf));
        // A uses B's IOVA: A's domain has no such mapping, the IOMMU faults it with A's requester ID.
        Assert.Equal(DmaFaultReason.NotPresent, s.A.Read(IovaB, buf));
        Assert.Equal(DmaFaultReason.NotPresent, s.A.Write(IovaB, [1, 2, 3, 4]));
        Assert.Equal(0xb0b0b0b0u, s.Memory.ReadUInt32(s.PageB));
        Assert.Equal((ushort)0x0100, s.Rig.Hardware.Faults[^1].RequesterId);
        // A's own mapping works, and lands in A's page only.
        Assert.Equal(DmaFaultReason.None, s.A.Write(IovaA, [1, 2, 3, 4]));
        Assert.Equal(0x04030201u, s.Memory.ReadUInt32(s.PageA));
    }

    [Fact]
    public void WithUnitsOnDifferentDomainsAPeerToPeerWriteStillBypassesTheIommu()
    {
        var s = new SplitRig(AcsFlags.None);
        long faults = s.Rig.Hardware.FaultCount;
        // A writes to B's BAR: neither domain maps it, yet the write lands, routed inside the device.
        Assert.Equal(DmaFaultReason.None, s.A.Write(BarOfB, [0xde, 0xad, 0xbe, 0xef]));
        Assert.Equal([0xde, 0xad, 0xbe, 0xef], s.B.Bar[..4].ToArray());
        Assert.Equal(1, s.Slot.PeerToPeerRequests);
        Assert.Equal(faults, s.Rig.Hardware.FaultCount);
    }

    [Fact]
    public void WithRequestRedirectThePeerWriteReachesTheIommuAndFaults()
    {
        // The control: with ACS P2P Request Redirect the same write goes upstream and A's domain refuses it, which is
        // what would have put the functions in separate groups in the first place.
        var s = new SplitRig(AcsFlags.RR);
        Assert.Equal(DmaFaultReason.NotPresent, s.A.Write(BarOfB, [0xde, 0xad, 0xbe, 0xef]));
        Assert.Equal(0, s.Slot.PeerToPeerRequests);
        Assert.Equal([0, 0, 0, 0], s.B.Bar[..4].ToArray());
    }
}
