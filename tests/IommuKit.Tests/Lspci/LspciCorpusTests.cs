using System.Text.RegularExpressions;
using IommuKit.Pci;
using IommuKit.Sources.Lspci;
using Xunit;

namespace IommuKit.Tests.Lspci;

/// <summary>
/// Every real dump of the corpus (tests/fixtures/lspci) loads with every device, and the topology agrees with what
/// the text says. The expectations are read from the text here with simple patterns of their own, not with the reader.
/// </summary>
public class LspciCorpusTests
{
    public static TheoryData<string> Dumps()
    {
        var data = new TheoryData<string>();
        foreach (var f in Fixtures.LspciDumps()) data.Add(Path.GetFileName(f));
        return data;
    }

    internal static readonly Regex DeviceLine = new(@"^(?<addr>(?:[0-9a-f]{4,8}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) ", RegexOptions.Multiline);
    private static readonly Regex BusLine = new(@"Bus: primary=(?<p>[0-9a-f]{2}), secondary=(?<s>[0-9a-f]{2}), subordinate=(?<u>[0-9a-f]{2})");
    private static readonly Regex ExpressLine = new(@"Capabilities: \[[0-9a-f]+\] Express \(v\d\) (?<type>[A-Za-z/ -]+?)(?: \(Slot[+-]\))?,");
    private static readonly Regex GroupLine = new(@"^\s+IOMMU group: (?<g>\d+)\s*$", RegexOptions.Multiline);
    private static readonly Regex AcsCapLine = new(@"^\s+ACSCap:", RegexOptions.Multiline);

    /// <summary>The dump cut into device records: address and the record's text.</summary>
    internal static List<(PciAddress Address, string Text)> Records(string text)
    {
        var list = new List<(PciAddress, string)>();
        var matches = DeviceLine.Matches(text);
        for (int i = 0; i < matches.Count; i++)
        {
            int start = matches[i].Index;
            int end = i + 1 < matches.Count ? matches[i + 1].Index : text.Length;
            list.Add((PciAddress.Parse(matches[i].Groups["addr"].Value), text[start..end]));
        }
        return list;
    }

    private static (Machine Machine, string Text) Load(string file)
    {
        var path = Path.Combine(Fixtures.Lspci, file);
        var text = File.ReadAllText(path);
        return (LspciReader.Read(text, file), text);
    }

    [Theory]
    [MemberData(nameof(Dumps))]
    public void EveryCorpusDumpLoadsWithEveryDeviceItLists(string file)
    {
        var (m, text) = Load(file);
        Assert.True(LspciReader.LooksLikeLspci(text));
        Assert.Equal(DeviceLine.Matches(text).Count, m.Topology.Count);
        Assert.Equal(file, m.Origin);
        foreach (var (addr, _) in Records(text)) Assert.NotNull(m.Topology.Find(addr));
    }

    [Theory]
    [MemberData(nameof(Dumps))]
    public void ParentsFollowTheBridgeBusNumbersTheDumpPrints(string file)
    {
        var (m, text) = Load(file);
        var records = Records(text);
        var secondary = new Dictionary<(int, byte), PciAddress>();
        foreach (var (addr, rec) in records)
        {
            var b = BusLine.Match(rec);
            if (b.Success) secondary.TryAdd((addr.Domain, Convert.ToByte(b.Groups["s"].Value, 16)), addr);
        }
        int withParent = 0;
        foreach (var (addr, rec) in records)
        {
            var dev = m.Topology[addr];
            PciAddress? expected = secondary.TryGetValue((addr.Domain, addr.Bus), out var p) ? p : null;
            Assert.Equal(expected, dev.Parent?.Address);
            if (expected is not null) withParent++;
            var b = BusLine.Match(rec);
            if (b.Success)
            {
                Assert.True(dev.IsBridge, $"{addr} prints a Bus: line, so it is a bridge");
                Assert.Equal((Convert.ToByte(b.Groups["p"].Value, 16), Convert.ToByte(b.Groups["s"].Value, 16), Convert.ToByte(b.Groups["u"].Value, 16)),
                    dev.Facts.BridgeBuses);
            }
        }
        // Every dump with a bridge whose bus holds a device has devices below bridges.
        Assert.Equal(records.Any(r => secondary.ContainsKey((r.Address.Domain, r.Address.Bus))), withParent > 0);
    }

