using System.Formats.Tar;
using System.IO.Compression;
using System.Text.RegularExpressions;
using IommuKit.Pci;
using IommuKit.Sources.Lspci;
using Xunit;

namespace IommuKit.Tests.Lspci;

/// <summary>
/// The same machine as a snapshot tarball (tests/fixtures/oracle) and as the text the real lspci printed for its config
/// bytes (tests/fixtures/lspci-generated, made by make.py) gives the same topology where both carry the facts.
/// The tarball side is read here directly: config files decoded with <see cref="PciDeviceFacts.FromConfig"/>, parents
/// from the sysfs device path.
/// </summary>
public class LspciOracleTests
{
    private static string Generated => Path.Combine(Fixtures.Root, "lspci-generated");

    private static readonly Regex ConfigPath = new(@"^sys/devices/(?:.*/)?(?<bdf>[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])/config$");
    private static readonly Regex Bdf = new(@"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$");

    public static TheoryData<string, string> MachinesAndForms()
    {
        var data = new TheoryData<string, string>();
        foreach (var name in Fixtures.OracleMachines())
        {
            foreach (var form in new[] { "vvnn", "vvnnxxxx", "hex" }) data.Add(name, form);
        }
        return data;
    }

    /// <summary>The tarball's PCI functions: facts from each config file, parent from the directory above it.</summary>
    internal static PciTopology TarballTopology(string name)
    {
        var builder = new PciTopologyBuilder();
        using var file = File.OpenRead(Fixtures.OracleTarball(name));
        using var gz = new GZipStream(file, CompressionMode.Decompress);
        using var tar = new TarReader(gz);
        while (tar.GetNextEntry() is { } entry)
        {
            if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || entry.DataStream is null) continue;
            var m = ConfigPath.Match(entry.Name);
            if (!m.Success) continue;
            using var ms = new MemoryStream();
            entry.DataStream.CopyTo(ms);
            var address = PciAddress.Parse(m.Groups["bdf"].Value);
            var facts = PciDeviceFacts.FromConfig(address, new ConfigSpace(ms.ToArray()), out var error);
            Assert.Null(error);
            var dirs = entry.Name.Split('/');
            var parentDir = dirs[^3];
            if (Bdf.IsMatch(parentDir)) facts = facts with { ParentHint = PciAddress.Parse(parentDir) };
            builder.Add(facts);
        }
        return builder.Build();
    }

    [Theory]
    [MemberData(nameof(MachinesAndForms))]
    public void LspciOfAnOracleMachineGivesTheTarballTopology(string name, string form)
    {
        var tarball = TarballTopology(name);
        var file = $"{name}.{form}.txt";
        var text = File.ReadAllText(Path.Combine(Generated, file));
        Assert.True(LspciReader.LooksLikeLspci(text));
        var machine = LspciReader.Read(text, file);
        var lspci = machine.Topology;

        Assert.Equal(tarball.Devices.Select(d => d.Address).Order(), lspci.Devices.Select(d => d.Address).Order());
        // The kernel's probe order follows from the tree, so equal orders mean equal trees.
        Assert.Equal(tarball.Devices.Select(d => d.Address), lspci.Devices.Select(d => d.Address));
        foreach (var t in tarball.Devices)
        {
            var l = lspci[t.Address];
            Assert.Equal(t.Parent?.Address, l.Parent?.Address);
            Assert.Equal(t.PcieType, l.PcieType);
            Assert.Equal(t.Acs?.Capability, l.Acs?.Capability);
            Assert.Equal(t.Acs?.Control, l.Acs?.Control);
            Assert.Equal(t.Acs?.Offset, l.Acs?.Offset);
            Assert.Equal(t.Facts.BridgeBuses, l.Facts.BridgeBuses);
            Assert.Equal(t.IsBridge, l.IsBridge);
            Assert.Equal(t.IsMultifunction, l.IsMultifunction);
            Assert.Equal(t.VendorId, l.VendorId);
            Assert.Equal(t.DeviceId, l.DeviceId);
            Assert.Equal(t.ClassCode, l.ClassCode);
            Assert.Equal(t.Facts.Revision, l.Facts.Revision);
            Assert.Equal(t.Facts.SubsystemVendorId, l.Facts.SubsystemVendorId);
            Assert.Equal(t.Facts.SubsystemDeviceId, l.Facts.SubsystemDeviceId);
            Assert.Equal(t.Facts.Pcie?.Offset, l.Facts.Pcie?.Offset);
            Assert.Equal(t.Facts.Pcie?.SlotImplemented, l.Facts.Pcie?.SlotImplemented);
            Assert.Equal(t.Facts.Ari, l.Facts.Ari);
            Assert.Equal(t.Facts.Sriov, l.Facts.Sriov);
            Assert.Equal(ConfigVisibility.Full, l.Facts.Visibility);
            // Every capability lspci named is one the config walk found, at the same offset.
            var walked = t.Facts.Capabilities.Select(c => (c.Offset, c.Extended)).ToHashSet();
            foreach (var c in l.Facts.Capabilities) Assert.Contains((c.Offset, c.Extended), walked);
        }
        Assert.Null(machine.KernelGroups); // lspci -F has no sysfs, so no IOMMU group lines
    }

    public static TheoryData<string> Machines()
    {
        var data = new TheoryData<string>();
        foreach (var name in Fixtures.OracleMachines()) data.Add(name);
        return data;
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void MachineSourceDetectsTheLspciTextAndAgreesWithItsOwnTarballReader(string name)
    {
        // Two independent readers of the same machine: Sources' sysfs/tarball reader and this one, through auto-detection.
        var snapshot = IommuKit.Sources.MachineSource.Load(Fixtures.OracleTarball(name));
        var dump = IommuKit.Sources.MachineSource.Load(Path.Combine(Generated, name + ".vvnn.txt"));
        Assert.Equal(snapshot.Topology.Devices.Select(d => d.Address), dump.Topology.Devices.Select(d => d.Address));
        foreach (var s in snapshot.Topology.Devices)
        {
            var l = dump.Topology[s.Address];
            Assert.Equal(s.Parent?.Address, l.Parent?.Address);
            Assert.Equal(s.PcieType, l.PcieType);
            Assert.Equal(s.Acs, l.Acs);
            Assert.Equal(s.Facts.BridgeBuses, l.Facts.BridgeBuses);
            Assert.Equal(s.IsMultifunction, l.IsMultifunction);
            Assert.Equal(s.Facts.Visibility, l.Facts.Visibility);
        }
    }

    public static TheoryData<string> MachinesWithEveryForm() => new() { "b_rootports", "c_switch", "d_pcibridge" };

    private static Machine LoadGenerated(string file) => LspciReader.Read(File.ReadAllText(Path.Combine(Generated, file)), file);

    [Theory]
    [MemberData(nameof(MachinesWithEveryForm))]
    public void VeryVerboseTextGivesTheSameTopologyAsVerboseText(string name)
    {
        var vv = LoadGenerated($"{name}.vvnn.txt");
        var vvv = LoadGenerated($"{name}.vvvnn.txt");
        Assert.Equal(vv.Topology.Devices.Select(d => d.Address), vvv.Topology.Devices.Select(d => d.Address));
        foreach (var d in vv.Topology.Devices)
        {
            var e = vvv.Topology[d.Address];
            Assert.Equal(d.Parent?.Address, e.Parent?.Address);
            Assert.Equal(d.Facts.Pcie, e.Facts.Pcie);
            Assert.Equal(d.Acs, e.Acs);
            Assert.Equal(d.Facts.Ari, e.Facts.Ari);
            Assert.Equal(d.Facts.Sriov, e.Facts.Sriov);
            Assert.Equal(d.Facts.Capabilities, e.Facts.Capabilities);
            Assert.Equal(d.Facts.Visibility, e.Facts.Visibility);
        }
        Assert.Empty(vvv.Warnings);
    }

    [Theory]
    [MemberData(nameof(MachinesWithEveryForm))]
    public void VerboseOnceKnowsTheTreeAndTypesButNotTheAcsBits(string name)
    {
        var tarball = TarballTopology(name);
        var m = LoadGenerated($"{name}.vnn.txt");
        Assert.Equal(tarball.Devices.Select(d => d.Address), m.Topology.Devices.Select(d => d.Address));
        int acs = 0;
        foreach (var t in tarball.Devices)
        {
            var l = m.Topology[t.Address];
            Assert.Equal(t.Parent?.Address, l.Parent?.Address);
            Assert.Equal(t.PcieType, l.PcieType);
            Assert.Equal(t.Facts.BridgeBuses, l.Facts.BridgeBuses);
            Assert.Null(l.Acs); // ACSCap/ACSCtl need -vv
            Assert.Equal(t.Acs is null ? ConfigVisibility.Full : ConfigVisibility.NoExtended, l.Facts.Visibility);
            if (t.Acs is not null) acs++;
            // -v names extended capabilities without their version: the offsets still match the config walk.
            Assert.Equal(t.Facts.Capabilities.Select(c => (c.Offset, c.Extended)).Order(), l.Facts.Capabilities.Select(c => (c.Offset, c.Extended)).Order());
        }
        Assert.Equal(acs > 0 ? 1 : 0, m.Warnings.Count(w => w.Contains("ACS is unknown", StringComparison.Ordinal)));
        Assert.Equal(acs > 0 ? 1 : 0, m.Warnings.Count);
    }

    [Theory]
    [MemberData(nameof(MachinesWithEveryForm))]
    public void TerseListWithDriversKnowsDevicesOnlyAndDropsLspcisOwnMessage(string name)
    {
        var tarball = TarballTopology(name);
        var m = LoadGenerated($"{name}.nnk.txt");
        Assert.Equal(tarball.Devices.Select(d => d.Address).Order(), m.Topology.Devices.Select(d => d.Address).Order());
        foreach (var t in tarball.Devices)
        {
            var l = m.Topology[t.Address];
            Assert.Equal(ConfigVisibility.HeaderOnly, l.Facts.Visibility);
            Assert.Null(l.Parent); // without -v there are no Bus: lines, so no bridge leads anywhere known
            Assert.Equal(t.VendorId, l.VendorId);
            Assert.Equal(t.ClassCode >> 8, l.ClassCode >> 8);
        }
        var warning = Assert.Single(m.Warnings); // the libkmod message is cut out, not reported as text before the first device
        Assert.Contains("no detail lines", warning);
    }

    [Theory]
    [MemberData(nameof(MachinesWithEveryForm))]
    public void A256ByteHexDumpKnowsTheTreeTypesAndMultifunctionButNotAcs(string name)
    {
        var tarball = TarballTopology(name);
        var m = LoadGenerated($"{name}.xxx.txt");
        Assert.Equal(tarball.Devices.Select(d => d.Address), m.Topology.Devices.Select(d => d.Address));
        foreach (var t in tarball.Devices)
        {
            var l = m.Topology[t.Address];
            Assert.Equal(t.Parent?.Address, l.Parent?.Address);
            Assert.Equal(t.PcieType, l.PcieType);
            Assert.Equal(t.Facts.MultifunctionBit, l.Facts.MultifunctionBit);
            Assert.Null(l.Acs);
            Assert.Equal(256, l.Facts.Config!.Length);
            Assert.Equal(t.IsPcie ? ConfigVisibility.NoExtended : ConfigVisibility.Full, l.Facts.Visibility);
        }
    }

    [Fact]
    public void HexDumpFormsKeepTheMultifunctionBitTheTextCannotShow()
    {
        var file = "b_rootports.vvnnxxxx.txt";
        var m = LspciReader.Read(File.ReadAllText(Path.Combine(Generated, file)), file);
        Assert.All(m.Topology.Devices, d => Assert.NotNull(d.Facts.MultifunctionBit));
        Assert.All(m.Topology.Devices, d => Assert.NotNull(d.Facts.Config));
        var text = LspciReader.Read(File.ReadAllText(Path.Combine(Generated, "b_rootports.vvnn.txt")), "b_rootports.vvnn.txt");
        Assert.All(text.Topology.Devices, d => Assert.Null(d.Facts.MultifunctionBit));
    }
}
