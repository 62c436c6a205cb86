using IommuKit.Core;
using IommuKit.Drivers;
using IommuKit.Pci;
using Xunit;
using static IommuKit.Tests.Core.CoreRig;

namespace IommuKit.Tests.Core;

public class DefaultDomainTests
{
    [Theory]
    [InlineData("", IommuDomainType.DmaFq)]
    [InlineData("iommu.passthrough=1", IommuDomainType.Identity)]
    [InlineData("iommu.passthrough=on", IommuDomainType.Identity)]
    [InlineData("iommu.passthrough=0", IommuDomainType.DmaFq)]
    [InlineData("iommu.passthrough=bogus", IommuDomainType.DmaFq)]
    [InlineData("iommu=pt", IommuDomainType.Identity)]
    [InlineData("iommu=nopt", IommuDomainType.DmaFq)]
    [InlineData("iommu=pt iommu.passthrough=0", IommuDomainType.DmaFq)]
    [InlineData("iommu.passthrough=0 iommu=soft,pt", IommuDomainType.Identity)]
    [InlineData("iommu.strict=1", IommuDomainType.Dma)]
    [InlineData("iommu.strict=1 iommu.strict=0", IommuDomainType.DmaFq)]
    [InlineData("iommu=pt iommu.strict=1", IommuDomainType.Identity)]
    public void GlobalDefaultFollowsTheCommandLineOverTheLazyBuildDefault(string cmdline, IommuDomainType expected) =>
        Assert.Equal(expected, NewCore(cmdline).DefaultDomainType);

    [Fact]
    public void StrictBuildGivesDmaAndPassthroughBuildGivesIdentity()
    {
        Assert.Equal(IommuDomainType.Dma, NewCore(boot: new IommuBootConfig(IommuBuildDefault.Strict)).DefaultDomainType);
        Assert.Equal(IommuDomainType.Identity, NewCore(boot: new IommuBootConfig(IommuBuildDefault.Passthrough)).DefaultDomainType);
        Assert.Equal(IommuDomainType.DmaFq, NewCore("iommu.strict=0", boot: new IommuBootConfig(IommuBuildDefault.Strict)).DefaultDomainType);
    }

    [Fact]
    public void MemoryEncryptionOverridesOnlyABuildDefaultPassthrough()
    {
        var enc = new IommuBootConfig(IommuBuildDefault.Passthrough, MemoryEncryption: true);
        var c = NewCore(boot: enc);
        Assert.Equal(IommuDomainType.DmaFq, c.DefaultDomainType);
        Assert.Contains("iommu: Memory encryption detected - Disabling default IOMMU Passthrough", c.Log);
        Assert.Equal(IommuDomainType.Identity, NewCore("iommu.passthrough=1", boot: enc).DefaultDomainType);
    }

    [Fact]
    public void BootLogStatesTheTypeAndPolicyLikeTheKernel()
    {
        var c = NewCore("iommu.strict=1");
        Assert.Contains("iommu: Default domain type: Translated", c.Log);
        Assert.Contains("iommu: DMA domain TLB invalidation policy: strict mode (set via kernel command line)", c.Log);
        Assert.Contains("iommu: Default domain type: Passthrough (set via kernel command line)", NewCore("iommu=pt").Log);
    }

    [Fact]
    public void DriverForcedStrictTurnsALazyDefaultIntoDma()
    {
        var c = NewCore();
        c.SetDmaStrict("DMAR: IOMMU batching disallowed due to virtualization");
        Assert.Equal(IommuDomainType.Dma, c.DefaultDomainType);
        var pt = NewCore("iommu=pt");
        pt.SetDmaStrict();
        Assert.Equal(IommuDomainType.Identity, pt.DefaultDomainType);
    }