    [Theory]
    [MemberData(nameof(Dumps))]
    public void PcieTypesAreTheOnesTheExpressCapabilityLinesName(string file)
    {
        var (m, text) = Load(file);
        foreach (var (addr, rec) in Records(text))
        {
            var dev = m.Topology[addr];
            var e = ExpressLine.Match(rec);
            if (e.Success)
            {
                Assert.Equal(e.Groups["type"].Value, dev.PcieType.ToDisplayName());
                Assert.Equal(ConfigVisibility.Full, dev.Facts.Visibility);
            }
            else
            {
                Assert.Equal(PcieType.None, dev.PcieType);
                bool denied = rec.Contains("Capabilities: <access denied>", StringComparison.Ordinal);
                Assert.Equal(denied ? ConfigVisibility.HeaderOnly : ConfigVisibility.Full, dev.Facts.Visibility);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Dumps))]
    public void AcsIsKnownExactlyForDevicesThatPrintAcsCap(string file)
    {
        var (m, text) = Load(file);
        foreach (var (addr, rec) in Records(text))
        {
            bool printed = AcsCapLine.IsMatch(rec);
            Assert.Equal(printed, m.Topology[addr].Acs is not null);
        }
    }

    [Theory]
    [MemberData(nameof(Dumps))]
    public void IommuGroupLinesBecomeTheKernelGroups(string file)
    {
        var (m, text) = Load(file);
        int lines = GroupLine.Matches(text).Count;
        if (lines == 0)
        {
            Assert.Null(m.KernelGroups);
            return;
        }
        Assert.NotNull(m.KernelGroups);
        Assert.Equal(lines, m.KernelGroups!.Sum(g => g.Devices.Count));
        foreach (var (addr, rec) in Records(text))
        {
            var g = GroupLine.Match(rec);
            var group = m.KernelGroups.SingleOrDefault(k => k.Devices.Contains(addr));
            if (!g.Success)
            {
                Assert.Null(group);
                Assert.Null(m.Topology[addr].Facts.KernelGroup);
                continue;
            }
            Assert.NotNull(group);
            Assert.Equal(int.Parse(g.Groups["g"].Value), group!.Id);
            Assert.Equal(group.Id, m.Topology[addr].Facts.KernelGroup);
            Assert.Null(group.Type);
            Assert.Empty(group.ReservedRegions);
        }
    }

    [Theory]
    [MemberData(nameof(Dumps))]
    public void NonRootDumpsCarryOneWarningToRunLspciAsRoot(string file)
    {
        var (m, text) = Load(file);
        bool denied = text.Contains("Capabilities: <access denied>", StringComparison.Ordinal);
        Assert.Equal(denied ? 1 : 0, m.Warnings.Count(w => w.Contains("run lspci as root", StringComparison.Ordinal)));
    }

    [Fact]
    public void PcilibMessageInterleavedInTheDriverLineIsCutOutAndTheDriverKept()
    {
        // The z77 dump has "Kernel driver in use: pcilib: sysfs_read_vpd: read failed: No such device\nsnd_hda_intel".
        var (m, text) = Load("intel-z77-asm1083-pcibridge-asrock-z77-extreme4-iommugroups.txt");
        int at = text.IndexOf("Kernel driver in use: pcilib:", StringComparison.Ordinal);
        Assert.True(at > 0);
        var owner = Records(text).Last(r => text.IndexOf(r.Text, StringComparison.Ordinal) < at).Address;
        Assert.Equal("snd_hda_intel", m.Topology[owner].Driver);
    }

    [Fact]
    public void SriovCapabilityOfTheAlderLakeIgpuIsDecoded()
    {
        var (m, _) = Load("intel-alderlake-n100-asrock-n100dc-itx-debian-acs-iommugroups.txt");
        var igpu = m.Topology[PciAddress.Parse("00:02.0")];
        Assert.Equal(new SriovInfo(0x320, TotalVfs: 7, NumVfs: 0, FirstVfOffset: 1, VfStride: 1, VfDeviceId: 0x46d1), igpu.Facts.Sriov);
        Assert.Equal(PcieType.RcEnd, igpu.PcieType);
        Assert.Equal(0x030000u, igpu.ClassCode);
        Assert.Equal(0, igpu.Facts.KernelGroup);
        Assert.Equal("i915", igpu.Driver);
        var rp = m.Topology[PciAddress.Parse("00:1c.0")];
        Assert.Equal(new AcsInfo(0x220, AcsFlags.SV | AcsFlags.TB | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF, AcsFlags.SV | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF), rp.Acs);
        Assert.True(rp.Facts.Pcie!.SlotImplemented);
        Assert.Equal(10, rp.Facts.Pcie.PhysicalSlot);
    }

    [Fact]
    public void VmdDomainAboveFfffIsItsOwnRootWithTheBridgeChain()
    {
        var (m, _) = Load("laptop-tigerlake-tbt4-vmd-dell-xps13-9310-nonroot.txt");
        var nvme = m.Topology[PciAddress.Parse("10000:e1:00.0")];
        Assert.Equal(PciAddress.Parse("10000:e0:06.0"), nvme.Parent!.Address);
        Assert.Equal(0x010802u, nvme.ClassCode);
        Assert.Equal("nvme", nvme.Driver);
        Assert.Equal(ConfigVisibility.HeaderOnly, nvme.Facts.Visibility);
    }
}
