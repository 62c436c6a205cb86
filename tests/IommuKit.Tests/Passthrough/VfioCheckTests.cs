using IommuKit.Passthrough;
using IommuKit.Pci;
using Xunit;

namespace IommuKit.Tests.Passthrough;

public class VfioCheckTests
{
    private static readonly PciAddress RootPort = PciAddress.Parse("00:1c.0");
    private static readonly PciAddress Gpu = PciAddress.Parse("01:00.0");
    private static readonly PciAddress Audio = PciAddress.Parse("01:00.1");
    private static readonly PciAddress Sata = PciAddress.Parse("00:1f.2");

    /// <summary>A root port (bridge) with a two-function GPU below it, plus a SATA controller; drivers as given.</summary>
    private static Machine MakeMachine(string kernel, string? portDriver, string? gpuDriver, string? audioDriver,
        string? sataDriver = "ahci", string? cmdline = "intel_iommu=on", IReadOnlyList<IommuUnit>? units = null)
    {
        var b = new PciTopologyBuilder();
        b.Add(new PciDeviceFacts { Address = RootPort, VendorId = 0x8086, DeviceId = 0xa110, ClassCode = 0x060400, HeaderLayout = 1, BridgeBuses = (0, 1, 1), Driver = portDriver });
        b.Add(new PciDeviceFacts { Address = Sata, VendorId = 0x8086, DeviceId = 0x2922, ClassCode = 0x010601, Driver = sataDriver });
        b.Add(new PciDeviceFacts { Address = Gpu, VendorId = 0x10de, DeviceId = 0x1b80, ClassCode = 0x030000, MultifunctionBit = true, Driver = gpuDriver });
        b.Add(new PciDeviceFacts { Address = Audio, VendorId = 0x10de, DeviceId = 0x10f0, ClassCode = 0x040300, Driver = audioDriver });
        return new Machine { Topology = b.Build(), Origin = "test", KernelRelease = kernel, CommandLine = cmdline, IommuUnits = units ?? [] };
    }

    private static readonly ReservedRegionText Msi = new(0xfee00000, 0xfeefffff, "msi");

    private static VfioVerdict Check(Machine m, IReadOnlyList<ReservedRegionText>? regions = null, PciAddress? target = null, params PciAddress[] members) =>
        VfioCheck.Evaluate(m, new PassthroughGroup(7, members.Length > 0 ? members : [RootPort, Gpu, Audio], regions ?? [Msi]), target ?? Gpu);

    [Fact]
    public void GroupWithEveryEndpointOnVfioAndThePortOnPcieportIsViable()
    {
        var v = Check(MakeMachine("6.1.0-56-amd64", "pcieport", "vfio-pci", "vfio-pci"));
        Assert.True(v.Viable);
        Assert.Equal("dma-ownership", v.Rule);
        Assert.All(v.Devices, d => Assert.True(d.Ok));
        Assert.Empty(v.Fixes);
    }

    [Fact]
    public void CompanionFunctionWithADmaApiDriverBlocksAndBindingIsAStepNotAFix()
    {
        var v = Check(MakeMachine("6.12.0", "pcieport", "vfio-pci", "snd_hda_intel"));
        Assert.False(v.Viable);
        var audio = v.Devices.Single(d => d.Address == Audio);
        Assert.False(audio.Ok);
        Assert.Contains("snd_hda_intel uses the DMA API", audio.Reason);
        // Binding is the Host layer's plan (HostAnalysis.VfioCheck steps), never a "fix" of the group.
        Assert.Empty(v.Fixes);
    }

    [Fact]
    public void DriverlessAndPciStubDevicesAreOkUnderBothRules()
    {
        foreach (var kernel in new[] { "5.15.0-100-generic", "6.1.0" })
        {
            var v = Check(MakeMachine(kernel, "pcieport", null, "pci-stub"));
            Assert.True(v.Viable, kernel);
        }
    }

    [Fact]
    public void BridgeWithAnOrdinaryDriverPassesTheOldViableRuleButBlocksDmaOwnership()
    {
        // vfio_dev_driver_allowed (before 5.19) lets any non-type-0 header through; pci_dma_configure (5.19+) counts
        // every driver without driver_managed_dma, shpchp included.
        var old = Check(MakeMachine("5.15.0", "shpchp", "vfio-pci", "vfio-pci"));
        Assert.Equal("viable-group", old.Rule);
        Assert.True(old.Viable);
        var now = Check(MakeMachine("5.19.0", "shpchp", "vfio-pci", "vfio-pci"));
        Assert.Equal("dma-ownership", now.Rule);
        Assert.False(now.Viable);
        Assert.False(now.Devices.Single(d => d.Address == RootPort).Ok);
    }

