using IommuKit.Grouping;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;
using IommuKit.Sources.Lspci;
using Xunit;

namespace IommuKit.Tests.Grouping;

/// <summary>
/// Requester-ID units and bonds (<see cref="RequesterIdUnits"/>): derived for every group of every oracle machine and
/// real lspci dump, and checked against hand-reasoned expectations on named groups.
/// </summary>
public class RequesterIdUnitTests
{
    public static TheoryData<string> OracleMachines()
    {
        var d = new TheoryData<string>();
        foreach (var m in Fixtures.OracleMachines()) d.Add(m);
        return d;
    }

    public static TheoryData<string> Dumps()
    {
        var d = new TheoryData<string>();
        foreach (var f in Fixtures.LspciDumps()) d.Add(Path.GetFileName(f));
        return d;
    }

    private static GroupingResult Oracle(string name) => ModelGrouping.Compute(MachineSource.Load(Fixtures.OracleTarball(name)));

    private static GroupingResult Dump(string file)
    {
        var m = LspciReader.Read(File.ReadAllText(Path.Combine(Fixtures.Lspci, file)), file);
        return ModelGrouping.Compute(MachineRewrite.WithoutKernelGroups(m), new GroupingOptions { ForceIommuActive = true });
    }

    /// <summary>
    /// The structural facts every group must satisfy: units partition the members; requester IDs of different units
    /// are disjoint; alias/quirk bonds lie inside units and span each one; acs-path/multifunction bonds join different
    /// units and span the group; every bond names the device it is about.
    /// </summary>
    internal static void AssertWellFormed(GroupingResult r, ModelGroup g)
    {
        var u = r.Units(g);
        Assert.NotNull(u);
        var members = g.Devices.Select(d => d.Address).Order().ToList();
        Assert.Equal(members, u!.Units.SelectMany(x => x.Devices).Order().ToList());
        var seen = new HashSet<(int, ushort)>();
        foreach (var unit in u.Units)
        {
            Assert.NotEmpty(unit.RequesterIds);
            int seg = unit.Devices[0].Domain;
            foreach (var rid in unit.RequesterIds) Assert.True(seen.Add((seg, rid)), $"{g}: requester ID {rid:x4} in two units");
        }
        int inside = u.Bonds.Count(b => !b.BetweenUnits), between = u.Bonds.Count(b => b.BetweenUnits);
        Assert.Equal(members.Count - u.Units.Count, inside);
        Assert.Equal(u.Units.Count - 1, between);
        foreach (var b in u.Bonds)
        {
            Assert.NotNull(b.Via);
            Assert.Equal(b.Kind.SharesRequesterId(), !b.BetweenUnits);
            Assert.Equal(b.DeviceUnit, u.UnitOf(b.Device)!.Index);
            Assert.Equal(b.OtherUnit, u.UnitOf(b.Other)!.Index);
        }
    }

    [Theory]
    [MemberData(nameof(OracleMachines))]
    public void EveryGroupOfEveryOracleMachineHasUnitsAndBondsThatSpanIt(string name)
    {
        var r = Oracle(name);
        foreach (var g in r.Groups) AssertWellFormed(r, g);
    }

    [Theory]
    [MemberData(nameof(Dumps))]
    public void EveryGroupOfEveryRealDumpHasUnitsAndBondsThatSpanIt(string file)
    {
        var r = Dump(file);
        foreach (var g in r.Groups) AssertWellFormed(r, g);
    }

    [Fact]
    public void EveryGroupOfRandomTopologiesWithAliasQuirksAndBridgesHasUnitsAndBondsThatSpanIt()
    {
        int kinds = 0;
        var seen = new HashSet<BondKind>();
        for (int seed = 1; seed <= 30; seed++)
        {
            var r = ModelGrouping.Compute(ReferenceGroupingTests.RandomMachine(seed));
            foreach (var g in r.Groups)
            {
                AssertWellFormed(r, g);
                foreach (var b in r.Units(g)!.Bonds) if (seen.Add(b.Kind)) kinds++;
            }
        }
        // The generator reaches every kind of bond, or the check proves little.
        Assert.Equal(4, kinds);
    }

