using FsCheck;
using FsCheck.Fluent;
using IommuKit.Core;
using IommuKit.Paging;
using Xunit;
using static IommuKit.Tests.Core.CoreRig;

namespace IommuKit.Tests.Core;

public class ReservedRegionTests
{
    private static List<string> Merge(bool adjacent, params ReservedRegion[] regions)
    {
        var list = new List<ReservedRegion>();
        foreach (var r in regions) ReservedRegionList.Insert(list, r, adjacent);
        return list.Select(r => r.ToString()).ToList();
    }

    [Fact]
    public void OverlappingAndAdjacentRegionsOfOneTypeCoalesce()
    {
        var got = Merge(true,
            Region(0x1000, 0x1fff, ReservedRegionType.Direct),
            Region(0x2000, 0x2fff, ReservedRegionType.Direct),
            Region(0x2800, 0x4fff, ReservedRegionType.Direct),
            Region(0x8000, 0x8fff, ReservedRegionType.Direct));
        Assert.Equal(["0x0000000000001000 0x0000000000004fff direct", "0x0000000000008000 0x0000000000008fff direct"], got);
    }

    [Fact]
    public void RegionsOfDifferentTypesAreNeverMergedAndSortByStartThenType()
    {
        var got = Merge(true,
            Region(0xfee00000, 0xfeefffff, ReservedRegionType.Msi),
            Region(0x0, 0xffffff, ReservedRegionType.DirectRelaxable),
            Region(0x0, 0xfff, ReservedRegionType.Direct),
            Region(0x800, 0x1fff, ReservedRegionType.Reserved));
        Assert.Equal([
            "0x0000000000000000 0x0000000000000fff direct",
            "0x0000000000000000 0x0000000000ffffff direct-relaxable",
            "0x0000000000000800 0x0000000000001fff reserved",
            "0x00000000fee00000 0x00000000feefffff msi",
        ], got);
    }

    [Fact]
    public void ContainedRegionDisappearsIntoItsContainer()
    {
        var got = Merge(true, Region(0x0, 0xffff, ReservedRegionType.Reserved), Region(0x1000, 0x1fff, ReservedRegionType.Reserved));
        Assert.Equal(["0x0000000000000000 0x000000000000ffff reserved"], got);
    }

    [Fact]
    public void OldKernelsKeepAdjacentRegionsApart()
    {
        var a = Region(0x1000, 0x1fff, ReservedRegionType.Direct);
        var b = Region(0x2000, 0x2fff, ReservedRegionType.Direct);
        Assert.Equal(2, Merge(false, a, b).Count);
        Assert.Single(Merge(true, a, b));
    }

    [Fact]
    public void SwMsiPrintsAsMsi() =>
        Assert.Equal("0x0000000008000000 0x00000000080fffff msi", new ReservedRegion(0x800_0000, 0x10_0000, IommuProt.None, ReservedRegionType.SwMsi).ToString());

