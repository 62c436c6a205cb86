using IommuKit.Paging;
using IommuKit.Simulation;
using IommuKit.Tests.Dma;
using Xunit;

namespace IommuKit.Tests.Simulation;

public class IommuHardwareTests
{
    private const ushort Rid = 0x0300; // 03:00.0

    [Fact]
    public void RequesterWithoutContextFaultsWithNoContext()
    {
        var hw = new IommuHardware();
        var t = hw.Translate(Rid, 0x1000, write: false);
        Assert.Equal(DmaTranslationKind.Fault, t.Kind);
        Assert.Equal(DmaFaultReason.NoContext, t.Fault);
        Assert.Equal(new DmaFault(Rid, 0x1000, false, DmaFaultReason.NoContext, -1), Assert.Single(hw.Faults));
    }

    [Fact]
    public void AClearedContextIsNoContextAgainForTranslationsRangesAndGetContext()
    {
        var hw = new IommuHardware();
        Assert.Null(hw.GetContext(Rid));
        var table = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        table.Map(0x1_0000, 0x9_0000, 0x1_0000, IommuProt.Read);
        hw.SetContext(Rid, IommuContext.Translated(1, table));
        Assert.Equal(0x9_0010UL, hw.Translate(Rid, 0x1_0010, write: false).Phys);
        hw.ClearContext(Rid);
        Assert.Null(hw.GetContext(Rid));
        Assert.Equal(DmaFaultReason.NoContext, hw.Translate(Rid, 0x1_0010, write: false).Fault);
        var runs = new DmaRun[2];
        using var lease = hw.TranslateRange(Rid, 0x1_0000, 0x1_0000, write: false, runs);
        Assert.Equal((DmaFaultReason.NoContext, 0), (lease.Fault, lease.Bytes));
    }

    [Fact]
    public void ReplacingATranslatedContextWithBlockedOrIdentityStopsItsCachedTranslationsAtOnce()
    {
        // The hit path reads only the slot's domain id: a context replaced by one that is not Translated must not
        // reach the IOTLB entries its translated predecessor left behind (domain 0: an untranslated slot must not read
        // as domain 0 either).
        var hw = new IommuHardware();
        var table = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        table.Map(0x1_0000, 0x9_0000, 0x1_0000, IommuProt.Read);
        hw.SetContext(Rid, IommuContext.Translated(0, table));
        Assert.Equal(0x9_0010UL, hw.Translate(Rid, 0x1_0010, write: false).Phys);
        long hits = hw.Iotlb.Hits;
        Assert.Equal(0x9_0010UL, hw.Translate(Rid, 0x1_0010, write: false).Phys);
        Assert.Equal(hits + 1, hw.Iotlb.Hits); // cached
        hw.SetContext(Rid, IommuContext.Blocked);
        Assert.Equal(DmaFaultReason.Blocked, hw.Translate(Rid, 0x1_0010, write: false).Fault);
        hw.SetContext(Rid, IommuContext.Identity);
        Assert.Equal(0x1_0010UL, hw.Translate(Rid, 0x1_0010, write: false).Phys);
        hw.SetContext(Rid, IommuContext.Translated(0, table));
        Assert.Equal(0x9_0010UL, hw.Translate(Rid, 0x1_0010, write: false).Phys);
    }

    [Fact]
    public void BlockedContextFaultsEveryAccessWithBlocked()
    {
        var hw = new IommuHardware();
        hw.SetContext(Rid, IommuContext.Blocked);
        Assert.Equal(DmaFaultReason.Blocked, hw.Translate(Rid, 0x1000, write: true).Fault);
        Assert.Equal(DmaFaultReason.Blocked, hw.Translate(Rid, 0, write: false).Fault);
        Assert.Equal(2, hw.FaultCount);
    }

    [Fact]
    public void IdentityContextPassesAddressesThrough()
    {
        var hw = new IommuHardware();
        hw.SetContext(Rid, IommuContext.Identity);
        var t = hw.Translate(Rid, 0x1_2345_6789, write: true);
        Assert.True(t.IsMemory);
        Assert.Equal(0x1_2345_6789UL, t.Phys);
        Assert.Equal(0, hw.FaultCount);
    }