    [Fact]
    public void NeutralDevicesGetTheGlobalDefault()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = "g";
        var a = Dev("a");
        Boot(core, drv, a, Dev("b"));
        Assert.Equal("DMA-FQ", core.ReadType(a.Group!));
    }

    [Fact]
    public void IdentityRequiringDeviceProbedLastStillMakesItsWholeGroupIdentityAtBoot()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = drv.GroupKey["c"] = "g";
        drv.Requires["c"] = IommuDomainType.Identity;
        var a = Dev("a");
        Boot(core, drv, a, Dev("b"), Dev("c"));
        Assert.Equal("identity", core.ReadType(a.Group!));
    }

    [Fact]
    public void ConflictingRequirementsResolveToIdentityAndAreLoggedOn612()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = "g";
        drv.Requires["a"] = IommuDomainType.Dma;
        drv.Requires["b"] = IommuDomainType.Identity;
        var a = Dev("a");
        Boot(core, drv, a, Dev("b"));
        Assert.Equal("identity", core.ReadType(a.Group!));
        Assert.Contains(core.Log, l => l.Contains("IOMMU driver error, requesting conflicting def_domain_type, Translated and Passthrough, for devices in group 0.", StringComparison.Ordinal));
    }

    [Fact]
    public void ConflictingRequirementsFallBackToTheGlobalDefaultBefore64()
    {
        var core = NewCore(kernel: KernelVersion.V6_1);
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = "g";
        drv.Requires["a"] = IommuDomainType.Dma;
        drv.Requires["b"] = IommuDomainType.Identity;
        var a = Dev("a");
        Boot(core, drv, a, Dev("b"));
        Assert.Equal("DMA-FQ", core.ReadType(a.Group!));
        Assert.Contains(core.Log, l => l.Contains("b: Device needs domain type Passthrough, but device a in the same iommu group requires type Translated - using default", StringComparison.Ordinal));
    }

    [Fact]
    public void HotpluggedDeviceJoiningAGroupTakesItsDomainWithoutReevaluation()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["late"] = "g";
        drv.Requires["late"] = IommuDomainType.Identity;
        var a = Dev("a");
        Boot(core, drv, a);
        var before = a.Group!.Domain;
        var late = Dev("late");
        Assert.True(core.HotplugAdd(late).IsOk);
        Assert.Same(a.Group, late.Group);
        Assert.Same(before, late.AttachedDomain);
        Assert.Equal("DMA-FQ", core.ReadType(a.Group));
    }

    [Fact]
    public void HotpluggedDeviceStartingAGroupGetsItsOwnRequirementAtOnce()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.Requires["late"] = IommuDomainType.Identity;
        Boot(core, drv, Dev("a"));
        var late = Dev("late");
        Assert.True(core.HotplugAdd(late).IsOk);
        Assert.Equal("identity", core.ReadType(late.Group!));
    }

    private static IommuDevice[] UntrustedPci(bool requireIdentity, TestDriver drv)
    {
        var topo = PciTopo(("0000:05:00.0", 0x020000, 0x8086, 0x10d3, true));
        var dev = IommuDevice.FromPci(topo.Devices[0]);
        if (requireIdentity) drv.Requires[dev.Name] = IommuDomainType.Identity;
        return [dev];
    }

    [Fact]
    public void UntrustedDeviceGetsStrictDmaEvenUnderALazyDefault()
    {
        var core = NewCore();
        var drv = new TestDriver();
        var devs = UntrustedPci(false, drv);
        Boot(core, drv, devs);
        Assert.Equal("DMA", core.ReadType(devs[0].Group!));
    }

    [Fact]
    public void UntrustedDeviceWhoseDriverDemandsIdentityFailsTheBootWithEinval()
    {
        var core = NewCore();
        var drv = new TestDriver();
        var devs = UntrustedPci(true, drv);
        core.AddDevice(devs[0]);
        var r = core.RegisterDriver(drv);
        Assert.Equal(Errno.EINVAL, r.Errno);
        Assert.Contains(core.Log, l => l.Contains("Device is not trusted, but driver is overriding group 0 to Passthrough, refusing to probe.", StringComparison.Ordinal));
        Assert.Null(devs[0].Group);
    }

    [Fact]
    public void FailedAllocationOfTheGlobalTypeFallsBackToDma()
    {
        var core = NewCore("iommu=pt");
        var drv = new TestDriver(staticIdentity: false);
        var a = Dev("a");
        Boot(core, drv, a);
        Assert.Equal("DMA", core.ReadType(a.Group!));
        Assert.Contains(core.Log, l => l.Contains("Failed to allocate default IOMMU domain of type 4 for group (null) - Falling back to IOMMU_DOMAIN_DMA", StringComparison.Ordinal));
    }

    [Fact]
    public void DriverWithoutDeferredFlushGetsDmaInsteadOfDmaFq()
    {
        var core = NewCore();
        var drv = new TestDriver { DeferredFlush = false };
        var a = Dev("a");
        Boot(core, drv, a);
        Assert.Equal("DMA", core.ReadType(a.Group!));
    }

    [Fact]
    public void BindingBeforeTheGroupHasItsDefaultDomainIsProbeDeferOn612()
    {
        var core = NewCore();
        var drv = new TestDriver();
        var a = Dev("a");
        var b = Dev("b");
        IommuResult seen = default;
        // While the group of "a" is set up at boot, a driver probe for "b" (whose group is not set up yet) runs on
        // another thread, as the driver core's async probe would (it takes b's device and group locks, not a's).
        drv.OnDefDomainType = d =>
        {
            if (d != a || seen.Errno != Errno.Ok) return;
            var t = new Thread(() => seen = core.BindDriver(b, "e1000e"));
            t.Start();
            Assert.True(t.Join(TimeSpan.FromSeconds(30)));
        };
        Boot(core, drv, a, b);
        Assert.Equal(Errno.EPROBE_DEFER, seen.Errno);
        Assert.Null(b.DriverName);
        Assert.True(core.BindDriver(b, "e1000e").IsOk);
    }
}
