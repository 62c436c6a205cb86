using IommuKit.Core;
using IommuKit.Grouping;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources.Acpi;
using IommuKit.Sources.Lspci;
using Xunit;

namespace IommuKit.Tests.Grouping;

/// <summary>
/// Issue 9's firmware rules on real machines paired with real tables of the same board (tests/fixtures/acpi): which
/// unit owns a device, the VT-d probe order per kernel version, root buses in ACPI namespace order, and RMRRs as
/// direct reserved regions with the relaxable rule.
/// </summary>
public class FirmwareRuleTests
{
    private static Machine Dump(string file) =>
        MachineRewrite.WithoutKernelGroups(LspciReader.Read(File.ReadAllText(Path.Combine(Fixtures.Lspci, file)), file));

    private static byte[] Table(string file) => File.ReadAllBytes(Path.Combine(Fixtures.Root, "acpi", file));

    private static DmarTable Dmar(string file) => AcpiTableReader.ReadDmar(Table(file), file);

    // The same board: ASRock H310CM-HDV, hwid 024DE286F7B5, in linuxhw/LsPCI and linuxhw/ACPI.
    private const string H310Dump = "intel-h310-coffeelake-asrock-h310cm-hdv-tkgkernel-debian-acs-noiommu.txt";
    private const string H310Dmar = "asrock-h310cm-hdv-024de286f7b5-DMAR.dat";

    private static IReadOnlyList<string> RegionsOfGroupOf(GroupingResult r, string address)
    {
        var g = r.GroupOf(PciAddress.Parse(address))!;
        var core = r.Host!.Core;
        var cg = core.Groups.Single(x => x.Id == g.Id);
        return core.GroupReservedRegions(cg).Select(x => x.ToString()).ToList();
    }

    [Fact]
    public void RmrrOfTheUsbControllerIsADirectRelaxableRegionOfItsGroup()
    {
        var m = Dump(H310Dump) with { Firmware = new FirmwareTables(Dmar(H310Dmar)), KernelRelease = "6.3.3" };
        var r = ModelGrouping.Compute(m, new GroupingOptions { ForceIommuActive = true });
        Assert.Equal("DMAR", r.Host!.Sequence.Platform.Basis);
        // RMRR 0x8f353000-0x8f59cfff EP:00:14.0; xHCI is USB, so device_rmrr_is_relaxable says relaxable.
        Assert.Contains(RegionsOfGroupOf(r, "00:14.0"), s => s.Contains("0x000000008f353000 0x000000008f59cfff direct-relaxable", StringComparison.Ordinal));
        Assert.DoesNotContain(RegionsOfGroupOf(r, "00:17.0"), s => s.Contains("0x000000008f353000", StringComparison.Ordinal));
    }

