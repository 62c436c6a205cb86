using System.Formats.Tar;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;
using static IommuKit.Tests.Sources.SourceTestKit;

namespace IommuKit.Tests.Sources;

public class SysfsReaderTests
{
    [Fact]
    public void SmallTreeLoadsWithBridgeChainDriverGroupAndProcFiles()
    {
        var m = Load(SmallMachine());
        Assert.Equal(3, m.Topology.Count);
        Assert.Equal("6.1.0-test", m.KernelRelease);
        Assert.Equal("root=/dev/sda intel_iommu=on", m.CommandLine);
        var ep = m.Topology[PciAddress.Parse("0000:01:00.0")];
        Assert.Equal(PciAddress.Parse("0000:00:1c.0"), ep.Parent!.Address);
        Assert.Equal("e1000e", ep.Driver);
        Assert.Equal(3, ep.Facts.KernelGroup);
        var g = Assert.Single(m.KernelGroups!);
        Assert.Equal("DMA-FQ", g.Type);
        Assert.Equal(new ReservedRegionText(0xfee00000, 0xfeefffff, "msi"), Assert.Single(g.ReservedRegions));
        Assert.Empty(m.Warnings);
    }

    [Fact]
    public void MissingIommuGroupsDirectoryMeansTheKernelsGroupsAreUnknown()
    {
        Assert.Null(Load(SmallMachine(groups: false)).KernelGroups);
    }

    [Fact]
    public void EmptyIommuGroupsDirectoryMeansTheKernelMadeNoGroups()
    {
        var members = SmallMachine(groups: false);
        members.Add(Dir("sys/kernel/iommu_groups"));
        var groups = Load(members).KernelGroups;
        Assert.NotNull(groups);
        Assert.Empty(groups!);
    }

    [Fact]
    public void IntelUnitRegistersGiveTheKindAndCachingMode()
    {
        var members = SmallMachine();
        members.Add(Link("sys/class/iommu/dmar0", "../../devices/virtual/iommu/dmar0"));
        members.Add(Text("sys/devices/virtual/iommu/dmar0/intel-iommu/cap", "d2008c40660462\n"));
        members.Add(Text("sys/devices/virtual/iommu/dmar0/intel-iommu/ecap", "f050da\n"));
        members.Add(Text("sys/devices/virtual/iommu/dmar0/intel-iommu/version", "1:0\n"));
        members.Add(Link("sys/devices/virtual/iommu/dmar0/devices/0000:01:00.0", "../../../../pci0000:00/0000:00:1c.0/0000:01:00.0"));
        var unit = Assert.Single(Load(members).IommuUnits);
        Assert.Equal(IommuKind.Intel, unit.Kind);
        Assert.Equal("1:0", unit.Registers["intel-iommu/version"]);
        Assert.False(unit.CachingMode); // bit 7 of 0x...40 is 0
        Assert.Equal([PciAddress.Parse("0000:01:00.0")], unit.Devices);
    }

    [Fact]
    public void AmdUnitIsRecognisedFromItsRegisterDirectoryWhateverItsName()
    {
        var members = SmallMachine();
        members.Add(Link("sys/class/iommu/iommu0", "../../devices/pci0000:00/0000:00:00.2/iommu/iommu0"));
        members.Add(Text("sys/devices/pci0000:00/0000:00:00.2/iommu/iommu0/amd-iommu/features", "0x25bf732fa2295afe\n"));
        Assert.Equal(IommuKind.Amd, Assert.Single(Load(members).IommuUnits).Kind);
    }

    [Fact]
    public void UnitWithNoRegisterDirectoryAndNoVirtioParentIsUnknown()
    {
        var members = SmallMachine();
        members.Add(Link("sys/class/iommu/foo", "../../devices/platform/foo/iommu/foo"));
        members.Add(Dir("sys/devices/platform/foo/iommu/foo/devices"));
        Assert.Equal(IommuKind.Unknown, Assert.Single(Load(members).IommuUnits).Kind);
    }

    [Fact]
    public void SlotAddressNamesThePhysicalSlotOfEveryFunctionInIt()
    {
        var members = SmallMachine();
        members.Add(Text("sys/bus/pci/slots/4/address", "0000:01:00\n"));
        var m = Load(members);
        Assert.Equal("0000:01:00", m.Slots["4"]);
        Assert.Equal("4", m.Topology[PciAddress.Parse("0000:01:00.0")].Facts.PhysicalSlot);
        Assert.Null(m.Topology[PciAddress.Parse("0000:00:1c.0")].Facts.PhysicalSlot);
    }

    [Fact]
    public void RemovableAttributeMarksTheDeviceUntrusted()
    {
        var members = SmallMachine();
        members.Add(Text("sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/removable", "removable\n"));
        Assert.True(Load(members).Topology[PciAddress.Parse("0000:01:00.0")].Facts.Untrusted);
    }