    private static (GroupUnits Units, ModelGroup Group) GroupWith(GroupingResult r, string member)
    {
        var g = r.GroupOf(PciAddress.Parse(member))!;
        return (r.Units(g)!, g);
    }

    private static string UnitsText(GroupUnits u) =>
        string.Join(" | ", u.Units.Select(x => string.Join(",", x.Devices.Select(d => d.ToShortString()))));

    private static string BondText(GroupBond b) => $"{b.Kind.Name()} {b.Device.ToShortString()}-{b.Other.ToShortString()} via {b.Via?.ToShortString()}";

    private static string BondsText(GroupUnits u) => string.Join("; ", u.Bonds.Select(BondText));

    [Fact]
    public void PcieToPciBridgeGroupIsOneUnitHeldByAliasBonds()
    {
        // d_pcibridge: pcie-pci-bridge 01:00.0 with four conventional devices on bus 02 and a pci-bridge 02:04.0 with
        // 03:01.0 behind it: every request reaches the IOMMU as bus 02 devfn 0 (or via 02:04.0), one unit.
        var (u, _) = GroupWith(Oracle("d_pcibridge"), "01:00.0");
        Assert.Equal("01:00.0,02:01.0,02:02.0,02:03.0,02:04.0,03:01.0", UnitsText(u));
        Assert.Equal("alias 02:01.0-01:00.0 via 01:00.0; alias 02:02.0-01:00.0 via 01:00.0; alias 02:03.0-01:00.0 via 01:00.0; " +
            "alias 02:04.0-01:00.0 via 01:00.0; alias 03:01.0-02:04.0 via 02:04.0", BondsText(u));
        Assert.Contains((ushort)0x0200, u.Units[0].RequesterIds);
    }

    [Fact]
    public void ConventionalBridgeOnTheRootBusOwnsTheRequestsOfItsDevices()
    {
        // d_pcibridge: the DMI-to-PCI bridge 00:1e.0 forwards conventional requests with its own ID.
        var (u, _) = GroupWith(Oracle("d_pcibridge"), "00:1e.0");
        Assert.Equal("00:1e.0,06:01.0,06:02.0", UnitsText(u));
        Assert.All(u.Bonds, b => Assert.Equal(BondKind.Alias, b.Kind));
    }

    [Fact]
    public void PcieEndpointOnAConventionalBusIsStillAnAliasOfTheBridge()
    {
        // h_mixed_more: behind pcie-pci-bridge 0c:00.0: e1000e 0d:01.0 (PCIe capability, conventional bus), pci-bridge
        // 0d:02.0 and e1000 0e:01.0 below it: one unit, 0e:01.0 reaches the IOMMU through 0d:02.0.
        var (u, _) = GroupWith(Oracle("h_mixed_more"), "0c:00.0");
        Assert.Equal("0c:00.0,0d:01.0,0d:02.0,0e:01.0", UnitsText(u));
        Assert.Equal("alias 0d:01.0-0c:00.0 via 0c:00.0; alias 0d:02.0-0c:00.0 via 0c:00.0; alias 0e:01.0-0d:02.0 via 0d:02.0", BondsText(u));
    }

    [Fact]
    public void NonAcsSwitchGroupIsOneUnitPerDeviceHeldByAcsPathBonds()
    {
        // c_switch: root port 00:07.0 without ACS, a switch (06:00.0 up, 07:00.0/07:01.0 down) and endpoints 08:00.0,
        // 09:00.0: six requester IDs, six units, joined only because peer-to-peer is not redirected.
        var (u, _) = GroupWith(Oracle("c_switch"), "00:07.0");
        Assert.Equal("00:07.0 | 06:00.0 | 07:00.0 | 07:01.0 | 08:00.0 | 09:00.0", UnitsText(u));
        Assert.All(u.Bonds, b => Assert.Equal(BondKind.AcsPath, b.Kind));
        Assert.Contains("acs-path 06:00.0-00:07.0 via 00:07.0", BondsText(u));
    }