    [Fact]
    public void RmrrScopedToANetworkCardIsADirectRegionThatIsNotRelaxable()
    {
        // The HP ProLiant shape: the RMRR's scope rewritten from 00:14.0 to the NIC 03:00.0 (start bus 03, path 00.0).
        var bytes = Table(H310Dmar);
        var d = AcpiTableReader.ReadDmar(bytes, H310Dmar);
        var rmrr = d.ReservedMemory[0];
        var moved = d with { ReservedMemory = [rmrr with { Scopes = [new DmarDeviceScope(DmarScopeKind.Endpoint, 0, 3, [new DmarPathStep(0, 0)])] }] };
        var m = Dump(H310Dump) with { Firmware = new FirmwareTables(moved), KernelRelease = "6.3.3" };
        var r = ModelGrouping.Compute(m, new GroupingOptions { ForceIommuActive = true });
        var regions = RegionsOfGroupOf(r, "03:00.0");
        Assert.Contains(regions, s => s.EndsWith("0x000000008f59cfff direct", StringComparison.Ordinal));
        Assert.DoesNotContain(RegionsOfGroupOf(r, "00:14.0"), s => s.Contains("0x000000008f353000", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("6.1.0-10-amd64", "0000:00:02.0")]
    [InlineData("5.10.0-22-amd64", "0000:00:00.0")]
    public void GfxUnitOfTheDmarIsProbedFirstFromSixOneAndInBusOrderBefore(string release, string first)
    {
        // An iGPU board with the two-unit DMAR of 250 of the 370 real tables (gfx unit, then INCLUDE_PCI_ALL).
        var m = Dump("intel-h310-coffeelake-igpu-asrock-h310cm-hg4-devuan-acs-iommugroups.txt") with
        {
            Firmware = new FirmwareTables(Dmar("dell-xps-13-9380-e27420be3a8a-DMAR.dat")),
            KernelRelease = release,
        };
        var r = ModelGrouping.Compute(m, new GroupingOptions { ForceIommuActive = true });
        Assert.Equal(first, r.Host!.Sequence.Boot[0].Address.ToString());
        Assert.Equal(first, r.GroupById(0)!.Devices[0].Address.ToString());
        Assert.True(r.NumbersPredictable);
        Assert.Equal(2, r.Host.Sequence.Platform.Units.Count);
    }

    [Fact]
    public void IvrsLeavesTheRootComplexAndTheIommuFunctionWithoutAGroup()
    {
        // ASRock X300 board family: the IVRS of an X300-ITX on the X300M-STX dump (both Renoir/Cezanne AM4 APU boards).
        var ivrs = AcpiTableReader.ReadIvrs(Table("asrock-x300-itx-400bc68b0f41-IVRS.dat"), "x300-itx");
        var m = Dump("amd-renoir-apu-asrock-x300m-stx-pve-noacs-iommugroups.txt") with { Firmware = new FirmwareTables(Ivrs: ivrs) };
        var r = ModelGrouping.Compute(m, new GroupingOptions { ForceIommuActive = true });
        Assert.Equal("IVRS", r.Host!.Sequence.Platform.Basis);
        Assert.Null(r.GroupOf(PciAddress.Parse("00:00.0")));
        Assert.Null(r.GroupOf(PciAddress.Parse("00:00.2")));
        Assert.NotNull(r.GroupOf(PciAddress.Parse("00:01.0")));
        Assert.Contains("check_device", Assert.Single(r.Explain(PciAddress.Parse("00:00.0"))).Text, StringComparison.Ordinal);
        Assert.Contains("init_iommu_one_late", Assert.Single(r.Explain(PciAddress.Parse("00:00.2"))).Text, StringComparison.Ordinal);
    }

    [Fact]
    public void RootBusesAreProbedInTheAcpiNamespaceOrderTheSnapshotRecords()
    {
        // Ampere Altra: six domains; the firmware lists 000c and 000d first (the kernel's groups 0 and 1 are theirs).
        var m = Dump("arm64-ampere-altra-adlink-devplatform-multidomain.txt");
        var order = new[] { 0xc, 0xd, 0x0, 0x2, 0x4, 0x5 };
        m = m with { HostBridges = [.. order.Select((dom, i) => new HostBridgeFirmware(dom, 0, $"PNP0A08:{i:x2}", null))] };
        var seq = ProbeOrder.Of(m, kernel: new KernelVersion(5, 15));
        var domains = seq.Boot.Select(d => d.Address.Domain).Distinct().ToList();
        Assert.Equal(order, domains);
    }

    [Fact]
    public void SeveralRootBusesWithoutTheirFirmwareOrderMakeTheNumbersUnpredictable()
    {
        var m = Dump("arm64-ampere-altra-adlink-devplatform-multidomain.txt");
        var p = FirmwarePlatform.Derive(m, new KernelVersion(6, 16), unitsKnown: false);
        Assert.False(p.NumbersPredictable);
        Assert.Contains("ACPI namespace order", p.NumbersReason, StringComparison.Ordinal);
        var withOrder = FirmwarePlatform.Derive(m with { HostBridges = [new HostBridgeFirmware(0, 0, "PNP0A08:00", null)] }, new KernelVersion(6, 16), unitsKnown: false);
        Assert.True(withOrder.NumbersPredictable);
    }

    [Fact]
    public void TigerLakeThunderboltPortsEachGetAnInferredUnitRegisteredBeforeTheGfxUnit()
    {
        var m = Dump("laptop-tigerlake-tbt4-dell-xps13-9310-debian-acs-iommugroups.txt");
        var p = FirmwarePlatform.Derive(m, new KernelVersion(6, 8), unitsKnown: false);
        Assert.Equal(["inferred Thunderbolt unit (00:07.2)", "inferred Thunderbolt unit (00:07.0)", "inferred gfx unit (00:02.0)", "inferred INCLUDE_PCI_ALL unit"],
            p.Units.Select(u => u.Name));
        var seq = ProbeOrder.Of(m, kernel: new KernelVersion(6, 8));
        Assert.Equal("0000:00:07.2", seq.Boot[0].Address.ToString());
    }

    [Fact]
    public void IortLeavesDevicesOfSegmentsWithoutAnSmmuMappingWithoutAGroup()
    {
        // The iasl template IORT maps root complex segment 2 (IDs 0-0xffff) to its SMMUv3 node; no other segment has a node.
        var iort = AcpiTableReader.ReadIort(Table("iasl-template-IORT.dat"), "iort");
        var m = Dump("arm64-ampere-altra-adlink-devplatform-multidomain.txt") with { Firmware = new FirmwareTables(Iort: iort), KernelRelease = "6.16" };
        var p = FirmwarePlatform.Derive(m, new KernelVersion(6, 16), unitsKnown: false);
        Assert.Equal("IORT", p.Basis);
        foreach (var d in m.Topology.Devices)
        {
            Assert.Equal(d.Address.Domain == 2, p.UnitOf(d) >= 0);
            if (d.Address.Domain != 2) Assert.Contains("iort_node_map_id", p.NoGroupReason(d), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void IvrsAliasOnTheSameBusJoinsTheDeviceToItsAliasGroup()
    {
        // Raven laptop: the kernel puts 04:00.0 alone and 04:00.1-.7 together. An IVRS alias 04:00.0 -> 04:00.1
        // makes 04:00.1 a DMA alias of 04:00.0 (setup_aliases, pci_add_dma_alias), so pci_device_group merges them.
        var m = Dump("laptop-amd-raven-dell-latitude-5495-iommugroups.txt") with { KernelRelease = "6.8.5" };
        var before = ModelGrouping.Compute(m);
        Assert.NotSame(before.GroupOf(PciAddress.Parse("04:00.0")), before.GroupOf(PciAddress.Parse("04:00.1")));
        ushort rid = PciAddress.Parse("04:00.0").RequesterId, alias = PciAddress.Parse("04:00.1").RequesterId;
        var block = new IvhdBlock(0x11, 0, PciAddress.Parse("00:00.2").RequesterId, 0x40, 0xfd200000, 0,
            [new IvhdDeviceRange(IvhdEntryKind.Range, 0x0003, 0xfffe, 0), new IvhdDeviceRange(IvhdEntryKind.AliasSelect, rid, rid, 0, alias)], [], []);
        var ivrs = new IvrsTable(new AcpiTableHeader("IVRS", 0, 2, true, "TEST", "TEST", 0), 0, [block], []);
        var r = ModelGrouping.Compute(m with { Firmware = new FirmwareTables(Ivrs: ivrs) });
        Assert.Same(r.GroupOf(PciAddress.Parse("04:00.0")), r.GroupOf(PciAddress.Parse("04:00.1")));
        Assert.Null(r.GroupOf(PciAddress.Parse("00:00.0"))); // the IVRS range starts at 00:00.3, as Zen firmware's do
    }
}