    [Fact]
    public void UnmappedIovaFaultsNotPresentAndMappedIovaTranslatesWithItsOffset()
    {
        using var rig = new DmaRig();
        rig.Iommu.SetContext(Rid, rig.Context);
        Assert.Equal(Errno.Ok, rig.Table.Map(0x10_0000, 0x7700_0000, 0x2000, IommuProt.Read | IommuProt.Write));
        Assert.Equal(0x7700_1234UL, rig.Iommu.Translate(Rid, 0x10_1234, write: false).Phys);
        var miss = rig.Iommu.Translate(Rid, 0x10_2000, write: false);
        Assert.Equal(DmaFaultReason.NotPresent, miss.Fault);
        Assert.Equal(DmaRig.DomainId, Assert.Single(rig.Iommu.Faults).DomainId);
    }

    [Theory]
    [InlineData(IommuProt.Read, true)]
    [InlineData(IommuProt.Write, false)]
    public void MissingPermissionFaultsWithPermissionOnMissAndOnHit(IommuProt prot, bool write)
    {
        using var rig = new DmaRig();
        rig.Iommu.SetContext(Rid, rig.Context);
        rig.Table.Map(0x4000, 0x8000, 0x1000, prot);
        Assert.Equal(DmaFaultReason.Permission, rig.Iommu.Translate(Rid, 0x4000, write).Fault); // walk
        Assert.True(rig.Iommu.Translate(Rid, 0x4000, !write).IsMemory);                           // fills/hits the IOTLB
        Assert.Equal(DmaFaultReason.Permission, rig.Iommu.Translate(Rid, 0x4000, write).Fault); // IOTLB hit
    }

    [Theory]
    [InlineData(IoPageTableFormat.X86_64Level4, 1UL << 48)]
    [InlineData(IoPageTableFormat.X86_64Level5, 1UL << 57)]
    [InlineData(IoPageTableFormat.ArmLpae4K, 1UL << 48)]
    public void IovaBeyondTheFormatsInputSizeFaultsOutsideAperture(IoPageTableFormat format, ulong firstOutside)
    {
        using var rig = new DmaRig(format);
        rig.Iommu.SetContext(Rid, rig.Context);
        Assert.Equal(DmaFaultReason.OutsideAperture, rig.Iommu.Translate(Rid, firstOutside, write: false).Fault);
        Assert.Equal(DmaFaultReason.NotPresent, rig.Iommu.Translate(Rid, firstOutside - 4096, write: false).Fault);
    }

    [Fact]
    public void SecondTranslationOfAPageHitsTheIotlbWithoutWalking()
    {
        using var rig = new DmaRig();
        rig.Iommu.SetContext(Rid, rig.Context);
        rig.Table.Map(0x20_0000, 0x30_0000, 0x1000, IommuProt.Read);
        rig.Iommu.Translate(Rid, 0x20_0010, write: false);
        // Clear the PTE without telling the IOMMU: only a cached translation can still answer.
        Assert.Equal(Errno.Ok, rig.Table.Unmap(0x20_0000, 0x1000));
        Assert.Equal(0x30_0fffUL, rig.Iommu.Translate(Rid, 0x20_0fff, write: false).Phys);
    }

    [Fact]
    public void AWalkThatEndsInALargePageCachesTheWholePage()
    {
        using var rig = new DmaRig();
        rig.Iommu.SetContext(Rid, rig.Context);
        Assert.Equal(Errno.Ok, rig.Table.Map(0x4000_0000, 0x8000_0000, 0x20_0000, IommuProt.Read)); // one 2 MiB page
        rig.Iommu.Translate(Rid, 0x4000_0000, write: false);
        Assert.Equal(Errno.Ok, rig.Table.Unmap(0x4000_0000, 0x20_0000));
        // Another 4 KiB page of the same large page: only the cached 2 MiB entry can answer.
        Assert.Equal(0x801f_f123UL, rig.Iommu.Translate(Rid, 0x401f_f123, write: false).Phys);
        rig.Iommu.FlushRange(DmaRig.DomainId, 0x4010_0000, 0x1000); // any page of it drops the entry
        Assert.Equal(DmaFaultReason.NotPresent, rig.Iommu.Translate(Rid, 0x401f_f123, write: false).Fault);
    }

