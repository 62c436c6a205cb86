using IommuKit.Paging;
using IommuKit.Pci;
using IommuKit.Simulation;
using IommuKit.Tests.Dma;
using Xunit;

namespace IommuKit.Tests.Simulation;

public class SimulatedBusTests
{
    private const ulong PeerBar = 0xd000_0000;

    [Fact]
    public void DeviceBehindAPcieToPciBridgeIsSeenWithTheBridgeAliasRequesterId()
    {
        using var rig = new DmaRig();
        // 05:02.0 sits behind a PCIe-to-PCI bridge whose secondary bus is 05: the IOMMU sees requester 05:00.0
        // (pci_for_each_dma_alias, spec 2.2). Only the alias has a context entry.
        var own = new PciAddress(0, 0x05, 0x02, 0);
        ushort alias = new PciAddress(0, 0x05, 0x00, 0).RequesterId;
        rig.Iommu.SetContext(alias, rig.Context);
        var dev = rig.Bus.AddDevice("legacy", alias, address: own);
        rig.Table.Map(0x10_0000, 0x20_0000, 0x1000, IommuProt.Read | IommuProt.Write);

        Assert.Equal(DmaFaultReason.None, dev.Write(0x10_0000, [1, 2, 3]));
        Assert.Equal(1u | 2u << 8 | 3u << 16, rig.Memory.ReadUInt32(0x20_0000));

        // A device that used its own ID would have no context: the alias is what makes it work.
        var direct = rig.Bus.AddDevice("same-function-own-id", own.RequesterId);
        Assert.Equal(DmaFaultReason.NoContext, direct.Write(0x10_0000, [1]));
        Assert.Equal(own.RequesterId, rig.Iommu.Faults[^1].RequesterId);
    }

    [Fact]
    public void PeerToPeerUnderASwitchWithoutAcsBypassesTheIommu()
    {
        using var rig = new DmaRig();
        var sw = rig.Bus.AddSwitch("switch", AcsFlags.None);
        // The attacker is fully blocked by its IOMMU context: isolation would forbid every DMA it makes.
        rig.Iommu.SetContext(0x0100, IommuContext.Blocked);
        var attacker = rig.Bus.AddDevice("attacker", 0x0100, sw);
        rig.Iommu.SetContext(0x0108, rig.Context);
        var victim = rig.Bus.AddDevice("victim", 0x0108, sw, barBase: PeerBar, barSize: 0x1000);

        Assert.Equal(DmaFaultReason.Blocked, attacker.Write(0x1000, [9])); // memory: the IOMMU stops it
        Assert.Equal(DmaFaultReason.None, attacker.Write(PeerBar + 0x10, [0xde, 0xad])); // peer BAR: it does not
        Assert.Equal(0xde, victim.Bar[0x10]);
        Assert.Equal(0xad, victim.Bar[0x11]);
        Span<byte> stolen = stackalloc byte[2];
        Assert.Equal(DmaFaultReason.None, attacker.Read(PeerBar + 0x10, stolen));
        Assert.Equal(0xde, stolen[0]);
        Assert.Equal(1, rig.Iommu.FaultCount); // only the memory write was ever seen
        Assert.Equal(2, sw.PeerToPeerRequests);
    }

    [Fact]
    public void PeerToPeerWithAcsRequestRedirectGoesThroughTheIommuAndFaults()
    {
        using var rig = new DmaRig();
        var sw = rig.Bus.AddSwitch("switch", AcsFlags.Required);
        rig.Iommu.SetContext(0x0100, IommuContext.Blocked);
        var attacker = rig.Bus.AddDevice("attacker", 0x0100, sw);
        var victim = rig.Bus.AddDevice("victim", 0x0108, sw, barBase: PeerBar, barSize: 0x1000);

        Assert.Equal(DmaFaultReason.Blocked, attacker.Write(PeerBar + 0x10, [0xde]));
        Assert.Equal(0, victim.Bar[0x10]);
        Assert.Equal(0, sw.PeerToPeerRequests);
        var fault = Assert.Single(rig.Iommu.Faults);
        Assert.Equal((ushort)0x0100, fault.RequesterId);
        Assert.Equal(PeerBar + 0x10, fault.Address);
    }

