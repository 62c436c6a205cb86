using System.Text;
using IommuKit.Pci;
using IommuKit.Sources.Lspci;
using Xunit;

namespace IommuKit.Tests.Lspci;

/// <summary>Decoding of hand-written lspci records, one claim per test.</summary>
public class LspciTextTests
{
    private static Machine Read(string text) => LspciReader.Read(text.Replace("\r\n", "\n"), "t.txt");

    private const string RootPort = """
        00:1c.0 PCI bridge [0604]: Intel Corporation Device [8086:a110] (rev f0) (prog-if 00 [Normal decode])
        	Control: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx+
        	Status: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- >SERR- <PERR- INTx-
        	IOMMU group: 7
        	Bus: primary=00, secondary=01, subordinate=02, sec-latency=0
        	Capabilities: [40] Express (v2) Root Port (Slot+), MSI 00
        		DevCap:	MaxPayload 256 bytes, PhantFunc 0
        		LnkCap:	Port #5, Speed 8GT/s, Width x4, ASPM not supported
        		LnkSta:	Speed 2.5GT/s (downgraded), Width x1 (ok)
        		SltCap:	AttnBtn- PwrCtrl- MRL- AttnInd- PwrInd- HotPlug+ Surprise+
        			Slot #12, PowerLimit 10.000W; Interlock- NoCompl+
        	Capabilities: [100 v1] Advanced Error Reporting
        		UESta:	DLP- SDES- TLP- FCP- CmpltTO- CmpltAbrt- UnxCmplt- RxOF- MalfTLP- ECRC- UnsupReq- ACSViol-
        	Capabilities: [148 v1] Access Control Services
        		ACSCap:	SrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans+
        		ACSCtl:	SrcValid+ TransBlk- ReqRedir- CmpltRedir+ UpstreamFwd- EgressCtrl- DirectTrans-
        	Kernel driver in use: pcieport

        01:00.0 Ethernet controller [0200]: Intel Corporation I350 Gigabit Network Connection [8086:1521] (rev 01)
        	Subsystem: Intel Corporation Ethernet Server Adapter I350-T4 [8086:00a1]
        	Control: I/O- Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx+
        	Physical Slot: 3
        	IOMMU group: 12
        	Capabilities: [a0] Express (v2) Endpoint, MSI 00
        		DevCap:	MaxPayload 512 bytes, PhantFunc 0, Latency L0s <512ns, L1 <64us
        	Capabilities: [150 v1] Alternative Routing-ID Interpretation (ARI)
        		ARICap:	MFVC- ACS-, Next Function: 1
        		ARICtl:	MFVC- ACS-, Function Group: 0
        	Capabilities: [160 v1] Single Root I/O Virtualization (SR-IOV)
        		IOVCap:	Migration-, Interrupt Message Number: 000
        		Initial VFs: 8, Total VFs: 8, Number of VFs: 2, Function Dependency Link: 00
        		VF offset: 128, stride: 4, Device ID: 1520
        	Kernel driver in use: igb
        	Kernel modules: igb

        01:00.1 Ethernet controller [0200]: Intel Corporation I350 Gigabit Network Connection [8086:1521] (rev 01)
        	Control: I/O- Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx+
        	IOMMU group: 12
        	Capabilities: [a0] Express (v2) Endpoint, MSI 00
        		DevCap:	MaxPayload 512 bytes, PhantFunc 0, Latency L0s <512ns, L1 <64us

        """;

    [Fact]
    public void HeaderLineGivesIdsClassWithProgIfAndRevision()
    {
        var m = Read("00:17.0 SATA controller [0106]: Intel Corporation Device [8086:54d3] (rev 1a) (prog-if 01 [AHCI 1.0])\n\tSubsystem: ASRock Incorporation Device [1849:54d3]\n\n");
        var d = m.Topology[PciAddress.Parse("00:17.0")];
        Assert.Equal((ushort)0x8086, d.VendorId);
        Assert.Equal((ushort)0x54d3, d.DeviceId);
        Assert.Equal(0x010601u, d.ClassCode);
        Assert.Equal((byte)0x1a, d.Facts.Revision);
        Assert.Equal((ushort)0x1849, d.Facts.SubsystemVendorId);
        Assert.Equal((ushort)0x54d3, d.Facts.SubsystemDeviceId);
        Assert.Equal(0, d.Facts.HeaderLayout);
        Assert.Null(d.Facts.MultifunctionBit);
        Assert.Equal("SATA controller [0106]: Intel Corporation Device [8086:54d3] (rev 1a) (prog-if 01 [AHCI 1.0])", d.Facts.Description);
    }