    [Fact]
    public void GroupRegionsMergeEveryDevicesRegionsAndPrintLikeSysfs()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.GroupKey["a"] = drv.GroupKey["b"] = "g";
        drv.Regions["a"] = [Region(0x10000, 0x1ffff, ReservedRegionType.Direct)];
        drv.Regions["b"] = [Region(0x20000, 0x2ffff, ReservedRegionType.Direct)];
        var a = Dev("a");
        Boot(core, drv, a, Dev("b"));
        Assert.Equal([
            "0x0000000000010000 0x000000000002ffff direct",
            "0x00000000fee00000 0x00000000feefffff msi",
        ], core.ReadReservedRegions(a.Group!));
    }

    [Fact]
    public void DirectRegionsAreMappedOneToOneIntoTheDmaDefaultDomain()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.Regions["a"] = [Region(0x7000_0000, 0x7000_3fff, ReservedRegionType.Direct), Region(0x0, 0xffffff, ReservedRegionType.DirectRelaxable)];
        var a = Dev("a");
        Boot(core, drv, a);
        var dom = a.Group!.DefaultDomain!;
        foreach (ulong addr in new ulong[] { 0x7000_0000, 0x7000_3000, 0x1000, 0xfff000 })
        {
            Assert.True(dom.TryIovaToPhys(addr, out var phys));
            Assert.Equal(addr, phys);
        }
        Assert.False(dom.TryIovaToPhys(0x7000_4000, out _));
        Assert.True(a.RequireDirect);
    }

    [Fact]
    public void DirectRegionsAreMappedAfterAttachWhenTheDriverCannotMapBefore()
    {
        var core = NewCore();
        var drv = new TestDriver { MapOnlyAfterAttach = true };
        drv.Regions["a"] = [Region(0x7000_0000, 0x7000_0fff, ReservedRegionType.Direct)];
        var a = Dev("a");
        Boot(core, drv, a);
        Assert.Contains("iommu: IOMMU driver was not able to establish FW requested direct mapping.", core.Log);
        Assert.True(a.Group!.DefaultDomain!.TryIovaToPhys(0x7000_0000, out var phys));
        Assert.Equal(0x7000_0000UL, phys);
        Assert.Empty(core.CheckInvariants());
    }

    [Fact]
    public void IdentityDomainGetsNoMappingsButStillRecordsTheDirectRequirement()
    {
        var core = NewCore("iommu=pt");
        var drv = new TestDriver();
        drv.Regions["a"] = [Region(0x7000_0000, 0x7000_0fff, ReservedRegionType.Direct)];
        var a = Dev("a");
        Boot(core, drv, a);
        Assert.Equal("identity", core.ReadType(a.Group!));
        Assert.True(a.RequireDirect);
    }

    [Fact]
    public void MisalignedDirectRegionLosesItsFirstPartialPage()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.Regions["a"] = [Region(0x7000_0800, 0x7000_17ff, ReservedRegionType.Direct)];
        var a = Dev("a");
        Boot(core, drv, a);
        var dom = a.Group!.DefaultDomain!;
        Assert.False(dom.TryIovaToPhys(0x7000_0000, out _));
        Assert.True(dom.TryIovaToPhys(0x7000_1000, out _));
    }

    [Fact]
    public void DirectRegionsAreKeptOutOfTheIovaSpaceAndNeverAllocated()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.Regions["a"] = [Region(0x10_0000, 0x1f_ffff, ReservedRegionType.Direct)];
        var a = Dev("a");
        Boot(core, drv, a);
        var reserved = core.IovaReservedRegions(a);
        Assert.Contains(reserved, r => r.Type == ReservedRegionType.Direct && r.Start == 0x10_0000);
        const ulong granule = 4096;
        var iova = new IovaAllocator(granule, 1);
        foreach (var r in reserved) Assert.True(iova.Reserve(r.Start / granule, r.Last / granule));
        ulong limit = (0x40_0000 / granule) - 1; // a 4 MiB space: the allocator must skip the 1 MiB direct window
        int got = 0;
        for (;;)
        {
            ulong pfn = iova.Alloc(1, limit, flushRcache: false);
            if (pfn == 0) break;
            got++;
            Assert.False(pfn >= 0x100 && pfn <= 0x1ff, $"pfn 0x{pfn:x} lies in the direct region");
        }
        Assert.Equal((int)(limit - 0x100), got); // every page but pfn 0 and the 256 reserved ones
    }

    [Fact]
    public void DeviceWithADirectRegionRefusesTheBlockingDomainWithTheKernelsMessage()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.Regions["a"] = [Region(0x7000_0000, 0x7000_0fff, ReservedRegionType.Direct)];
        var a = Dev("a");
        Boot(core, drv, a);
        var r = core.GroupClaimDmaOwner(a.Group!, new object());
        Assert.Equal(Errno.EINVAL, r.Errno);
        Assert.Contains("a: Firmware has requested this device have a 1:1 IOMMU mapping, rejecting configuring the device without a 1:1 mapping. Contact your platform vendor.", core.Log);
        Assert.Null(a.Group!.Owner);
        Assert.Same(a.Group.DefaultDomain, a.Group.Domain);
    }

    [Fact]
    public void RelaxableRegionDoesNotBlockUserOwnership()
    {
        var core = NewCore();
        var drv = new TestDriver();
        drv.Regions["a"] = [Region(0x0, 0xffffff, ReservedRegionType.DirectRelaxable)];
        var a = Dev("a");
        Boot(core, drv, a);
        Assert.True(core.GroupClaimDmaOwner(a.Group!, new object()).IsOk);
    }
}

public class ReservedRegionPropertyTests
{
    /// <summary>
    /// For any insertion order of random regions: the list is sorted by (start, type); no two regions of one type
    /// overlap or touch; and, per type, the bytes covered are exactly the bytes the inputs covered.
    /// </summary>
    [Fact]
    public void MergedListIsSortedDisjointPerTypeAndCoversExactlyTheInputs()
    {
        Prop.ForAll<int>(seed =>
        {
            var rng = new Random(seed);
            int n = rng.Next(1, 12);
            var inputs = new List<ReservedRegion>();
            for (int i = 0; i < n; i++)
            {
                ulong start = (ulong)rng.Next(0, 64) * 0x100;
                ulong len = (ulong)rng.Next(1, 16) * 0x100;
                inputs.Add(new ReservedRegion(start, len, IommuKit.Paging.IommuProt.Read, (ReservedRegionType)rng.Next(0, 5)));
            }
            var list = new List<ReservedRegion>();
            foreach (var r in inputs) ReservedRegionList.Insert(list, r);
            for (int i = 1; i < list.Count; i++)
            {
                var (a, b) = (list[i - 1], list[i]);
                if (a.Start > b.Start || (a.Start == b.Start && a.Type > b.Type)) return false;
            }
            foreach (ReservedRegionType t in Enum.GetValues<ReservedRegionType>())
            {
                var same = list.Where(r => r.Type == t).ToList();
                for (int i = 1; i < same.Count; i++) if (same[i].Start <= same[i - 1].Last + 1) return false;
                var want = new HashSet<ulong>();
                foreach (var r in inputs.Where(r => r.Type == t)) for (ulong a = r.Start; a <= r.Last; a += 0x100) want.Add(a);
                var got = new HashSet<ulong>();
                foreach (var r in same) for (ulong a = r.Start; a <= r.Last; a += 0x100) got.Add(a);
                if (!want.SetEquals(got)) return false;
            }
            return true;
        }).QuickCheckThrowOnFailure();
    }
}