    [Fact]
    public void FlushRangeDomainAndAllEachDropCachedTranslations()
    {
        using var rig = new DmaRig();
        rig.Iommu.SetContext(Rid, rig.Context);
        Action<IommuHardware>[] flushes =
        [
            hw => hw.FlushRange(DmaRig.DomainId, 0x5000, 0x1000),
            hw => hw.FlushDomain(DmaRig.DomainId),
            hw => hw.FlushAll(),
        ];
        foreach (var flush in flushes)
        {
            rig.Table.Map(0x5000, 0x9000, 0x1000, IommuProt.Read);
            Assert.True(rig.Iommu.Translate(Rid, 0x5000, write: false).IsMemory);
            rig.Table.Unmap(0x5000, 0x1000);
            Assert.True(rig.Iommu.Translate(Rid, 0x5000, write: false).IsMemory); // stale
            flush(rig.Iommu);
            Assert.Equal(DmaFaultReason.NotPresent, rig.Iommu.Translate(Rid, 0x5000, write: false).Fault);
        }
    }

    [Fact]
    public void FlushingAnotherDomainKeepsThisDomainsEntries()
    {
        using var rig = new DmaRig();
        rig.Iommu.SetContext(Rid, rig.Context);
        rig.Table.Map(0x5000, 0x9000, 0x1000, IommuProt.Read);
        rig.Iommu.Translate(Rid, 0x5000, write: false);
        rig.Table.Unmap(0x5000, 0x1000);
        rig.Iommu.FlushDomain(DmaRig.DomainId + 1);
        Assert.True(rig.Iommu.Translate(Rid, 0x5000, write: false).IsMemory);
    }

    [Fact]
    public void RangeFlushAfterADomainFlushStillDropsTheRefilledEntry()
    {
        using var rig = new DmaRig();
        rig.Iommu.SetContext(Rid, rig.Context);
        rig.Table.Map(0x5000, 0x9000, 0x1000, IommuProt.Read);
        rig.Iommu.Translate(Rid, 0x5000, write: false);
        rig.Iommu.FlushDomain(DmaRig.DomainId);                 // retires the domain's IOTLB tag
        Assert.True(rig.Iommu.Translate(Rid, 0x5000, write: false).IsMemory); // refilled under the new tag
        rig.Table.Unmap(0x5000, 0x1000);
        Assert.True(rig.Iommu.Translate(Rid, 0x5000, write: false).IsMemory); // stale until flushed
        rig.Iommu.FlushRange(DmaRig.DomainId, 0x5000, 0x1000);
        Assert.Equal(DmaFaultReason.NotPresent, rig.Iommu.Translate(Rid, 0x5000, write: false).Fault);
    }

    [Fact]
    public void DomainIdsAreSixteenBit()
    {
        using var rig = new DmaRig();
        Assert.Throws<ArgumentOutOfRangeException>(() => IommuContext.Translated(IommuHardware.MaxDomainId + 1, rig.Table));
        Assert.Throws<ArgumentOutOfRangeException>(() => rig.Iommu.FlushDomain(-1));
    }

    [Fact]
    public void FaultHandlerReceivesEachFaultWithItsReason()
    {
        using var rig = new DmaRig();
        var seen = new List<DmaFault>();
        rig.Iommu.FaultHandler = seen.Add;
        rig.Iommu.SetContext(1, rig.Context);
        rig.Iommu.SetContext(2, IommuContext.Blocked);
        rig.Table.Map(0x1000, 0x1000, 0x1000, IommuProt.Read);
        rig.Iommu.Translate(1, 0x2000, false);
        rig.Iommu.Translate(1, 0x1000, true);
        rig.Iommu.Translate(1, 1UL << 50, false);
        rig.Iommu.Translate(2, 0x1000, false);
        rig.Iommu.Translate(3, 0x1000, false);
        Assert.Equal(
            [DmaFaultReason.NotPresent, DmaFaultReason.Permission, DmaFaultReason.OutsideAperture, DmaFaultReason.Blocked, DmaFaultReason.NoContext],
            seen.Select(f => f.Reason).ToArray());
        Assert.Equal(seen, rig.Iommu.Faults);
    }

    [Fact]
    public void FaultLogKeepsOnlyTheNewestFaultsButCountsAll()
    {
        var hw = new IommuHardware();
        for (int i = 0; i < IommuHardware.MaxFaultLog + 10; i++)
            hw.Translate(Rid, (ulong)i << 12, false);
        Assert.Equal(IommuHardware.MaxFaultLog + 10, hw.FaultCount);
        Assert.Equal(IommuHardware.MaxFaultLog, hw.Faults.Count);
        Assert.Equal(10UL << 12, hw.Faults[0].Address);
    }