    [Fact]
    public void DeviceNamesWithBracketsDoNotHideTheIds()
    {
        var m = Read("02:00.0 Serial Attached SCSI controller [0107]: Broadcom / LSI SAS2008 PCI-Express Fusion-MPT SAS-2 [Falcon] [1000:0072] (rev 03)\n\n");
        var d = m.Topology[PciAddress.Parse("02:00.0")];
        Assert.Equal((ushort)0x1000, d.VendorId);
        Assert.Equal((ushort)0x0072, d.DeviceId);
        Assert.Equal(0x010700u, d.ClassCode);
        Assert.Equal((byte)3, d.Facts.Revision);
    }

    [Fact]
    public void RootPortRecordDecodesBridgeBusesPcieAcsGroupDriverAndSlot()
    {
        var m = Read(RootPort);
        var rp = m.Topology[PciAddress.Parse("00:1c.0")];
        Assert.True(rp.IsBridge);
        Assert.Equal(((byte)0, (byte)1, (byte)2), rp.Facts.BridgeBuses);
        Assert.Equal(PcieType.RootPort, rp.PcieType);
        Assert.Equal(0x40, rp.Facts.Pcie!.Offset);
        Assert.Equal(2, rp.Facts.Pcie.Version);
        Assert.True(rp.Facts.Pcie.SlotImplemented);
        Assert.True(rp.Facts.Pcie.HotPlugCapable);
        Assert.Equal(12, rp.Facts.Pcie.PhysicalSlot);
        Assert.Equal(1, rp.Facts.Pcie.CurrentLinkSpeed);
        Assert.Equal(1, rp.Facts.Pcie.CurrentLinkWidth);
        Assert.Equal(new AcsInfo(0x148, AcsFlags.SV | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF | AcsFlags.DT, AcsFlags.SV | AcsFlags.CR), rp.Acs);
        Assert.Equal("pcieport", rp.Driver);
        Assert.Equal(7, rp.Facts.KernelGroup);
        Assert.Equal(ConfigVisibility.Full, rp.Facts.Visibility);
        Assert.Equal(
            [new PciCapability(0x10, 0x40, false), new PciCapability(0x01, 0x100, true, 1), new PciCapability(0x0d, 0x148, true, 1)],
            rp.Facts.Capabilities);
        Assert.Empty(m.Warnings);
    }

    [Fact]
    public void EndpointRecordDecodesAriSriovPhysicalSlotAndParent()
    {
        var m = Read(RootPort);
        var nic = m.Topology[PciAddress.Parse("01:00.0")];
        Assert.Equal(PciAddress.Parse("00:1c.0"), nic.Parent!.Address);
        Assert.Equal(new AriInfo(0x150, 1), nic.Facts.Ari);
        Assert.Equal(new SriovInfo(0x160, TotalVfs: 8, NumVfs: 2, FirstVfOffset: 128, VfStride: 4, VfDeviceId: 0x1520), nic.Facts.Sriov);
        Assert.Equal("3", nic.Facts.PhysicalSlot);
        Assert.Equal("0000:01:00", m.Slots["3"]);
        Assert.Single(m.Slots);
        Assert.Equal("igb", nic.Driver);
        Assert.True(nic.IsMultifunction); // inferred from 01:00.1: lspci text does not show the header type byte
        Assert.Null(nic.Facts.MultifunctionBit);
        Assert.Null(nic.Acs);
    }

