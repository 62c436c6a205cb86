using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Host;

/// <summary>
/// The one slot-name lookup (<see cref="PciSlots.NameOf"/>), <see cref="HostAnalysis.Slots"/> and
/// <see cref="HostAnalysis.RelatedFunctions"/> over captures and real dumps.
/// </summary>
public class PciSlotsTests
{
    private static Machine Dump(string name) => MachineSource.Load(Path.Combine(Fixtures.Lspci, name + ".txt"));
    private static PciDevice At(Machine m, string a) => m.Topology.Find(PciAddress.Parse(a))!;

    [Fact]
    public void ACardAndItsPortCarryTheSysfsSlotName()
    {
        // QEMU's pcie-root-port 00:07.0 registers pciehp slot "0-2" (sys/bus/pci/slots/0-2/address = 0000:02:00).
        var m = MachineSource.Load(Fixtures.OracleTarball("h_k612_sriov_nvme"));
        Assert.Equal("0000:02:00", m.Slots["0-2"]);
        Assert.Equal("0-2", PciSlots.NameOf(m, At(m, "00:07.0")));
        Assert.Equal("0-2", PciSlots.NameOf(m, At(m, "02:00.0")));
        Assert.Null(PciSlots.NameOf(m, At(m, "00:1f.2")));
    }

    [Fact]
    public void ARecordedNameWinsOverThePortsPhysicalSlotNumber()
    {
        // XPS 15 9560: 00:1c.1's Slot Capabilities say #5, but the kernel named its slot "1" (lspci: Physical Slot: 1).
        var m = Dump("laptop-kabylake-h-alpineridge-nvidia-dell-xps15-9560-debian-iommugroups");
        Assert.Equal(5, At(m, "00:1c.1").Facts.Pcie!.PhysicalSlot);
        Assert.Equal("1", PciSlots.NameOf(m, At(m, "00:1c.1")));
        Assert.Equal("1", PciSlots.NameOf(m, At(m, "03:00.0")));
        // Without a recorded name, the number is marked as the capability's: #N, for the port and the card in it.
        Assert.Equal("#1", PciSlots.NameOf(m, At(m, "00:01.0")));
        Assert.Equal("#1", PciSlots.NameOf(m, At(m, "01:00.0")));
    }

    [Fact]
    public void ABusWideSlotAddressNamesEveryDeviceOnThatBus()
    {
        // address_read_file prints "dddd:bb" for a slot that covers the whole bus.
        var m = MachineSource.Load(Fixtures.OracleTarball("h_k612_sriov_nvme"));
        var bus = m with { Slots = new Dictionary<string, string> { ["7"] = "0000:01" } };
        Assert.Equal("7", PciSlots.NameOf(bus, At(bus, "01:00.0")));
        Assert.Equal("7", PciSlots.NameOf(bus, At(bus, "00:06.0")));
    }

    [Fact]
    public void SlotsForACardRankingMatchesOneWhatIfPerSlot()
    {
        var m = Dump("intel-z390-coffeelake-asrock-pg-sli-iommugroups");
        var card = PciAddress.Parse("01:00.0");
        var r = HostAnalysis.Slots(HostAnalysis.Analyze(m), card);
        Assert.True(r.Isolatable);
        Assert.True(r.Slots[0].Current);
        foreach (var s in r.Slots.Where(s => !s.Current))
        {
            var w = HostAnalysis.WhatIf(m, new WhatIfRequest(MoveCard: card, MovePort: s.Port.Address));
            var g = w.GroupsAfter.Single(x => x.Contains(w.AddressMap![card]));
            Assert.Equal(g.Devices.Select(d => d.Address), s.CardGroup!.Devices.Select(d => d.Address));
            Assert.Equal(SlotFit.Alone, s.Fit);
        }
    }

    [Fact]
    public void AnEmptySlotCanReceiveACard()
    {
        // 00:1d.6 is an empty hot-plug root port: no bus below it in the topology, only its bus registers.
        var m = Dump("laptop-kabylake-h-alpineridge-nvidia-dell-xps15-9560-debian-iommugroups");
        var w = HostAnalysis.WhatIf(m, new WhatIfRequest(MoveCard: PciAddress.Parse("01:00.0"), MovePort: PciAddress.Parse("00:1d.6")));
        Assert.Equal(PciAddress.Parse("06:00.0"), w.AddressMap![PciAddress.Parse("01:00.0")]);
        var g = w.GroupsAfter.Single(x => x.Contains(PciAddress.Parse("06:00.0")));
        Assert.Equal([PciAddress.Parse("06:00.0")], g.Devices.Select(d => d.Address));
        Assert.Equal(WhatIfOutcome.Changes, w.Outcome);
    }

    [Fact]
    public void RelatedFunctionsOfAGroupAreTheVerdictsRelatedFunctions()
    {
        var report = HostAnalysis.Analyze(Dump("intel-z690-alderlake-asrock-z690-pro-rs-debian-acs-iommugroups"));
        var gpu = PciAddress.Parse("03:00.0");
        var related = HostAnalysis.RelatedFunctions(report, report.GroupOf(gpu)!);
        var f = Assert.Single(related);
        Assert.Equal(PciAddress.Parse("03:00.1"), f.Address);
        Assert.Equal(16, f.Group);
        Assert.Equal(HostAnalysis.VfioCheck(report, gpu, null).Related, related);
        // A group of built-in functions has none: on a root bus one device number is not one card.
        Assert.Empty(HostAnalysis.RelatedFunctions(report, report.GroupOf(PciAddress.Parse("00:1f.3"))!));
    }
}