    [Theory]
    [InlineData(null)]
    [InlineData(IommuContextKind.Blocked)]
    [InlineData(IommuContextKind.Translated)]
    public void WritesToTheMsiWindowAreInterruptsWhateverTheContext(IommuContextKind? kind)
    {
        using var rig = new DmaRig();
        if (kind is { } k)
            rig.Iommu.SetContext(Rid, k == IommuContextKind.Blocked ? IommuContext.Blocked : rig.Context);
        var t = rig.Iommu.Translate(Rid, 0xfee0_1004, write: true);
        Assert.Equal(DmaTranslationKind.Interrupt, t.Kind);
        // Just outside the window the request is ordinary DMA: nothing maps it here, so it faults.
        Assert.Equal(DmaTranslationKind.Fault, rig.Iommu.Translate(Rid, 0xfee0_0000 - 1, write: true).Kind);
        Assert.Equal(DmaTranslationKind.Fault, rig.Iommu.Translate(Rid, 0xfef0_0000, write: true).Kind);
    }

    [Fact]
    public void ReadsOfTheMsiWindowFaultWithPermission()
    {
        var hw = new IommuHardware();
        hw.SetContext(Rid, IommuContext.Identity);
        Assert.Equal(DmaFaultReason.Permission, hw.Translate(Rid, 0xfee0_0000, write: false).Fault);
        Assert.True(hw.Translate(Rid, 0xfef0_0000, write: false).IsMemory);
    }