    [Fact]
    public void AFunctionZeroWhoseSlotHoldsOnlyItsVirtualFunctionsIsNotMultifunction()
    {
        const string pf = "00:05.0 Non-Volatile memory controller [0108]: Red Hat, Inc. QEMU NVM Express Controller [1b36:0010] (rev 02) (prog-if 02 [NVM Express])\n" +
                          "\tControl: I/O- Mem+\n\tCapabilities: [120 v1] Single Root I/O Virtualization (SR-IOV)\n" +
                          "\t\tInitial VFs: 2, Total VFs: 2, Number of VFs: NUM, Function Dependency Link: 00\n\t\tVF offset: 1, stride: 1, Device ID: 0010\n\n";
        const string vfs = "00:05.1 Non-Volatile memory controller [0108]: Red Hat, Inc. Device [1b36:0010]\n\tControl: I/O- Mem-\n\n" +
                           "00:05.2 Non-Volatile memory controller [0108]: Red Hat, Inc. Device [1b36:0010]\n\tControl: I/O- Mem-\n\n";
        var withVfs = Read(pf.Replace("NUM", "2") + vfs).Topology[PciAddress.Parse("00:05.0")];
        Assert.False(withVfs.IsMultifunction); // pci_iov_add_virtfn places VFs; pci_scan_slot never saw them
        Assert.False(withVfs.Facts.MultifunctionBit);
        // With no VF enabled, .1 and .2 are ordinary functions found by scanning the slot.
        var ordinary = Read(pf.Replace("NUM", "0") + vfs).Topology[PciAddress.Parse("00:05.0")];
        Assert.True(ordinary.IsMultifunction);
        Assert.Null(ordinary.Facts.MultifunctionBit);
    }

    [Fact]
    public void IommuGroupLinesMakeKernelGroupsInIdOrderAndNoLinesMakeNull()
    {
        var m = Read(RootPort);
        Assert.NotNull(m.KernelGroups);
        Assert.Equal([7, 12], m.KernelGroups!.Select(g => g.Id));
        Assert.Equal([PciAddress.Parse("01:00.0"), PciAddress.Parse("01:00.1")], m.KernelGroups[1].Devices);
        Assert.All(m.KernelGroups, g => Assert.Null(g.Type));

        var without = Read(RootPort.Replace("\tIOMMU group: 7\n", "").Replace("\tIOMMU group: 12\n", ""));
        Assert.Null(without.KernelGroups);
    }

    [Theory]
    [InlineData("Endpoint", PcieType.Endpoint)]
    [InlineData("Legacy Endpoint", PcieType.LegacyEndpoint)]
    [InlineData("Root Port (Slot-)", PcieType.RootPort)]
    [InlineData("Upstream Port", PcieType.Upstream)]
    [InlineData("Downstream Port (Slot+)", PcieType.Downstream)]
    [InlineData("PCI-Express to PCI/PCI-X Bridge", PcieType.PciBridge)]
    [InlineData("PCI/PCI-X to PCI-Express Bridge (Slot-)", PcieType.PcieBridge)]
    [InlineData("Root Complex Integrated Endpoint", PcieType.RcEnd)]
    [InlineData("Root Complex Event Collector", PcieType.RcEc)]
    public void EveryPcieTypeNameLspciPrintsIsItsKernelType(string name, PcieType type)
    {
        foreach (var version in new[] { "(v1) ", "(v2) ", "" }) // "(vN)" only at -vv; -v prints the type alone
        {
            var m = Read($"00:03.0 Non-Essential Instrumentation [1300]: Vendor Device [1234:5678]\n\tCapabilities: [40] Express {version}{name}, MSI 00\n\n");
            var d = m.Topology[PciAddress.Parse("00:03.0")];
            Assert.Equal(type, d.PcieType);
            Assert.Equal(name.Split(" (Slot")[0], type.ToDisplayName());
            Assert.Equal(name.Contains("Slot+"), d.Facts.Pcie!.SlotImplemented);
        }
    }

