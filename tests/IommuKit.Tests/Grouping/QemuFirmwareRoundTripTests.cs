using System.Text.RegularExpressions;
using IommuKit.Grouping;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;
using IommuKit.Sources.Acpi;
using Xunit;

namespace IommuKit.Tests.Grouping;

/// <summary>
/// The firmware tables QEMU 7.2 builds for two oracle machines, captured from the guest's
/// <c>/sys/firmware/acpi/tables</c> with the host bridges' <c>firmware_node</c> and the kernel's groups
/// (tests/fixtures/acpi/qemu72-*: the capture init, command lines and console output; Debian 6.1.0-57, the oracle's
/// topology and QEMU options). With the tables attached and the kernel's groups removed, the prediction is the
/// kernel's; the pxb capture shows the DMAR scope rule (a bus that bypasses the IOMMU is in no scope: no group).
/// </summary>
public class QemuFirmwareRoundTripTests
{
    private static string Acpi(string f) => Path.Combine(Fixtures.Root, "acpi", f);

    /// <summary>The kernel's groups and the host bridges as the capture printed them.</summary>
    private static (Dictionary<PciAddress, int> Groups, List<HostBridgeFirmware> Bridges) Capture(string name)
    {
        var groups = new Dictionary<PciAddress, int>();
        var bridges = new List<HostBridgeFirmware>();
        foreach (var line in File.ReadLines(Acpi($"qemu72-{name}-capture.txt")))
        {
            var g = Regex.Match(line, @"^GROUP (\d+) (.*)$");
            if (g.Success)
                foreach (var a in g.Groups[2].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)) groups[PciAddress.Parse(a)] = int.Parse(g.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            var r = Regex.Match(line, @"^ROOT (pci\S+) \S*/(\S+) (\S+)$");
            if (r.Success && FirmwareSysfs.TryParseRootBus(r.Groups[1].Value, out int dom, out byte bus))
                bridges.Add(new HostBridgeFirmware(dom, bus, r.Groups[2].Value, r.Groups[3].Value));
        }
        bridges.Sort(HostBridgeFirmware.NamespaceOrder);
        return (groups, bridges);
    }

    /// <summary>The machine as a source without unit lists, iommu links or groups shows it: the tables must decide the scope.</summary>
    private static Machine Bare(string oracle)
    {
        var m = MachineSource.Load(Fixtures.OracleTarball(oracle));
        var b = new PciTopologyBuilder();
        foreach (var d in m.Topology.Devices) b.Add(d.Facts with { KernelGroup = null, IommuUnit = null });
        return m with { Topology = b.Build(), KernelGroups = null, IommuUnits = [] };
    }

    private static string Numbered(IEnumerable<PciDevice> devices, Func<PciDevice, int?> group) =>
        string.Join(" ", devices.Select(d => $"{d.Address.ToShortString()}={(group(d) is int g ? g : "-")}"));

    [Fact]
    public void IntelIommuDmarOfTheSameMachinePredictsTheKernelsGroupsAndNumbers()
    {
        var (kernel, bridges) = Capture("intel");
        var dmar = AcpiTableReader.ReadDmar(File.ReadAllBytes(Acpi("qemu72-b_rootports-intel-iommu-DMAR.dat")), "qemu DMAR");
        Assert.False(Assert.Single(dmar.Units).IncludePciAll); // QEMU 7.2 lists every device in the scope instead
        var m = Bare("b_rootports") with { Firmware = new FirmwareTables(dmar), HostBridges = bridges };
        var r = ModelGrouping.Compute(m, new GroupingOptions { ForceIommuActive = true });
        Assert.Equal("DMAR", r.Host!.Sequence.Platform.Basis);
        Assert.True(r.NumbersPredictable);
        var devices = m.Topology.Devices;
        Assert.Equal(Numbered(devices, d => kernel.TryGetValue(d.Address, out int g) ? g : null), Numbered(devices, d => r.GroupOf(d.Address)?.Id));
    }

    [Fact]
    public void BusThatBypassesTheIommuIsInNoDmarScopeSoItsDevicesGetNoGroup()
    {
        var (kernel, bridges) = Capture("pxb");
        var dmar = AcpiTableReader.ReadDmar(File.ReadAllBytes(Acpi("qemu72-h_pxb_bypass-intel-iommu-DMAR.dat")), "qemu pxb DMAR");
        // Namespace order is not bus order: PC40 is PNP0A08:01, PC20 is PNP0A08:02.
        Assert.Equal([0x00, 0x40, 0x20], bridges.Select(b => (int)b.Bus));
        var m = Bare("h_pxb_bypass") with { Firmware = new FirmwareTables(dmar), HostBridges = bridges };
        var r = ModelGrouping.Compute(m, new GroupingOptions { ForceIommuActive = true });
        var devices = m.Topology.Devices;
        Assert.Equal(Numbered(devices, d => kernel.TryGetValue(d.Address, out int g) ? g : null), Numbered(devices, d => r.GroupOf(d.Address)?.Id));
        Assert.Null(r.GroupOf(PciAddress.Parse("40:00.0")));
        Assert.Contains("dmar_find_matched_drhd_unit", Assert.Single(r.Explain(PciAddress.Parse("41:00.0"))).Text, StringComparison.Ordinal);

        // Without the table the bypassed bus would be grouped: the scope comes from the firmware, nowhere else.
        var guess = ModelGrouping.Compute(m with { Firmware = FirmwareTables.None, HostBridges = [] }, new GroupingOptions { ForceIommuActive = true });
        Assert.NotNull(guess.GroupOf(PciAddress.Parse("40:00.0")));
    }

    [Fact]
    public void AmdIommuIvrsCoversEveryDeviceButTheIommuFunctionItself()
    {
        // The same topology booted with -device amd-iommu (at 00:02.0): the kernel grouped every device but 00:02.0.
        var (kernel, _) = Capture("amd");
        var ivrs = AcpiTableReader.ReadIvrs(File.ReadAllBytes(Acpi("qemu72-b_rootports-amd-iommu-IVRS.dat")), "qemu IVRS");
        var block = Assert.Single(ivrs.EffectiveBlocks);
        Assert.Equal("0000:00:02.0", block.IommuAddress.ToString());
        var m = Bare("b_rootports");
        foreach (var d in m.Topology.Devices)
            Assert.True(block.Covers(d.Address.RequesterId), $"{d.Address} is grouped by the kernel ({kernel.ContainsKey(d.Address)}) but not covered");
        Assert.DoesNotContain(block.IommuAddress, kernel.Keys);
        // Unlike Zen-era firmware, QEMU's IVRS covers the host bridge 00:00.0, and the kernel grouped it.
        Assert.True(block.Covers(0x0000));
        Assert.True(kernel.ContainsKey(PciAddress.Parse("00:00.0")));
    }
}