    [Fact]
    public void DownstreamPortWithoutAcsBondsItsMultifunctionEndpointByAcsPath()
    {
        var (u, _) = GroupWith(Oracle("c_switch"), "02:02.0");
        Assert.Equal("02:02.0 | 05:00.0 | 05:00.1", UnitsText(u));
        Assert.Equal("acs-path 05:00.0-02:02.0 via 02:02.0; acs-path 05:00.1-02:02.0 via 02:02.0", BondsText(u));
    }

    [Fact]
    public void SubSwitchBelowAPortWithoutAcsNamesThatPort()
    {
        // h_mixed_more: no ACS at the first downstream port 06:00.0: the sub-switch and its endpoints join it.
        var (u, _) = GroupWith(Oracle("h_mixed_more"), "06:00.0");
        Assert.Equal(6, u.Units.Count);
        Assert.All(u.Bonds, b => Assert.Equal(BondKind.AcsPath, b.Kind));
        Assert.Contains("acs-path 07:00.0-06:00.0 via 06:00.0", BondsText(u));
    }

    [Fact]
    public void RootPortFunctionWithoutAcsBondsItsEndpointByAcsPath()
    {
        // h_mixed_more: 00:06.1 has ACS disabled: its endpoint 02:00.0 joins it; distinct requester IDs.
        var (u, _) = GroupWith(Oracle("h_mixed_more"), "00:06.1");
        Assert.Equal("00:06.1 | 02:00.0", UnitsText(u));
        Assert.Equal("acs-path 02:00.0-00:06.1 via 00:06.1", BondsText(u));
    }

    [Fact]
    public void MultifunctionEndpointWithoutAcsIsOneUnitPerFunction()
    {
        // b_rootports: 06:00.0/06:00.1, a multifunction endpoint without ACS below an isolated port.
        var (u, _) = GroupWith(Oracle("b_rootports"), "06:00.0");
        Assert.Equal("06:00.0 | 06:00.1", UnitsText(u));
        Assert.Equal("multifunction 06:00.1-06:00.0 via 06:00.1", BondsText(u));
    }

    [Fact]
    public void ChipsetFunctionsWithoutAcsAreMultifunctionBonds()
    {
        // The q35 ICH9 LPC/SATA/SMBus functions 00:1f.0/.2/.3.
        var (u, _) = GroupWith(Oracle("c_switch"), "00:1f.0");
        Assert.Equal("00:1f.0 | 00:1f.2 | 00:1f.3", UnitsText(u));
        Assert.All(u.Bonds, b => Assert.Equal(BondKind.Multifunction, b.Kind));
    }

    [Fact]
    public void MultifunctionRootPortSlotWithoutAcsMixesMultifunctionAndAcsPath()
    {
        // h_k612_config_acs_mf: both functions of root-port slot 00:0a lack ACS: the functions bond as multifunction,
        // each endpoint bonds to its port by acs-path.
        var (u, _) = GroupWith(Oracle("h_k612_config_acs_mf"), "00:0a.0");
        Assert.Equal("00:0a.0 | 00:0a.1 | 06:00.0 | 07:00.0", UnitsText(u));
        Assert.Equal("multifunction 00:0a.1-00:0a.0 via 00:0a.1; acs-path 06:00.0-00:0a.0 via 00:0a.0; acs-path 07:00.0-00:0a.1 via 00:0a.1", BondsText(u));
    }