    [Fact]
    public void DomainAndShortAddressesBothLoadAndDomainsStaySeparate()
    {
        var text = "0000:00:01.0 PCI bridge [0604]: V D [1111:2222]\n\tBus: primary=00, secondary=01, subordinate=01, sec-latency=0\n\n" +
                   "0000:01:00.0 Ethernet controller [0200]: V D [1111:3333]\n\n" +
                   "0002:01:00.0 Ethernet controller [0200]: V D [1111:3333]\n\n";
        var m = Read(text);
        Assert.Equal(PciAddress.Parse("0000:00:01.0"), m.Topology[PciAddress.Parse("01:00.0")].Parent!.Address);
        Assert.Null(m.Topology[PciAddress.Parse("0002:01:00.0")].Parent);
        Assert.Equal(2, m.Topology.RootBuses.Count);
    }

    [Fact]
    public void NumericOnlyDashNFormDecodesIdsAndClass()
    {
        var m = Read("00:1c.0 0604: 8086:a110 (rev f0)\n\tSubsystem: 1849:a110\n\tBus: primary=00, secondary=01, subordinate=01, sec-latency=0\n\n");
        var d = m.Topology[PciAddress.Parse("00:1c.0")];
        Assert.Equal((ushort)0xa110, d.DeviceId);
        Assert.Equal(0x060400u, d.ClassCode);
        Assert.Equal((byte)0xf0, d.Facts.Revision);
        Assert.True(d.IsBridge);
        Assert.Empty(m.Warnings);
    }

    [Fact]
    public void NamesWithoutNumericIdsLoadWithOneWarning()
    {
        var m = Read("00:00.0 Host bridge: Intel Corporation Device\n\tControl: I/O-\n\n00:02.0 VGA compatible controller: Intel Corporation Device\n\tControl: I/O-\n\n");
        Assert.Equal(2, m.Topology.Count);
        Assert.Single(m.Warnings, w => w.Contains("lack numeric ids", StringComparison.Ordinal) && w.Contains("2 of 2", StringComparison.Ordinal));
    }

    [Fact]
    public void NonRootRecordIsHeaderOnlyWithUnknownPcieTypeAndOneWarning()
    {
        var text = "00:1c.0 PCI bridge [0604]: V D [8086:a110]\n\tControl: I/O+\n\tBus: primary=00, secondary=01, subordinate=01, sec-latency=0\n\tCapabilities: <access denied>\n\tKernel driver in use: pcieport\n\n" +
                   "01:00.0 Ethernet controller [0200]: V D [8086:1521]\n\tControl: I/O+\n\tCapabilities: <access denied>\n\n" +
                   "00:06.0 System peripheral [0880]: V D [8086:09ab]\n\tControl: I/O-\n\tStatus: Cap- 66MHz-\n\n";
        var m = Read(text);
        var rp = m.Topology[PciAddress.Parse("00:1c.0")];
        Assert.Equal(ConfigVisibility.HeaderOnly, rp.Facts.Visibility);
        Assert.Null(rp.Facts.Pcie);
        Assert.Null(rp.Acs);
        Assert.Equal(rp, m.Topology[PciAddress.Parse("01:00.0")].Parent); // the header still shows bus numbers
        Assert.Equal(ConfigVisibility.Full, m.Topology[PciAddress.Parse("00:06.0")].Facts.Visibility); // Cap-: nothing hidden
        var w = Assert.Single(m.Warnings);
        Assert.Contains("no capabilities visible: run lspci as root", w);
        Assert.Contains("2 of 3", w);
    }

    [Fact]
    public void PlainLspciWithoutDetailWarnsThatBridgesAndTypesAreUnknown()
    {
        var m = Read("00:00.0 Host bridge [0600]: Intel Corporation Device [8086:461c]\n00:1c.0 PCI bridge [0604]: Intel Corporation Device [8086:54be]\n01:00.0 Ethernet controller [0200]: Realtek [10ec:8125]\n");
        Assert.Equal(3, m.Topology.Count);
        Assert.All(m.Topology.Devices, d => Assert.Equal(ConfigVisibility.HeaderOnly, d.Facts.Visibility));
        Assert.Single(m.Warnings, w => w.Contains("no detail lines", StringComparison.Ordinal));
    }