    [Fact]
    public void UnprivilegedSixtyFourByteConfigLoadsHeaderOnlyWithOneWarningSayingWhatItCosts()
    {
        var members = SmallMachine();
        for (int i = 0; i < members.Count; i++)
        {
            if (members[i].Name.EndsWith("/config", StringComparison.Ordinal)) members[i] = members[i] with { Data = members[i].Data![..64] };
        }
        var m = Load(members);
        Assert.Equal(3, m.Topology.Count);
        Assert.All(m.Topology.Devices, d => Assert.Equal(ConfigVisibility.HeaderOnly, d.Facts.Visibility));
        var w = Assert.Single(m.Warnings);
        Assert.Contains("3 of 3 devices", w);
        Assert.Contains("ACS", w);
        Assert.Contains("root", w);
        // The bridge is still placed from its header and realpath.
        Assert.Equal(PciAddress.Parse("0000:00:1c.0"), m.Topology[PciAddress.Parse("0000:01:00.0")].Parent!.Address);
    }

    [Fact]
    public void ThousandsOfBadEntriesGiveCappedWarningsAndKeepTheSummary()
    {
        var members = SmallMachine();
        for (int i = 0; i < members.Count; i++)
        {
            if (members[i].Name.EndsWith("/config", StringComparison.Ordinal)) members[i] = members[i] with { Data = members[i].Data![..64] };
        }
        const int junk = 1000;
        for (int i = 0; i < junk; i++) members.Add(Dir($"sys/bus/pci/devices/junk{i}"));
        var m = Load(members);
        Assert.Equal(3, m.Topology.Count);
        Assert.Equal(SourceLimits.MaxWarnings + 2, m.Warnings.Count);
        Assert.Contains($"{junk - SourceLimits.MaxWarnings} more warnings not shown", m.Warnings[^2]);
        Assert.Contains("3 of 3 devices show only the 64-byte config header", m.Warnings[^1]);
    }

    [Fact]
    public void ThreeByteConfigSkipsTheDeviceWithAWarningNamingFileAndOffset()
    {
        var m = Load(SmallMachine(endpointConfig: [0x86, 0x80, 0xd3]));
        Assert.Equal(2, m.Topology.Count);
        Assert.Null(m.Topology.Find(PciAddress.Parse("0000:01:00.0")));
        // The skipped device, then its kernel group kept without it (issue 12: one bad device never fails the load).
        Assert.Equal(2, m.Warnings.Count);
        Assert.Equal([], m.KernelGroups!.Single(g => g.Id == 3).Devices);
        Assert.Contains("group 3 lists 0000:01:00.0, which could not be read", m.Warnings[1]);
        var w = m.Warnings[0];
        Assert.Contains("sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/config", w);
        Assert.Contains("offset 0x3", w);
        Assert.Contains("64-byte header", w);
    }

    [Fact]
    public void CapabilityPointerIntoItselfSkipsTheDeviceWithAWarningNamingTheLoop()
    {
        var cfg = Config(0x8086, 0x10d3, 0x020000);
        cfg[0x06] = 0x10; // status: capability list
        cfg[0x34] = 0x40;
        cfg[0x40] = 0x01; cfg[0x41] = 0x40; // PM capability whose next pointer is itself
        var m = Load(SmallMachine(endpointConfig: cfg));
        Assert.Equal(2, m.Topology.Count);
        Assert.Equal(2, m.Warnings.Count); // the device, and its kernel group kept without it
        var w = m.Warnings[0];
        Assert.Contains("0000:01:00.0/config", w);
        Assert.Contains("loops back", w);
        Assert.Contains("0x41", w);
    }

    [Fact]
    public void WhenNoDeviceCanBeReadTheWholeInputIsRejected()
    {
        var members = SmallMachine();
        for (int i = 0; i < members.Count; i++)
        {
            if (members[i].Name.EndsWith("/config", StringComparison.Ordinal)) members[i] = members[i] with { Data = [1, 2, 3] };
        }
        var ex = Assert.Throws<InputException>(() => Load(members));
        Assert.Contains("no PCI device could be read", ex.Message);
    }

    [Fact]
    public void TarballWithoutPciSysfsIsRejectedAsNotAMachine()
    {
        var ex = Assert.Throws<InputException>(() => Load([Text("proc/cmdline", "x\n")]));
        Assert.Contains("sys/bus/pci/devices", ex.Message);
    }

    [Fact]
    public void MemberNameWithDotDotIsRejected()
    {
        var members = SmallMachine();
        members.Add(Text("sys/../../etc/passwd", "root:x:0:0\n"));
        var ex = Assert.Throws<InputException>(() => Load(members));
        Assert.Contains("'..'", ex.Message);
    }

    [Fact]
    public void AbsoluteMemberNameIsRejected()
    {
        var members = SmallMachine();
        members.Add(Text("/etc/passwd", "root:x:0:0\n"));
        Assert.Contains("absolute name", Assert.Throws<InputException>(() => Load(members)).Message);
    }