    [Fact]
    public void AMappedAndCachedMsiWindowPageIsStillAnInterruptForWritesAndAFaultForReads()
    {
        // The hit path does not test the MSI window: it relies on the IOTLB never caching a 4 KiB page of it. Map the
        // window's first page read-write, fill the unit's IOTLB there directly and through a walk of the 2 MiB slice
        // around it, and the window must still win (a hit path that trusted such an entry would translate to 0x7000).
        var hw = new IommuHardware();
        var table = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        table.Map(0xfee0_0000, 0x7000, 0x1000, IommuProt.Read | IommuProt.Write);
        table.Map(0xfedf_f000, 0x8000, 0x1000, IommuProt.Read | IommuProt.Write);
        hw.SetContext(Rid, IommuContext.Translated(3, table));
        hw.Iotlb.Fill(3, 0xfee0_0000, 0x1000, 0x7000, IommuProt.Read | IommuProt.Write);
        Assert.False(hw.Iotlb.TryLookup(3, 0xfee0_0010, out _, out _));
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal((DmaTranslationKind.Interrupt, 0xfee0_0010UL), (hw.Translate(Rid, 0xfee0_0010, write: true).Kind, hw.Translate(Rid, 0xfee0_0010, write: true).Phys));
            Assert.Equal(DmaFaultReason.Permission, hw.Translate(Rid, 0xfee0_0010, write: false).Fault);
        }
        // The page just below the window is ordinary memory, cached like any other.
        Assert.Equal(0x8010UL, hw.Translate(Rid, 0xfedf_f010, write: true).Phys);
        Assert.True(hw.Iotlb.TryLookup(3, 0xfedf_f010, out ulong phys, out _));
        Assert.Equal(0x8010UL, phys);
    }

    [Theory]
    [InlineData(IommuContextKind.Identity)]
    [InlineData(IommuContextKind.Blocked)]
    public void TranslationsOfAContextThatIsNotTranslatedCountNoIotlbLookup(IommuContextKind kind)
    {
        // The hit path probes the IOTLB without looking at the context (under the slot's domain id, which for a context
        // that is not Translated is one that never hits): such a probe must count neither a hit nor a miss, even when
        // domain 0 has the page cached.
        var hw = new IommuHardware();
        var table = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        table.Map(0x1_0000, 0x9_0000, 0x1000, IommuProt.Read);
        hw.SetContext(Rid, IommuContext.Translated(0, table));
        Assert.Equal(0x9_0010UL, hw.Translate(Rid, 0x1_0010, write: false).Phys);
        Assert.Equal((0L, 1L), (hw.Iotlb.Hits, hw.Iotlb.Misses));
        hw.SetContext(Rid, kind == IommuContextKind.Identity ? IommuContext.Identity : IommuContext.Blocked);
        for (int i = 0; i < 3; i++)
            hw.Translate(Rid, 0x1_0010, write: false);
        Assert.Equal((0L, 1L), (hw.Iotlb.Hits, hw.Iotlb.Misses));
        hw.SetContext(Rid, IommuContext.Translated(0, table));
        hw.Translate(Rid, 0x1_0010, write: false);
        Assert.Equal((1L, 1L), (hw.Iotlb.Hits, hw.Iotlb.Misses));
    }

    [Fact]
    public void ATranslationWhileItsIotlbEntryIsBeingWrittenIsNotAHit()
    {
        // The hit path's seqlock read: an entry whose sequence is odd (a fill or an invalidation holds it) is never
        // returned, even when its fields still hold a complete translation; the request takes the slow path (and its
        // walk's fill is dropped, the entry being busy).
        var hw = new IommuHardware();
        var table = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        table.Map(0x1_0000, 0x9_0000, 0x1000, IommuProt.Read);
        hw.SetContext(Rid, IommuContext.Translated(1, table));
        Assert.Equal(0x9_0010UL, hw.Translate(Rid, 0x1_0010, write: false).Phys);
        Assert.Equal(0x9_0010UL, hw.Translate(Rid, 0x1_0010, write: false).Phys);
        Assert.Equal((1L, 1L), (hw.Iotlb.Hits, hw.Iotlb.Misses));

        Iotlb.PendingFill fill = hw.Iotlb.BeginFill(1, 0x1_0000, 0x1000, 0x9_0000, IommuProt.Read, hw.Iotlb.Generation);
        Assert.True(fill.Claimed);
        Assert.Equal(0x9_0010UL, hw.Translate(Rid, 0x1_0010, write: false).Phys); // walked, not hit
        Assert.Equal((1L, 2L), (hw.Iotlb.Hits, hw.Iotlb.Misses));
        hw.Iotlb.EndFill(fill);
        Assert.Equal(0x9_0010UL, hw.Translate(Rid, 0x1_0010, write: false).Phys);
        Assert.Equal((2L, 2L), (hw.Iotlb.Hits, hw.Iotlb.Misses));
    }

    [Fact]
    public void TwoWritersOfOneContextSlotLeaveTheHitPathOnTheContextThatIsInstalled()
    {
        // The hit path reads only the slot's domain id, which a context write stores before the context itself. Two
        // writers of one slot must not interleave (A's id, B's id, B's context, A's context), or the slot would be left
        // hitting B's domain under A's context. Writer A is held between its two writes while B runs.
        var hw = new IommuHardware();
        var tableA = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        var tableB = IoPageTables.Create(IoPageTableFormat.X86_64Level4);
        tableA.Map(0x1_0000, 0xA_0000, 0x1000, IommuProt.Read);
        tableB.Map(0x1_0000, 0xB_0000, 0x1000, IommuProt.Read);
        IommuContext a = IommuContext.Translated(1, tableA), b = IommuContext.Translated(2, tableB);
        hw.SetContext(Rid, b);
        Assert.Equal(0xB_0000UL, hw.Translate(Rid, 0x1_0000, write: false).Phys); // B's translation cached
        hw.SetContext(Rid, IommuContext.Blocked);

        using var aPaused = new ManualResetEventSlim();
        using var releaseA = new ManualResetEventSlim();
        int calls = 0;
        hw.BetweenContextWritesForTests = () =>
        {
            if (Interlocked.Increment(ref calls) != 1) return; // only the first writer (A) is held
            aPaused.Set();
            releaseA.Wait();
        };
        var writerA = new Thread(() => hw.SetContext(Rid, a));
        writerA.Start();
        Assert.True(aPaused.Wait(TimeSpan.FromSeconds(30)));
        var writerB = new Thread(() => hw.SetContext(Rid, b));
        writerB.Start();
        // Without serialized writers B completes here; with them it cannot until A is released (the wait only bounds
        // how long the test gives B to do the wrong thing).
        bool bDoneWhileAHeld = writerB.Join(TimeSpan.FromMilliseconds(200));
        releaseA.Set();
        writerA.Join();
        writerB.Join();
        hw.BetweenContextWritesForTests = null;

        Assert.False(bDoneWhileAHeld, "a second writer of the slot completed inside the first one's write");
        IommuContext installed = hw.GetContext(Rid)!;
        ulong expected = ReferenceEquals(installed, a) ? 0xA_0000UL : 0xB_0000UL;
        for (int i = 0; i < 3; i++)
            Assert.Equal(expected, hw.Translate(Rid, 0x1_0000, write: false).Phys);
    }
}