    [Fact]
    public void LspciDashKWithoutVerboseLeavesCapabilitiesUnknown()
    {
        var m = Read("00:1c.0 PCI bridge [0604]: Intel Corporation Device [8086:54be]\n\tKernel driver in use: pcieport\n\n" +
                     "01:00.0 Ethernet controller [0200]: Realtek [10ec:8125]\n\tSubsystem: ASRock [1849:8125]\n\tKernel driver in use: r8169\n\tKernel modules: r8169\n\n");
        Assert.All(m.Topology.Devices, d => Assert.Equal(ConfigVisibility.HeaderOnly, d.Facts.Visibility));
        Assert.Equal("r8169", m.Topology[PciAddress.Parse("01:00.0")].Driver);
        Assert.Single(m.Warnings, w => w.Contains("2 of 2 devices have no detail lines", StringComparison.Ordinal));
    }

    [Fact]
    public void AcsWithoutItsDetailLinesIsUnknownNotAbsent()
    {
        var m = Read("00:1c.0 PCI bridge [0604]: V D [8086:a110]\n\tBus: primary=00, secondary=01, subordinate=01, sec-latency=0\n\tCapabilities: [40] Express Root Port (Slot+), MSI 00\n\tCapabilities: [148] Access Control Services\n\n".Replace("[148]", "[148 v1]"));
        var d = m.Topology[PciAddress.Parse("00:1c.0")];
        Assert.Null(d.Acs);
        Assert.Equal(ConfigVisibility.NoExtended, d.Facts.Visibility);
        Assert.Single(m.Warnings, w => w.Contains("ACS is unknown", StringComparison.Ordinal));
    }

    [Fact]
    public void CrLfLineEndsAndLostIndentationStillDecode()
    {
        var text = RootPort.Replace("\t", "    ").Replace("\n", "\r\n");
        var m = LspciReader.Read(text, "t.txt");
        Assert.Equal(3, m.Topology.Count);
        Assert.Equal(AcsFlags.SV | AcsFlags.CR, m.Topology[PciAddress.Parse("00:1c.0")].Acs!.Control);
        var stripped = string.Join('\n', RootPort.Split('\n').Select(l => l.TrimStart()));
        var m2 = Read(stripped);
        Assert.Equal(AcsFlags.SV | AcsFlags.CR, m2.Topology[PciAddress.Parse("00:1c.0")].Acs!.Control);
        Assert.Equal("igb", m2.Topology[PciAddress.Parse("01:00.0")].Driver);
    }

    [Fact]
    public void AShellPromptBeforeTheDumpIsTolerated()
    {
        var text = "$ sudo lspci -vvnn\n" + RootPort;
        Assert.True(LspciReader.LooksLikeLspci(text));
        var m = Read(text);
        Assert.Equal(3, m.Topology.Count);
        Assert.Equal("t.txt:1: text before the first device is not an lspci line; skipped", Assert.Single(m.Warnings));
    }

    [Fact]
    public void AByteOrderMarkDoesNotHideTheFirstDevice()
    {
        var text = "\uFEFF" + RootPort;
        Assert.True(LspciReader.LooksLikeLspci(text));
        var m = Read(text);
        Assert.Equal(3, m.Topology.Count);
        Assert.Empty(m.Warnings);
    }

    [Theory]
    [InlineData("hello world\nthis is not lspci\n", 1)]
    [InlineData("\n\n{\"version\": 1, \"devices\": []}\n", 3)]
    [InlineData("garbage\n" + "00:1c.0 PCI bridge [0604]: V D [8086:a110]\n\nnot a device line\n", 4)]
    public void TextThatIsNotLspciThrowsNamingTheFileAndLine(string text, int line)
    {
        var e = Assert.Throws<InputException>(() => Read(text));
        Assert.StartsWith($"t.txt:{line}:", e.Message);
    }