    [Fact]
    public void AbsoluteSymlinkIsRejected()
    {
        var members = SmallMachine();
        members.Add(Link("sys/bus/pci/devices/0000:00:03.0", "/sys/devices/pci0000:00/0000:00:03.0"));
        var ex = Assert.Throws<InputException>(() => Load(members));
        Assert.Contains("absolute target", ex.Message);
        Assert.Contains("sys/bus/pci/devices/0000:00:03.0", ex.Message);
    }

    [Fact]
    public void SymlinkClimbingAboveTheRootIsRejected()
    {
        var members = SmallMachine();
        members.Add(Link("sys/bus/pci/devices/0000:00:03.0", "../../../../../../etc"));
        Assert.Contains("climbs above the root", Assert.Throws<InputException>(() => Load(members)).Message);
    }

    [Fact]
    public void SymlinkLoopIsRejectedAfterBoundedHops()
    {
        var members = SmallMachine();
        members.Add(Link("sys/bus/pci/devices/0000:00:03.0", "../../../devices/loop/a"));
        members.Add(Link("sys/devices/loop/a", "b"));
        members.Add(Link("sys/devices/loop/b", "a"));
        Assert.Contains("link loop", Assert.Throws<InputException>(() => Load(members)).Message);
    }

    [Theory]
    [InlineData(TarEntryType.HardLink)]
    [InlineData(TarEntryType.CharacterDevice)]
    [InlineData(TarEntryType.BlockDevice)]
    [InlineData(TarEntryType.Fifo)]
    public void NonRegularMembersAreRejected(TarEntryType type)
    {
        var members = SmallMachine();
        members.Add(new Member("sys/devices/pci0000:00/0000:00:02.0/vendor", Link: type == TarEntryType.HardLink ? "proc/cmdline" : null, Type: type));
        var ex = Assert.Throws<InputException>(() => Load(members));
        Assert.Contains($"{type} entry", ex.Message);
    }

    [Fact]
    public void MemberDeclaringTwoGigabytesIsRefusedFromItsHeaderWithoutReadingData()
    {
        // A hand-made ustar header declaring 2 GB (octal 20000000000) followed by nothing: the reader must refuse it
        // from the header alone.
        var header = new byte[512];
        void Put(int off, string s) { var b = System.Text.Encoding.ASCII.GetBytes(s); b.CopyTo(header, off); }
        Put(0, "sys/devices/big/config");
        Put(100, "0000644\0"); Put(108, "0000000\0"); Put(116, "0000000\0");
        Put(124, "20000000000\0");
        Put(136, "00000000000\0");
        header[156] = (byte)'0';
        Put(257, "ustar\0"); Put(263, "00");
        for (int i = 148; i < 156; i++) header[i] = (byte)' ';
        int sum = 0;
        foreach (var b in header) sum += b;
        Put(148, Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ");
        using var ms = new MemoryStream();
        using (var gz = new System.IO.Compression.GZipStream(ms, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true)) gz.Write(header);
        var ex = Assert.Throws<InputException>(() => MachineSource.LoadBytes(ms.ToArray(), "big.tar.gz"));
        Assert.Contains("2147483648 bytes", ex.Message);
        Assert.Contains("sys/devices/big/config", ex.Message);
    }

    [Fact]
    public void GzipBombIsRefusedOnceTheUncompressedCapIsPassed()
    {
        var members = SmallMachine();
        members.Add(File("sys/zeros", new byte[900_000]));
        var bytes = TarGz(members);
        Assert.True(bytes.Length < 20_000);
        var ex = Assert.Throws<InputException>(() => TarFileTree.Read(new MemoryStream(bytes), "bomb.tar.gz", maxUncompressedBytes: 256 * 1024));
        Assert.Contains("cap", ex.Message);
        Assert.Contains("bomb.tar.gz", ex.Message);
    }

    [Fact]
    public void OverlongMemberNameIsRejected()
    {
        var members = SmallMachine();
        members.Add(Text("sys/" + new string('a', FileTree.MaxPathLength + 10), "x"));
        Assert.Contains("cap", Assert.Throws<InputException>(() => Load(members)).Message);
    }

    [Fact]
    public void DirectoryRootReadsTheSameMachineAsItsTarball()
    {
        string tar = Fixtures.OracleTarball("c_switch");
        string dir = ExtractToTemp(tar);
        try
        {
            AssertSameMachine(MachineSource.Load(tar), MachineSource.Load(dir));
            AssertSameMachine(MachineSource.Load(tar), MachineSource.LoadHost(dir)!);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void LoadHostReturnsNullWhereThereIsNoPciSysfs()
    {
        string dir = Path.Combine(Path.GetTempPath(), "iommukit-empty-" + Guid.NewGuid().ToString("n"));
        Directory.CreateDirectory(Path.Combine(dir, "proc"));
        try { Assert.Null(MachineSource.LoadHost(dir)); }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void MissingPathIsBadInputNamingThePath()
    {
        var ex = Assert.Throws<InputException>(() => MachineSource.Load("/nonexistent/iommukit/host.tar.gz"));
        Assert.StartsWith("/nonexistent/iommukit/host.tar.gz: ", ex.Message);
    }
}