    [Fact]
    public void RedirectedPeerRequestReachesThePeerWhenTheIommuMapsItsBar()
    {
        using var rig = new DmaRig();
        var sw = rig.Bus.AddSwitch("switch", AcsFlags.RR);
        var nic = rig.AddDevice(0x0100);
        var gpu = rig.Bus.AddDevice("gpu", 0x0108, sw, barBase: PeerBar, barSize: 0x2000);
        // IOMMU-mediated peer-to-peer (e.g. VFIO mapping a peer BAR): the IOVA maps to the BAR's bus address.
        rig.Table.Map(0x4000_0000, PeerBar, 0x2000, IommuProt.Read | IommuProt.Write | IommuProt.Mmio);
        Assert.Equal(DmaFaultReason.None, nic.Write(0x4000_1000, [0x42]));
        Assert.Equal(0x42, gpu.Bar[0x1000]);
    }

    [Fact]
    public void DmaAcrossPhysicallyScatteredPagesLandsInEachPage()
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(0x0200);
        ulong[] phys = [0x90_3000, 0x10_0000, 0x10_1000, 0x55_0000]; // pages 1-2 contiguous, others not
        for (int i = 0; i < phys.Length; i++)
            rig.Table.Map(0x80_0000 + (ulong)i * 0x1000, phys[i], 0x1000, IommuProt.Read | IommuProt.Write);
        var data = DmaRig.Pattern(4 * 4096 - 100, 3);
        Assert.Equal(DmaFaultReason.None, dev.Write(0x80_0000 + 50, data));
        var page = new byte[4096];
        for (int i = 0; i < phys.Length; i++)
        {
            rig.Memory.Read(phys[i], page);
            int from = i == 0 ? 50 : 0;
            int srcStart = i * 4096 - 50 + from;
            int n = Math.Min(4096 - from, data.Length - srcStart);
            Assert.Equal(data.AsSpan(srcStart, n).ToArray(), page.AsSpan(from, n).ToArray());
        }
        var back = new byte[data.Length];
        Assert.Equal(DmaFaultReason.None, dev.Read(0x80_0000 + 50, back));
        Assert.Equal(data, back);
    }

    [Fact]
    public void DmaStopsAtTheFirstUnmappedPageAfterTransferringThePagesBefore()
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(0x0200);
        rig.Table.Map(0x80_0000, 0x10_0000, 0x1000, IommuProt.Write);
        var data = DmaRig.Pattern(8192, 4);
        Assert.Equal(DmaFaultReason.NotPresent, dev.Write(0x80_0000, data));
        Assert.Equal(0x80_1000UL, Assert.Single(rig.Iommu.Faults).Address);
        var page = new byte[4096];
        rig.Memory.Read(0x10_0000, page);
        Assert.Equal(data.AsSpan(0, 4096).ToArray(), page);
    }

    [Fact]
    public void DeviceMsiWriteIsRecordedAsAnInterruptAndTouchesNoMemory()
    {
        using var rig = new DmaRig();
        var dev = rig.AddDevice(0x0300);
        var got = new List<MsiMessage>();
        rig.Iommu.InterruptHandler = got.Add;
        Assert.Equal(DmaFaultReason.None, dev.SignalMsi(0xfee0_0000 | (1 << 12), 0x4041));
        var expected = new MsiMessage(0x0300, 0xfee0_1000, 0x4041);
        Assert.Equal(expected, Assert.Single(got));
        Assert.Equal(expected, Assert.Single(rig.Iommu.Interrupts));
        Assert.Equal(0, rig.Memory.AllocatedBytes);
        Assert.Equal(0, rig.Iommu.FaultCount);
    }
}