    [Fact]
    public void EmptyTextThrowsNamingTheFile()
    {
        var e = Assert.Throws<InputException>(() => Read(""));
        Assert.StartsWith("t.txt: ", e.Message);
        Assert.False(LspciReader.LooksLikeLspci(""));
    }

    [Fact]
    public void TheSameFunctionTwiceThrowsNamingTheLineAndDevice()
    {
        var text = RootPort + "0000:01:00.1 Ethernet controller [0200]: V D [8086:1521]\n\n";
        var e = Assert.Throws<InputException>(() => Read(text));
        int line = text.Split('\n').ToList().FindLastIndex(l => l.StartsWith("0000:01:00.1", StringComparison.Ordinal)) + 1;
        Assert.Equal($"t.txt:{line}: 0000:01:00.1: the same PCI function appears twice in the dump", e.Message);
    }

    [Fact]
    public void ALineLongerThanTheCapThrowsNamingTheLineAndDevice()
    {
        var text = RootPort.Replace("\tKernel modules: igb", "\tKernel modules: " + new string('x', LspciReader.MaxLineLength));
        var e = Assert.Throws<InputException>(() => Read(text));
        Assert.Contains("0000:01:00.0", e.Message);
        Assert.Contains($"{LspciReader.MaxLineLength}-character cap", e.Message);
    }

    [Fact]
    public void NoiseInsideARecordIsSkippedWithAWarningNamingLineAndDevice()
    {
        var lines = RootPort.Split('\n').ToList();
        int at = lines.FindIndex(l => l.Contains("Physical Slot", StringComparison.Ordinal));
        lines.Insert(at, "\t\u0001\u0002binary\u0000noise");
        lines.Insert(at, "\tBus: primary=zz");
        lines.Insert(at, "zz garbage");
        var m = Read(string.Join('\n', lines));
        Assert.Equal(3, m.Topology.Count);
        Assert.Equal("igb", m.Topology[PciAddress.Parse("01:00.0")].Driver);
        Assert.Contains(m.Warnings, w => w.StartsWith($"t.txt:{at + 3}: 0000:01:00.0: line holds control characters", StringComparison.Ordinal));
        Assert.Contains(m.Warnings, w => w.StartsWith($"t.txt:{at + 2}: 0000:01:00.0: cannot read the Bus: line", StringComparison.Ordinal));
        Assert.Contains(m.Warnings, w => w.StartsWith($"t.txt:{at + 1}: 0000:01:00.0: unindented text inside the record", StringComparison.Ordinal));
        Assert.Equal(3, m.Warnings.Count);
    }

    [Fact]
    public void PcilibStderrInsideALineIsCutOutAndTheHalvesJoined()
    {
        var text = RootPort.Replace("\tKernel driver in use: igb\n", "\tKernel driver in use: pcilib: sysfs_read_vpd: read failed: No such device\nigb\n");
        var m = Read(text);
        Assert.Equal("igb", m.Topology[PciAddress.Parse("01:00.0")].Driver);
        Assert.Empty(m.Warnings);
    }

    [Fact]
    public void StderrMessagesInsertedMidLineAreCutOutEvenSeveralInARow()
    {
        // stdout buffered, stderr not: three messages land after "(rev 01)" and stdout's own newline follows them.
        var text = RootPort.Replace("[8086:1521] (rev 01)\n\tSubsystem",
            "[8086:1521] (rev 01)lspci: Unable to load libkmod resources: error -2\nlspci: Unable to load libkmod resources: error -2\npcilib: sysfs_read_vpd: read failed: No such device\n\n\tSubsystem");
        var m = Read(text);
        var nic = m.Topology[PciAddress.Parse("01:00.0")];
        Assert.Equal((ushort)0x1521, nic.DeviceId);
        Assert.Equal((ushort)0x00a1, nic.Facts.SubsystemDeviceId);
        Assert.Equal("igb", nic.Driver);
        Assert.Empty(m.Warnings);
    }

