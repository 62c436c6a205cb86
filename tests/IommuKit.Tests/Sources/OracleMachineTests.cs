using System.Text.Json;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Sources;

/// <summary>Every machine captured from a real kernel loads with the kernel's devices, groups and the bridge chain.</summary>
public class OracleMachineTests
{
    public static TheoryData<string> Machines()
    {
        var data = new TheoryData<string>();
        foreach (var m in Fixtures.OracleMachines()) data.Add(m);
        return data;
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void EveryOracleTarballLoadsWithTheKernelsDevicesDriversAndGroups(string name)
    {
        var machine = MachineSource.Load(Fixtures.OracleTarball(name));
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Fixtures.OracleExpected(name)));
        var root = doc.RootElement;
        var boot = root.TryGetProperty("snapshot_boot", out var sb) ? sb : root;

        Assert.Empty(machine.Warnings);
        Assert.Equal(boot.GetProperty("kernel").GetString(), machine.KernelRelease);
        Assert.Equal(boot.GetProperty("cmdline").GetString(), machine.CommandLine);

        var devices = root.GetProperty("devices");
        Assert.Equal(devices.GetArrayLength(), machine.Topology.Count);
        foreach (var d in devices.EnumerateArray())
        {
            var dev = machine.Topology[PciAddress.Parse(d.GetProperty("bdf").GetString()!)];
            Assert.Equal(d.GetProperty("vendor").GetString(), $"0x{dev.VendorId:x4}");
            Assert.Equal(d.GetProperty("device").GetString(), $"0x{dev.DeviceId:x4}");
            Assert.Equal(d.GetProperty("class").GetString(), $"0x{dev.ClassCode:x6}");
            Assert.Equal(d.GetProperty("driver").GetString(), dev.Driver);
            if (!root.TryGetProperty("snapshot_boot", out _))
            {
                int? group = d.GetProperty("group").ValueKind == JsonValueKind.Null ? null : d.GetProperty("group").GetInt32();
                Assert.Equal(group, dev.Facts.KernelGroup);
            }
            Assert.Equal(ConfigVisibility.Full, dev.Facts.Visibility);
        }

        string iommu = boot.GetProperty("iommu").GetString()!;
        Assert.Equal(iommu switch { "intel" => IommuKind.Intel, "amd" => IommuKind.Amd, "virtio" => IommuKind.Virtio, _ => IommuKind.Unknown }, machine.IommuKind);
        if (iommu == "none") Assert.Empty(machine.IommuUnits);

        if (!root.TryGetProperty("snapshot_boot", out _))
        {
            var groups = root.GetProperty("groups");
            Assert.NotNull(machine.KernelGroups);
            Assert.Equal(groups.GetArrayLength(), machine.KernelGroups!.Count);
            int i = 0;
            foreach (var g in groups.EnumerateArray())
            {
                var kg = machine.KernelGroups[i++];
                Assert.Equal(g.GetProperty("id").GetInt32(), kg.Id);
                Assert.Equal(g.GetProperty("type").GetString(), kg.Type);
                Assert.Equal(g.GetProperty("devices").EnumerateArray().Select(x => x.GetString()), kg.Devices.Select(a => a.ToString()));
                Assert.Equal(
                    g.GetProperty("reserved_regions").EnumerateArray().Select(r => $"{r.GetProperty("start").GetString()} {r.GetProperty("end").GetString()} {r.GetProperty("type").GetString()}"),
                    kg.ReservedRegions.Select(r => r.ToString()));
            }
        }
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void EveryDeviceHangsBelowTheBridgeWhoseBusRangeHoldsIt(string name)
    {
        var machine = MachineSource.Load(Fixtures.OracleTarball(name));
        foreach (var d in machine.Topology.Devices)
        {
            // The realpath names the parent; the parent's bridge bus numbers must agree with the device's bus.
            Assert.Equal(d.Facts.ParentHint, d.Parent?.Address);
            if (d.Parent is { } p)
            {
                Assert.True(p.IsBridge, $"{d.Address}: parent {p.Address} is not a bridge");
                Assert.Equal(d.Address.Bus, p.Facts.BridgeBuses!.Value.Secondary);
                foreach (var a in PciTopology.Ancestors(d))
                {
                    var b = a.Facts.BridgeBuses!.Value;
                    Assert.InRange(d.Address.Bus, b.Secondary, b.Subordinate);
                }
            }
            else
            {
                // On a root bus: bus 0, or the root bus of a PCIe expander bridge (pci0000:20 in h_pxb_bypass).
                Assert.Null(d.Facts.ParentHint);
                Assert.True(d.Bus.IsRoot);
            }
        }
    }

