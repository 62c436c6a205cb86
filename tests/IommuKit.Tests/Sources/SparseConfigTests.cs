using System.Buffers.Binary;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Sources;

/// <summary>
/// Issue 11 (speed on a live host): the sparse config read (<see cref="ConfigReader"/>, what a live sysfs gets) gives
/// the model exactly what the whole read gives, reads far fewer bytes and none it does not need, and knows which
/// dwords it holds; whatever writes raw config still reads the whole file.
/// </summary>
public class SparseConfigTests
{
    public static TheoryData<string> Machines()
    {
        var data = new TheoryData<string>();
        foreach (var m in Fixtures.OracleMachines()) data.Add(m);
        return data;
    }

    private static Machine Whole(string name) =>
        SysfsReader.Read(TarFileTree.Read(File.OpenRead(Fixtures.OracleTarball(name)), name), name, ConfigRead.Whole);

    [Theory]
    [MemberData(nameof(Machines))]
    public void ASparseReadOfEveryCapturedMachineGivesTheWholeReadsDevicesFactsGroupsAndVerdicts(string name)
    {
        var whole = Whole(name);
        string dir = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball(name));
        try
        {
            // Forced on an extracted tree: the pread path of DirectoryFileTree, as on a live sysfs.
            var sparse = SysfsReader.Read(new DirectoryFileTree(dir, name), name, ConfigRead.Needed, new ConfigReadHooks(ForceSparse: true));
            Assert.All(sparse.Topology.Devices, d => Assert.False(d.Facts.Config!.IsComplete, $"{d.Address}: config read whole"));
            AssertSameAnswers(whole, sparse);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void ASparseReadOfATarballGivesTheSameMachineToo(string name)
    {
        // A tree without positional reads (a tarball in memory) serves the same offsets from its bytes.
        var sparse = SysfsReader.Read(TarFileTree.Read(File.OpenRead(Fixtures.OracleTarball(name)), name), name, ConfigRead.Needed,
            new ConfigReadHooks(ForceSparse: true));
        AssertSameAnswers(Whole(name), sparse);
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void ASparseReadReadsFarFewerBytesAndOnlyTheRegistersTheModelDecodes(string name)
    {
        var whole = Whole(name);
        var reads = new List<(string Path, long Offset, int Count)>();
        string dir = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball(name));
        try
        {
            SysfsReader.Read(new DirectoryFileTree(dir, name), name, ConfigRead.Needed,
                new ConfigReadHooks(ForceSparse: true, OnRead: (p, o, n) => reads.Add((p, o, n))));
        }
        finally { Directory.Delete(dir, recursive: true); }

        long wholeBytes = whole.Topology.Devices.Sum(d => (long)d.Facts.Config!.Length);
        long sparseBytes = reads.Sum(r => (long)r.Count);
        Assert.True(sparseBytes * 4 < wholeBytes, $"{name}: the sparse read took {sparseBytes} of {wholeBytes} bytes");

        var byDevice = whole.Topology.Devices.ToDictionary(d => d.Address.ToString());
        foreach (var (path, offset, count) in reads)
        {
            // .../0000:00:1c.0/config
            string bdf = path[..path.LastIndexOf('/')];
            bdf = bdf[(bdf.LastIndexOf('/') + 1)..];
            var d = byDevice[bdf];
            var needed = NeededDwords(d.Facts.Config!, d.Address);
            for (long at = offset & ~3L; at < offset + count; at += 4)
                Assert.True(needed.Contains((int)at), $"{name}: {bdf}: read config offset 0x{at:x}, which the model does not use");
        }
    }

    /// <summary>
    /// The dwords the model reads of a config space, worked out from the whole bytes without the reader: the header,
    /// each capability's first dword, the PCIe capability's registers, the ACS, ARI and SR-IOV registers, the Intel
    /// PCH quirk's MPC and RCBA, and one dword past the unprivileged view (it tells a root read from a 64-byte one).
    /// </summary>
    private static HashSet<int> NeededDwords(ConfigSpace cfg, PciAddress address)
    {
        var set = new HashSet<int>();
        for (int o = 0; o < 0x40; o += 4) set.Add(o);
        set.Add(cfg.HeaderLayout == 2 ? 0x80 : 0x40);
        if (cfg.HeaderLayout == 2) set.Add(0x40);
        Assert.True(cfg.TryReadCapabilities(out var caps, out _));
        if (cfg.HasExtendedSpace) set.Add(0x100);
        bool rootPort = false;
        foreach (var c in caps)
        {
            set.Add(c.Offset & ~3);
            int[] body = (c.Extended, c.Id) switch
            {
                (false, PciCapabilityIds.Pcie) => [4, 0x0c, 0x10, 0x14],
                (false, _) => [0], // the list pointer sits in the first dword (offset + 1)
                (true, PciCapabilityIds.ExtAcs) => [4, 8],
                (true, PciCapabilityIds.ExtAri) => [4],
                (true, PciCapabilityIds.ExtSriov) => [0x0c, 0x10, 0x14, 0x18],
                _ => [],
            };
            foreach (var b in body) set.Add(c.Offset + b);
            if (!c.Extended && c.Id == PciCapabilityIds.Pcie) rootPort = PcieInfo.Decode(cfg, c.Offset)?.Type == PcieType.RootPort;
        }
        if (cfg.VendorId == 0x8086 && rootPort) set.Add(IommuKit.Grouping.AcsPolicy.IntelMpcReg);
        if (cfg.VendorId == 0x8086 && address.Device == 31 && address.Function == 0) set.Add(IommuKit.Grouping.AcsPolicy.IntelLpcRcbaReg);
        return set;
    }

    [Fact]
    public void AnIntelRootPortsAcsControlMpcAndTheLpcRcbaAreReadAndNothingElseOfTheirBodies()
    {
        // An Intel PCH root port (00:1c.0) with a PCIe capability at 0x40 and ACS at 0x140, and an LPC at 00:1f.0.
        var port = SourceTestKit.Config(0x8086, 0xa110, 0x060400, 1);
        port[0x06] = 0x10; port[0x34] = 0x40;
        port[0x40] = (byte)PciCapabilityIds.Pcie; port[0x41] = 0; port[0x42] = 0x42; port[0x43] = 0; // version 2, root port
        BinaryPrimitives.WriteUInt32LittleEndian(port.AsSpan(0x100), 0x14010001u); // AER v1, next 0x140
        BinaryPrimitives.WriteUInt32LittleEndian(port.AsSpan(0x140), 0x0001000du); // ACS v1, last
        BinaryPrimitives.WriteUInt32LittleEndian(port.AsSpan(0x144), 0x001d005fu); // cap / ctl
        BinaryPrimitives.WriteUInt32LittleEndian(port.AsSpan(0x148), 0xdeadbeefu); // egress vector / SPT control
        BinaryPrimitives.WriteUInt32LittleEndian(port.AsSpan(0xd8), 1u << 26);     // MPC IRBNCE
        BinaryPrimitives.WriteUInt32LittleEndian(port.AsSpan(0x104), 0x12345678u); // AER body: not needed
        var cfg = ReadSparse(port, new PciAddress(0, 0, 0x1c, 0), out var reads);
        Assert.NotNull(cfg);
        Assert.True(cfg!.TryReadUInt32(0x148, out uint egress) && egress == 0xdeadbeefu);
        Assert.True(cfg.TryReadUInt32(0xd8, out uint mpc) && mpc == 1u << 26);
        Assert.False(cfg.TryReadUInt32(0x104, out uint aer), "an AER register was read");
        Assert.Equal(0u, aer);
        Assert.Throws<InvalidOperationException>(() => cfg.ReadUInt32(0x104));
        Assert.DoesNotContain(reads, r => r.Offset <= 0x104 && r.Offset + r.Count > 0x104);
        var facts = PciDeviceFacts.FromConfig(new PciAddress(0, 0, 0x1c, 0), cfg, out var error);
        Assert.Null(error);
        Assert.Equal(new AcsInfo(0x140, (AcsFlags)0x5f, (AcsFlags)0x1d), facts.Acs);
        Assert.Equal(PcieType.RootPort, facts.Pcie!.Type);

        var lpc = SourceTestKit.Config(0x8086, 0xa143, 0x060100, 0x80, size: 256);
        BinaryPrimitives.WriteUInt32LittleEndian(lpc.AsSpan(0xf0), 0xfed1c001u);
        var lcfg = ReadSparse(lpc, new PciAddress(0, 0, 0x1f, 0), out _);
        Assert.True(lcfg!.TryReadUInt32(0xf0, out uint rcba) && rcba == 0xfed1c001u);
        Assert.False(lcfg.TryReadUInt32(0xd8, out _)); // not a root port: its MPC offset is not read
    }

    [Fact]
    public void ASparseConfigSpaceRefusesWhatItDidNotReadAndAWholeOneDoesNot()
    {
        var bytes = SourceTestKit.Config(0x8086, 0x10d3, 0x020000);
        bytes[0x80] = 7;
        var cfg = ReadSparse(bytes, new PciAddress(0, 1, 0, 0), out _)!;
        Assert.False(cfg.IsComplete);
        Assert.Equal(ConfigSpace.ExtendedSize, cfg.Length);
        Assert.False(cfg.IsRead(0x80, 1));
        Assert.False(cfg.TryReadUInt16(0x80, out _));
        Assert.Throws<InvalidOperationException>(() => cfg.ReadByte(0x80));
        Assert.Throws<InvalidOperationException>(() => cfg.Bytes.Length);
        Assert.True(cfg.IsRead(0, ConfigSpace.UnprivilegedSize));
        Assert.Equal(0x10d3, cfg.DeviceId);

        var full = new ConfigSpace(bytes);
        Assert.True(full.IsComplete);
        Assert.Equal(7, full.ReadByte(0x80));
        Assert.Equal(ConfigSpace.ExtendedSize / 4, full.DwordsRead);
    }

    [Theory]
    [InlineData(0, 64)]   // sysfs to a user without CAP_SYS_ADMIN: 64 bytes of a file that says 4096 (pci_read_config)
    [InlineData(2, 128)]  // ... and 128 of a CardBus bridge
    public void AnUnprivilegedReadComesBackAsTheHeaderTheWholeReadGives(int layout, int served)
    {
        // No capability at all: nothing past the header is needed, yet the reader must tell a 64-byte view from root's.
        var bytes = SourceTestKit.Config(0x104c, 0xac56, layout == 2 ? 0x060700u : 0x020000u, (byte)layout);
        var tree = new OneFileTree(bytes, stated: ConfigSpace.ExtendedSize, served: served);
        var r = ConfigReader.ReadSparse(tree, OneFileTree.Name, new PciAddress(0, 2, 0, 0), null);
        Assert.NotNull(r);
        Assert.Null(r!.Value.Space);
        Assert.Equal(bytes[..served], r.Value.Whole);
        Assert.Equal(served, tree.ReadBytes(OneFileTree.Name, ConfigSpace.ExtendedSize)!.Length); // what the whole read gets
    }

    [Theory]
    [InlineData(256)]
    [InlineData(4096)]
    public void ARootReadOfAConfigWithoutCapabilitiesIsSparseAndFull(int size)
    {
        var bytes = SourceTestKit.Config(0x1234, 0x5678, 0x020000, size: size);
        var cfg = ReadSparse(bytes, new PciAddress(0, 2, 0, 0), out var reads)!;
        Assert.False(cfg.HeaderOnly);
        Assert.Equal(size, cfg.Length);
        Assert.Equal(ConfigVisibility.Full, PciDeviceFacts.FromConfig(new PciAddress(0, 2, 0, 0), cfg, out _).Visibility);
        Assert.True(reads.Sum(r => r.Count) <= 72, $"{reads.Sum(r => r.Count)} bytes read");
    }

    [Theory]
    [InlineData(60)]   // shorter than the header: bad input, as from the whole read
    [InlineData(250)]  // shorter than the conventional space
    [InlineData(302)]  // not whole dwords
    public void AFileTheSparseReadDoesNotFitIsReadWholeAsBefore(int size)
    {
        var bytes = new byte[size];
        SourceTestKit.Config(0x1234, 0x5678, 0x020000, size: 64).AsSpan(0, Math.Min(size, 64)).CopyTo(bytes);
        var tree = new OneFileTree(bytes, stated: size, served: size);
        var r = ConfigReader.ReadSparse(tree, OneFileTree.Name, new PciAddress(0, 2, 0, 0), null)!.Value;
        Assert.Null(r.Space);
        Assert.Equal(tree.ReadBytes(OneFileTree.Name, ConfigSpace.ExtendedSize), r.Whole);
    }

    [Fact]
    public void HeaderOnlyAndIdAttributeRulesAreTheSameWithTheSparseRead()
    {
        // A 64-byte config (an unprivileged capture) and a VF whose config reads 0xffff for its ids: the attributes win.
        var vf = SourceTestKit.Config(0xffff, 0xffff, 0x020000, size: 64);
        var members = SourceTestKit.SmallMachine(endpointConfig: vf);
        members.Add(SourceTestKit.Text("sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/vendor", "0x8086\n"));
        members.Add(SourceTestKit.Text("sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/device", "0x10ed\n"));
        var tar = SourceTestKit.TarGz(members);
        var whole = SysfsReader.Read(TarFileTree.Read(new MemoryStream(tar), "t"), "t", ConfigRead.Whole);
        var sparse = SysfsReader.Read(TarFileTree.Read(new MemoryStream(tar), "t"), "t", ConfigRead.Needed, new ConfigReadHooks(ForceSparse: true));
        AssertSameAnswers(whole, sparse);
        var ep = sparse.Topology[PciAddress.Parse("0000:01:00.0")];
        Assert.Equal(ConfigVisibility.HeaderOnly, ep.Facts.Visibility);
        Assert.Equal((ushort)0x10ed, ep.DeviceId);
        Assert.True(ep.Facts.Config!.IsComplete); // 64 bytes: read whole, as before
        Assert.Equal(whole.Warnings, sparse.Warnings);
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void ExportAndTheWholeReadStillCarryTheFullConfig(string name)
    {
        var tar = File.ReadAllBytes(Fixtures.OracleTarball(name));
        var whole = Whole(name);
        // Whole wins over the forcing switch: what export asks for.
        var asked = SysfsReader.Read(TarFileTree.Read(new MemoryStream(tar), name), name, ConfigRead.Whole, new ConfigReadHooks(ForceSparse: true));
        var sparse = SysfsReader.Read(TarFileTree.Read(new MemoryStream(tar), name), name, ConfigRead.Needed, new ConfigReadHooks(ForceSparse: true));
        foreach (var d in asked.Topology.Devices)
        {
            Assert.True(d.Facts.Config!.IsComplete);
            Assert.True(d.Facts.Config.Bytes.SequenceEqual(whole.Topology[d.Address].Facts.Config!.Bytes));
        }
        string json = MachineJson.ToJson(asked);
        Assert.Equal(MachineJson.ToJson(whole), json);
        Assert.Equal(whole.Topology.Count, json.Split("\"config\":").Length - 1);
        // A sparse machine has no raw bytes to write: its JSON carries the facts alone, and loads back to the same answers.
        string sparseJson = MachineJson.ToJson(sparse);
        Assert.DoesNotContain("\"config\":", sparseJson);
        AssertSameAnswers(whole, MachineJson.Read(System.Text.Encoding.UTF8.GetBytes(sparseJson).AsMemory(), name), compareVisibility: true);
    }

    [Fact]
    public void ASnapshotOfATreeCarriesEveryConfigFileWhole()
    {
        string name = Fixtures.OracleMachines().First();
        string dir = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball(name));
        try
        {
            using var ms = new MemoryStream();
            SnapshotWriter.Capture(dir, ms);
            var configs = TarMembers.Read(Fixtures.OracleTarball(name)).Where(m => m.Name.EndsWith("/config", StringComparison.Ordinal)).ToList();
            var taken = TarMembersOf(ms.ToArray()).Where(m => m.Name.EndsWith("/config", StringComparison.Ordinal)).ToDictionary(m => m.Name);
            Assert.NotEmpty(configs);
            foreach (var c in configs) Assert.Equal(c.Data, taken[c.Name].Data);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void OnlyALiveSysfsIsReadSparselyByDefault()
    {
        string name = Fixtures.OracleMachines().First();
        string dir = SourceTestKit.ExtractToTemp(Fixtures.OracleTarball(name));
        try
        {
            Assert.False(new DirectoryFileTree(dir).IsLiveSysfs(SysfsReader.DevicesDir));
            Assert.All(MachineSource.LoadHost(dir)!.Topology.Devices, d => Assert.True(d.Facts.Config!.IsComplete));
            Assert.All(MachineSource.Load(dir).Topology.Devices, d => Assert.True(d.Facts.Config!.IsComplete));
        }
        finally { Directory.Delete(dir, recursive: true); }
        Assert.False(TarFileTree.Read(File.OpenRead(Fixtures.OracleTarball(name)), name).IsLiveSysfs(SysfsReader.DevicesDir));

        // This host: /sys is a sysfs mount when /proc/self/mountinfo says so.
        bool sysfs = File.Exists("/proc/self/mountinfo")
            && File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ') is var f && f.Length > 4 && f[4] == "/sys" && l.Contains(" - sysfs ", StringComparison.Ordinal));
        bool hasPci = Directory.Exists("/" + SysfsReader.DevicesDir);
        Assert.Equal(sysfs && hasPci, new DirectoryFileTree("/").IsLiveSysfs(SysfsReader.DevicesDir));
    }

    [Fact]
    public void ThisLiveHostReadSparselyGivesTheFactsOfTheWholeRead()
    {
        // On a machine with a live PCI sysfs (this one when the tests run on a host or VM; nothing to compare in a
        // container without one) the default read is sparse for root and the facts are those of the whole read.
        if (MachineSource.LoadHost("/") is not { } sparse) return;
        var whole = MachineSource.LoadHost("/", ConfigRead.Whole)!;
        AssertSameAnswers(whole, sparse);
        foreach (var d in sparse.Topology.Devices)
        {
            var w = whole.Topology[d.Address].Facts.Config!;
            // Root reads 256 or 4096 bytes and reads them sparsely; a user sees the header only, read whole.
            Assert.Equal(w.Length < ConfigSpace.ConventionalSize, d.Facts.Config!.IsComplete);
        }
    }

    // ------------------------------------------------------------------ helpers

    private static ConfigSpace? ReadSparse(byte[] bytes, PciAddress address, out List<(long Offset, int Count)> reads)
    {
        var list = new List<(long, int)>();
        var r = ConfigReader.ReadSparse(new OneFileTree(bytes, bytes.Length, bytes.Length), OneFileTree.Name, address, (_, o, n) => list.Add((o, n)));
        reads = list;
        return r?.Space;
    }

    private static List<Member> TarMembersOf(byte[] tarGz)
    {
        string f = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(f, tarGz);
            return TarMembers.Read(f);
        }
        finally { File.Delete(f); }
    }

    /// <summary>Same devices, facts (config bytes aside), groups, numbers, fingerprints, notes and vfio verdicts.</summary>
    private static void AssertSameAnswers(Machine whole, Machine sparse, bool compareVisibility = true)
    {
        Assert.Equal(whole.Topology.Count, sparse.Topology.Count);
        for (int i = 0; i < whole.Topology.Count; i++)
        {
            var e = whole.Topology.Devices[i];
            var a = sparse.Topology.Devices[i];
            Assert.Equal(e.Address, a.Address);
            Assert.Equal(e.Parent?.Address, a.Parent?.Address);
            Assert.Equal(e.IsMultifunction, a.IsMultifunction);
            Assert.Equal(e.PhysicalFunction?.Address, a.PhysicalFunction?.Address);
            SourceTestKit.AssertSameFacts(e.Facts with { Description = null }, a.Facts with { Description = null, Visibility = compareVisibility ? a.Facts.Visibility : e.Facts.Visibility }, compareConfig: false);
            // Every dword the sparse read holds is the device's.
            if (a.Facts.Config is { } sc && e.Facts.Config is { } wc)
            {
                for (int o = 0; o + 4 <= sc.Length; o += 4)
                {
                    if (sc.TryReadUInt32(o, out uint v)) Assert.Equal(wc.ReadUInt32(o), v);
                }
            }
        }
        Assert.Equal(whole.Warnings, sparse.Warnings);
        var rw = HostAnalysis.Analyze(whole);
        var rs = HostAnalysis.Analyze(sparse);
        Assert.Equal(rw.State, rs.State);
        AssertSameGroups(rw.Groups, rs.Groups);
        AssertSameGroups(rw.ModelGroups, rs.ModelGroups);
        Assert.Equal(rw.Disagreements.Select(d => d.Text), rs.Disagreements.Select(d => d.Text));
        Assert.Equal(rw.Notes, rs.Notes);
        foreach (var d in whole.Topology.Devices)
        {
            var vw = HostAnalysis.VfioCheck(rw, d.Address, null);
            var vs = HostAnalysis.VfioCheck(rs, d.Address, null);
            Assert.Equal(vw.Class, vs.Class);
            Assert.Equal(vw.Group?.Id, vs.Group?.Id);
            Assert.Equal(vw.Outcome, vs.Outcome);
        }
    }

    private static void AssertSameGroups(IReadOnlyList<GroupReport> e, IReadOnlyList<GroupReport> a)
    {
        Assert.Equal(e.Count, a.Count);
        for (int i = 0; i < e.Count; i++)
        {
            Assert.Equal(e[i].Id, a[i].Id);
            Assert.Equal(e[i].Origin, a[i].Origin);
            Assert.Equal(e[i].Type, a[i].Type);
            Assert.Equal(e[i].ReservedRegions, a[i].ReservedRegions);
            Assert.Equal(e[i].Fingerprint, a[i].Fingerprint);
            Assert.Equal(e[i].Devices.Select(d => d.Address), a[i].Devices.Select(d => d.Address));
            Assert.Equal(e[i].UnknownFacts.Select(d => d.Address), a[i].UnknownFacts.Select(d => d.Address));
        }
    }

    /// <summary>
    /// A tree of one file, <c>config</c>, that states <c>stated</c> bytes and serves the first <c>served</c>: what
    /// sysfs does for a user without CAP_SYS_ADMIN (drivers/pci/pci-sysfs.c pci_read_config: size 4096, 64 bytes read).
    /// </summary>
    private sealed class OneFileTree(byte[] bytes, long stated, int served) : FileTree("one-file")
    {
        public const string Name = "config";

        protected override FileNodeKind LstatCore(string canonicalPath) =>
            canonicalPath == Name ? FileNodeKind.File : canonicalPath.Length == 0 ? FileNodeKind.Directory : FileNodeKind.Missing;

        protected override string ReadLinkCore(string canonicalPath) => "";

        protected override IReadOnlyList<string> ListCore(string canonicalPath) => [Name];

        protected override byte[] ReadCore(string canonicalPath, int maxBytes) => bytes[..Math.Min(served, maxBytes + 1)];

        public override RandomAccessFile? OpenRandomAccess(string path, int maxBytes) =>
            path == Name ? new Served(bytes[..served], stated) : null;

        private sealed class Served(byte[] visible, long stated) : RandomAccessFile
        {
            private readonly MemoryRandomAccessFile _inner = new(visible);
            public override long StatedSize => stated;
            public override int ReadAt(long offset, Span<byte> buffer) => _inner.ReadAt(offset, buffer);
        }
    }
}