    [Fact]
    public void ADeviceOfAnotherSlotBlocksUnderBothRulesAndIsNotAdvisedToBeBound()
    {
        // The Host layer calls this group shares-group and refuses to bind the other slot's device.
        foreach (var kernel in new[] { "5.15.0", "6.1.0" })
        {
            var v = Check(MakeMachine(kernel, "pcieport", "vfio-pci", "vfio-pci"), target: Gpu, members: [RootPort, Gpu, Audio, Sata]);
            Assert.False(v.Devices.Single(d => d.Address == Sata).Ok);
            Assert.DoesNotContain(v.Fixes, f => f.Contains("bind", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void PcieportOnAnEndpointHeaderIsNotAllowedByTheOldRule()
    {
        // Before 5.19 only pci-stub was on the allow list; pcieport passed only because ports have type-1 headers.
        var m = MakeMachine("5.4.0", "pcieport", "pcieport", "vfio-pci");
        var v = Check(m);
        Assert.False(v.Devices.Single(d => d.Address == Gpu).Ok);
        Assert.True(v.Devices.Single(d => d.Address == RootPort).Ok);
    }

    [Fact]
    public void VfioVariantDriversCountAsVfio()
    {
        Assert.True(VfioCheck.IsVfioDriver("vfio-pci"));
        Assert.True(VfioCheck.IsVfioDriver("mlx5_vfio_pci"));
        Assert.True(VfioCheck.IsVfioDriver("nvgrace-gpu-vfio-pci"));
        Assert.False(VfioCheck.IsVfioDriver("nvidia"));
        Assert.False(VfioCheck.IsVfioDriver("pci-stub"));
    }

    [Fact]
    public void DirectRegionMakesTheGroupNotViableEvenWithEveryDeviceOnVfio()
    {
        var m = MakeMachine("6.1.0", "pcieport", "vfio-pci", "vfio-pci");
        var v = Check(m, [new ReservedRegionText(0x7a000000, 0x7a1fffff, "direct"), Msi]);
        Assert.False(v.Viable);
        Assert.All(v.Devices, d => Assert.True(d.Ok));
        Assert.Single(v.Problems);
        Assert.Contains("0x7a000000-0x7a1fffff", v.Problems[0]);
    }

    [Fact]
    public void DirectRelaxableRegionIsOnlyANote()
    {
        var v = Check(MakeMachine("6.1.0", "pcieport", "vfio-pci", "vfio-pci"), [new ReservedRegionText(0, 0xffffff, "direct-relaxable"), Msi]);
        Assert.True(v.Viable);
        Assert.Contains(v.Notes, n => n.StartsWith("direct-relaxable region 0x0-0xffffff"));
    }

    [Fact]
    public void UnknownRegionsAreSaidNotAssumed()
    {
        var m = MakeMachine("6.1.0", "pcieport", "vfio-pci", "vfio-pci");
        var v = VfioCheck.Evaluate(m, new PassthroughGroup(7, [RootPort, Gpu, Audio], null));
        Assert.True(v.Viable);
        Assert.Contains(v.Notes, n => n.Contains("direct (RMRR) regions could not be checked"));
    }

    [Fact]
    public void UnitWithoutInterruptRemappingBlocksUnlessUnsafeInterruptsAreAllowed()
    {
        var noIr = new IommuUnit("dmar0", IommuKind.Intel, [], new Dictionary<string, string> { ["intel-iommu/ecap"] = "f02052" }); // bit 3 (IR) clear
        var blocked = Check(MakeMachine("6.1.0", "pcieport", "vfio-pci", "vfio-pci", units: [noIr]));
        Assert.False(blocked.Viable);
        Assert.Contains(blocked.Problems, p => p.Contains("dmar0 has no interrupt remapping"));

        var allowed = Check(MakeMachine("6.1.0", "pcieport", "vfio-pci", "vfio-pci",
            cmdline: "intel_iommu=on vfio_iommu_type1.allow_unsafe_interrupts=1", units: [noIr]));
        Assert.True(allowed.Viable);
        Assert.Contains(allowed.Notes, n => n.Contains("allow_unsafe_interrupts"));

        var irOn = new IommuUnit("dmar0", IommuKind.Intel, [], new Dictionary<string, string> { ["intel-iommu/ecap"] = "f0205a" }); // bit 3 set
        Assert.True(Check(MakeMachine("6.1.0", "pcieport", "vfio-pci", "vfio-pci", units: [irOn])).Viable);
    }

    [Fact]
    public void IntremapOffOnTheCommandLineIsAProblem()
    {
        var v = Check(MakeMachine("6.1.0", "pcieport", "vfio-pci", "vfio-pci", cmdline: "intel_iommu=on intremap=off"));
        Assert.False(v.Viable);
        Assert.Contains(v.Problems, p => p.Contains("intremap=off"));
    }

    [Fact]
    public void HostLosesTheBootStorageControllerWhenItSharesTheGroup()
    {
        var m = MakeMachine("6.1.0", "pcieport", "vfio-pci", "vfio-pci");
        var v = Check(m, members: [RootPort, Gpu, Audio, Sata]);
        Assert.False(v.Viable);
        Assert.Contains(v.HostLosses, l => l.Address == Sata && l.What.StartsWith("storage controller (driver ahci)"));
    }

    [Fact]
    public void ConsoleVgaIsALossEvenWithoutADriverButAVfioBoundOneIsNot()
    {
        var m = MakeMachine("6.1.0", "pcieport", null, "vfio-pci");
        var gpu = m.Topology[Gpu];
        Assert.Contains("console display", VfioCheck.HostLossOf(gpu)!.What);
        var bound = MakeMachine("6.1.0", "pcieport", "vfio-pci", "vfio-pci");
        Assert.Null(VfioCheck.HostLossOf(bound.Topology[Gpu]));
    }

    [Fact]
    public void UnknownKernelVersionAppliesTheCurrentRuleAndSaysSo()
    {
        var m = MakeMachine("weird", "shpchp", "vfio-pci", "vfio-pci");
        var v = Check(m);
        Assert.Null(v.Kernel);
        Assert.Equal("dma-ownership", v.Rule);
        Assert.Contains(v.Notes, n => n.StartsWith("kernel version unknown"));
    }

    [Fact]
    public void MemberMissingFromTheTopologyIsBadInput()
    {
        var m = MakeMachine("6.1.0", "pcieport", "vfio-pci", "vfio-pci");
        Assert.Throws<InputException>(() => VfioCheck.Evaluate(m, new PassthroughGroup(1, [PciAddress.Parse("05:00.0")], [])));
    }
}