    [Fact]
    public void LspciMessagesOnTheirOwnLinesAreDropped()
    {
        var text = "lspci: Unable to load libkmod resources: error -2\n" + RootPort.Replace("\n01:00.1 ", "lspci: Unable to load libkmod resources: error -2\n01:00.1 ");
        var m = Read(text);
        Assert.Equal(3, m.Topology.Count);
        Assert.Empty(m.Warnings);
    }

    /// <summary>A hand-built root port config space: PCIe capability at 0x40 (root port, slot), ACS at 0x100.</summary>
    private static byte[] RootPortConfig(int length)
    {
        var c = new byte[length];
        c[0x00] = 0x86; c[0x01] = 0x80; c[0x02] = 0x10; c[0x03] = 0xa1; // 8086:a110
        c[0x06] = 0x10;                                                 // status: capability list
        c[0x08] = 0xf0; c[0x09] = 0x00; c[0x0a] = 0x04; c[0x0b] = 0x06; // rev f0, class 0604 prog-if 00
        c[0x0e] = 0x81;                                                 // header type 1, multifunction
        c[0x18] = 0x00; c[0x19] = 0x01; c[0x1a] = 0x02;                 // buses 00/01/02
        c[0x34] = 0x40;
        if (length > 0x40) { c[0x40] = 0x10; c[0x41] = 0x00; c[0x42] = 0x42; c[0x43] = 0x01; } // PCIe v2, root port, slot
        if (length >= 4096)
        {
            c[0x100] = 0x0d; c[0x101] = 0x00; c[0x102] = 0x01; c[0x103] = 0x00; // ACS v1, next 0
            c[0x104] = 0x5f; c[0x105] = 0x00;                                   // ACS cap: SV TB RR CR UF DT
            c[0x106] = 0x1d; c[0x107] = 0x00;                                   // ACS ctl: SV RR CR UF
        }
        return c;
    }