    [Fact]
    public void PcieToPciBridgeBelowAPortWithoutAcsMixesAliasAndAcsPath()
    {
        // Port 00:01.0 lacks ACS (every fourth synthetic port); behind it a PCIe-to-PCI bridge with four conventional
        // devices: two units, {port} and {bridge + devices}, one acs-path bond between them and alias bonds inside.
        var r = ModelGrouping.Compute(SyntheticMachines.Build(40));
        var (u, g) = GroupWith(r, "00:01.0");
        AssertWellFormed(r, g);
        var bridgeUnit = u.UnitOf(PciAddress.Parse("01:00.0"))!;
        Assert.Equal("01:00.0,02:01.0,02:02.0,02:03.0,02:04.0", string.Join(",", bridgeUnit.Devices.Select(d => d.ToShortString())));
        Assert.Equal(["alias", "alias", "alias", "alias"], u.Bonds.Where(b => b.DeviceUnit == bridgeUnit.Index && !b.BetweenUnits).Select(b => b.Kind.Name()));
        Assert.Equal("acs-path 01:00.0-00:01.0 via 00:01.0", BondText(u.BondsOfUnit(bridgeUnit.Index).Single()));
        // The slot's other function without ACS (00:01.4, port 12) joins too: all three kinds in one group.
        Assert.Contains(u.Bonds, b => b.Kind == BondKind.Multifunction);
    }

    [Fact]
    public void DmaAliasQuirkPutsBothFunctionsInOneUnitWithAQuirkBond()
    {
        // Marvell 9230 issues DMA as function 1 too (quirk_dma_func1_alias): 01:00.0 and a real 01:00.1 share 0x0101.
        var r = T.New().RootPort("00:1c.0", sec: 1, acs: T.AcsOn)
            .Endpoint("01:00.0", vendor: 0x1b4b, device: 0x9230, mf: true, acs: T.AcsOn).Endpoint("01:00.1", vendor: T.Other, acs: T.AcsOn).Group();
        var (u, g) = GroupWith(r, "01:00.0");
        AssertWellFormed(r, g);
        Assert.Equal("01:00.0,01:00.1", UnitsText(u));
        Assert.Equal(BondKind.Quirk, u.Bonds.Single().Kind);
        Assert.Equal(PciAddress.Parse("01:00.0"), u.Bonds.Single().Via);
    }

    [Fact]
    public void VmdDevicesAreAliasesOfTheVmdController()
    {
        // The Tiger Lake laptop with VMD: devices in PCI domain 10000 issue DMA as the VMD function (pci_real_dma_dev).
        var r = Dump("laptop-tigerlake-tbt4-vmd-dell-xps13-9310-nonroot.txt");
        var vmdChild = r.Machine.Topology.Devices.First(d => d.Address.Domain >= 0x10000 && r.GroupOf(d.Address) is not null);
        var g = r.GroupOf(vmdChild.Address)!;
        var u = r.Units(g)!;
        var unit = u.UnitOf(vmdChild.Address)!;
        Assert.Contains(unit.Devices, a => a.Domain == 0);
        Assert.Contains(u.BondsOf(vmdChild.Address), b => b.Kind == BondKind.Alias);
    }

    [Fact]
    public void AsmediaBridgeHidingItsPcieCapabilityIsAnAliasOfItsDevices()
    {
        // An ASM1083 PCIe-to-PCI bridge that hides its PCIe capability (PCI_DEV_FLAGS_PCIE_BRIDGE_ALIAS): the device
        // behind it reaches the IOMMU as bus 02 devfn 0, the bridge owns its requests: one unit.
        var r = T.New().RootPort("00:1c.0", sec: 1, sub: 2, acs: T.AcsOn)
            .Dev("01:00.0", 0x1b21, 0x1080, PcieType.None, sec: 2).Conventional("02:00.0").Group();
        var (u, g) = GroupWith(r, "02:00.0");
        AssertWellFormed(r, g);
        Assert.Equal("01:00.0,02:00.0", UnitsText(u));
        Assert.Equal("alias 02:00.0-01:00.0 via 01:00.0", BondsText(u));
    }
}