    /// <summary>PCIe types of QEMU 7.2's devices as the oracle README's findings table lists them.</summary>
    [Theory]
    [MemberData(nameof(Machines))]
    public void PcieTypesMatchTheOracleFindingsForEveryQemuDevice(string name)
    {
        var machine = MachineSource.Load(Fixtures.OracleTarball(name));
        foreach (var d in machine.Topology.Devices)
        {
            PcieType? expected = (d.VendorId, d.DeviceId) switch
            {
                (0x1b36, 0x000c) or (0x8086, 0x3420) => PcieType.RootPort,
                (0x104c, 0x8232) => PcieType.Upstream,
                (0x104c, 0x8233) => PcieType.Downstream,
                (0x1b36, 0x000e) => PcieType.PciBridge,
                (0x1b36, 0x0001) or (0x8086, 0x244e) => PcieType.None,
                (0x8086, 0x10d3) => d.IsOnRootBus ? PcieType.RcEnd : PcieType.Endpoint,
                (0x1af4, 0x1041) => PcieType.Endpoint,
                (0x1af4, 0x1000) or (0x8086, 0x100e) or (0x10ec, 0x8139) => PcieType.None,
                (0x8086, 0x29c0) or (0x1234, 0x1111) or (0x8086, 0x2918) or (0x8086, 0x2922) or (0x8086, 0x2930) => PcieType.None,
                _ => null,
            };
            if (expected is { } t) Assert.True(t == d.PcieType, $"{name} {d.Address} {d.VendorId:x4}:{d.DeviceId:x4}: {d.PcieType}, expected {t}");
            // ACS only on pcie-root-port without disable-acs: capability 0x5f (SV TB RR CR UF DT).
            if (d.Acs is { } acs)
            {
                Assert.Equal((0x1b36, 0x000c), (d.VendorId, d.DeviceId));
                Assert.Equal(AcsFlags.SV | AcsFlags.TB | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF | AcsFlags.DT, acs.Capability);
                Assert.Equal(0x148, acs.Offset);
            }
        }
    }

    [Fact]
    public void ActiveIntelIommuLeavesAcsControlEnabledOnRootPortsWhileIommuOffLeavesItAtReset()
    {
        var on = MachineSource.Load(Fixtures.OracleTarball("b_rootports"));
        var off = MachineSource.Load(Fixtures.OracleTarball("f_acs_ctrl_noiommu"));
        Assert.Contains(on.Topology.Devices, d => d.Acs is { Control: AcsFlags.SV | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF });
        Assert.All(off.Topology.Devices.Where(d => d.Acs is not null), d => Assert.Equal(AcsFlags.None, d.Acs!.Control));
        Assert.NotNull(off.KernelGroups);
        Assert.Empty(off.KernelGroups!);
    }

    [Fact]
    public void VirtioIommuUnitIsFoundUnderItsVirtioDeviceAndIsInNoGroup()
    {
        var m = MachineSource.Load(Fixtures.OracleTarball("g_k612_virtio_pt"));
        var unit = Assert.Single(m.IommuUnits);
        Assert.Equal("0000:00:1d.0", unit.Name);
        Assert.Equal(IommuKind.Virtio, unit.Kind);
        var viommu = m.Topology[PciAddress.Parse("0000:00:1d.0")];
        Assert.Null(viommu.Facts.KernelGroup);
        Assert.DoesNotContain(viommu.Address, unit.Devices);
        Assert.Equal(m.Topology.Count - 1, unit.Devices.Count);
    }

    [Theory]
    [InlineData("h_cachingmode_regs", true)]
    [InlineData("h_default_regs", false)]
    public void VtdCapabilityRegisterFromSysfsCarriesTheCachingModeBit(string name, bool cachingMode)
    {
        var unit = Assert.Single(MachineSource.Load(Fixtures.OracleTarball(name)).IommuUnits);
        Assert.Equal(IommuKind.Intel, unit.Kind);
        Assert.Equal(cachingMode, unit.CachingMode);
        Assert.NotNull(unit.IntelEcap);
        Assert.True(unit.Registers.ContainsKey("intel-iommu/version"));
    }

    [Fact]
    public void PcieFunctionWhoseWholeConfigIs256BytesIsFullyVisibleAndHasNoAcs()
    {
        // h_mixed_more: an e1000e behind a PCIe-to-PCI bridge; the kernel gives it no extended config space.
        var m = MachineSource.Load(Fixtures.OracleTarball("h_mixed_more"));
        var d = m.Topology.Devices.Single(x => x.IsPcie && x.Facts.Config!.Length == 256 && x.PcieType == PcieType.Endpoint);
        Assert.Equal(ConfigVisibility.Full, d.Facts.Visibility);
        Assert.Null(d.Acs);
        Assert.Equal(PcieType.PciBridge, d.Parent!.PcieType);
    }
}