    private static string Hex(byte[] bytes)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < bytes.Length; i += 16)
        {
            sb.Append(i.ToString("x2")).Append(':');
            for (int j = i; j < i + 16; j++) sb.Append(' ').Append(bytes[j].ToString("x2"));
            sb.Append('\n');
        }
        return sb.ToString();
    }

    [Fact]
    public void HexOnlyDumpDecodesLikeTheConfigBytes()
    {
        var bytes = RootPortConfig(4096);
        var m = Read("00:1c.0 PCI bridge: Intel Corporation Device a110\n" + Hex(bytes) + "\n");
        var d = m.Topology[PciAddress.Parse("00:1c.0")];
        Assert.Equal(PcieType.RootPort, d.PcieType);
        Assert.Equal(new AcsInfo(0x100, AcsFlags.SV | AcsFlags.TB | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF | AcsFlags.DT, AcsFlags.Required), d.Acs);
        Assert.Equal(((byte)0, (byte)1, (byte)2), d.Facts.BridgeBuses);
        Assert.True(d.Facts.MultifunctionBit);
        Assert.Equal(0x060400u, d.ClassCode);
        Assert.Equal(bytes, d.Facts.Config!.Bytes.ToArray());
        Assert.Empty(m.Warnings); // ids come from the hex, so names without numbers cost nothing
    }

    [Fact]
    public void A256ByteHexDumpOfAPcieDeviceIsWholeOnlyWhenTheDumpShowsExtendedSpaceElsewhere()
    {
        var port = "00:1c.0 PCI bridge: Intel Corporation Device a110\n" + Hex(RootPortConfig(256)) + "\n";
        // lspci -xxx: nobody's extended space was dumped, so ACS is unknown.
        var xxx = Read(port).Topology[PciAddress.Parse("00:1c.0")];
        Assert.Equal(ConfigVisibility.NoExtended, xxx.Facts.Visibility);
        // lspci -xxxx: another device shows 4 KiB, so this one has no extended space to show (no ACS, known).
        var other = RootPortConfig(4096);
        other[0x19] = 0x03; other[0x1a] = 0x03;
        var xxxx = Read(port + "00:1d.0 PCI bridge: Intel Corporation Device a110\n" + Hex(other) + "\n").Topology[PciAddress.Parse("00:1c.0")];
        Assert.Equal(ConfigVisibility.Full, xxxx.Facts.Visibility);
        Assert.Null(xxxx.Acs);
    }

    [Fact]
    public void TextAndHexTogetherTakeBytesFromHexAndDriverAndGroupFromText()
    {
        var text = "00:1c.0 PCI bridge [0604]: Intel Corporation Device [8086:a110] (rev f0)\n\tControl: I/O+\n\tIOMMU group: 3\n\tKernel driver in use: pcieport\n" + Hex(RootPortConfig(4096)) + "\n";
        var d = Read(text).Topology[PciAddress.Parse("00:1c.0")];
        Assert.Equal("pcieport", d.Driver);
        Assert.Equal(3, d.Facts.KernelGroup);
        Assert.Equal(AcsFlags.Required, d.Acs!.Control);
        Assert.Equal(4096, d.Facts.Config!.Length);
    }

    [Fact]
    public void A256ByteHexDumpKeepsTheAcsTheTextShowed()
    {
        var text = "00:1c.0 PCI bridge [0604]: Intel Corporation Device [8086:a110] (rev f0)\n\tControl: I/O+\n" +
                   "\tCapabilities: [40] Express (v2) Root Port (Slot+), MSI 00\n\tCapabilities: [100 v1] Access Control Services\n" +
                   "\t\tACSCap:\tSrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-\n" +
                   "\t\tACSCtl:\tSrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-\n" +
                   Hex(RootPortConfig(256)) + "\n";
        var d = Read(text).Topology[PciAddress.Parse("00:1c.0")];
        Assert.Equal(256, d.Facts.Config!.Length);
        Assert.Equal(new AcsInfo(0x100, AcsFlags.Required, AcsFlags.Required), d.Acs);
        Assert.Equal(ConfigVisibility.Full, d.Facts.Visibility);
    }

    [Fact]
    public void AHeaderOnlyHexDumpWarnsThatCapabilitiesAreUnknown()
    {
        var m = Read("00:1c.0 PCI bridge [0604]: Intel Corporation Device [8086:a110]\n" + Hex(RootPortConfig(64)) + "\n");
        var d = m.Topology[PciAddress.Parse("00:1c.0")];
        Assert.Equal(ConfigVisibility.HeaderOnly, d.Facts.Visibility);
        Assert.Equal(((byte)0, (byte)1, (byte)2), d.Facts.BridgeBuses);
        Assert.Single(m.Warnings, w => w.Contains("64-byte header only", StringComparison.Ordinal));
    }

    [Fact]
    public void OutOfOrderHexIsIgnoredWithAWarningAndTheTextUsed()
    {
        var hex = Hex(RootPortConfig(256)).Replace("\n20:", "\n30:");
        var m = Read("00:1c.0 PCI bridge [0604]: Intel Corporation Device [8086:a110]\n\tControl: I/O+\n\tBus: primary=00, secondary=05, subordinate=05, sec-latency=0\n" + hex + "\n");
        var d = m.Topology[PciAddress.Parse("00:1c.0")];
        Assert.Null(d.Facts.Config);
        Assert.Equal(((byte)0, (byte)5, (byte)5), d.Facts.BridgeBuses);
        Assert.Contains(m.Warnings, w => w.Contains("does not follow offset 0x20", StringComparison.Ordinal));
    }

    [Fact]
    public void LooksLikeLspciAcceptsTextAndHexAndRejectsOtherInputs()
    {
        Assert.True(LspciReader.LooksLikeLspci(RootPort));
        Assert.True(LspciReader.LooksLikeLspci("0000:00:00.0 \n00: 86 80 c0 29 03 01 00 00 00 00 00 06 00 00 00 00\n"));
        Assert.False(LspciReader.LooksLikeLspci("{\n  \"devices\": [ { \"address\": \"0000:00:1f.3\" } ]\n}\n"));
        Assert.False(LspciReader.LooksLikeLspci("-[0000:00]-+-00.0\n           +-01.0\n"));
        Assert.False(LspciReader.LooksLikeLspci("sys/\0\0\0\0"));
    }
}
