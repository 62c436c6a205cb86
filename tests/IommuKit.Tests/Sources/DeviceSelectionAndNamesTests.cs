using System.Text;
using IommuKit.Passthrough;
using IommuKit.Pci;
using IommuKit.Sources;
using IommuKit.Sources.Lspci;
using Xunit;

namespace IommuKit.Tests.Sources;

/// <summary>
/// The one selector grammar (address, slot, vendor:device id), the one class table and filter, the dump's own names,
/// lspci's "Kernel modules:" line, and machines read from a stream (issue 10).
/// </summary>
public class DeviceSelectionAndNamesTests
{
    private static readonly string Z690 = Path.Combine(Fixtures.Lspci, "intel-z690-alderlake-asrock-z690-pro-rs-debian-acs-iommugroups.txt");
    private static Machine Z690Machine() => MachineSource.Load(Z690);

    [Theory]
    [InlineData("03:00.1", DeviceSelectorKind.Address, "03:00.1")]
    [InlineData("0000:03:00.1", DeviceSelectorKind.Address, "03:00.1")]
    [InlineData("03:00", DeviceSelectorKind.Slot, "03:00")]
    [InlineData("0001:03:1f", DeviceSelectorKind.Slot, "0001:03:1f")]
    [InlineData("10de:2484", DeviceSelectorKind.Id, "10de:2484")]
    [InlineData(" 10DE:2484 ", DeviceSelectorKind.Id, "10de:2484")]
    public void EachFormParsesToItsKindAndPrintsAsTyped(string text, DeviceSelectorKind kind, string shown)
    {
        Assert.True(DeviceSelector.TryParse(text, out var s));
        Assert.Equal(kind, s.Kind);
        Assert.Equal(shown, s.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("03")]
    [InlineData("03:20")]       // device 0x20 > 31
    [InlineData("10de:248")]    // three-digit device id
    [InlineData("10de:2484:1")]
    [InlineData("03:00.8")]
    [InlineData("zz:00")]
    public void AnythingElseIsRefusedQuotingTheFormsOnParse(string text)
    {
        Assert.False(DeviceSelector.TryParse(text, out _));
        var ex = Assert.Throws<InputException>(() => DeviceSelector.Parse(text, "ADDRESS"));
        Assert.Contains(DeviceSelector.Forms, ex.Message);
    }

    [Fact]
    public void ASlotSelectsEveryFunctionAndAnIdEveryDeviceWithIt()
    {
        var m = Z690Machine();
        Assert.Equal(["03:00.0", "03:00.1"], DeviceSelector.Parse("03:00").Select(m.Topology, m.Origin).Select(d => d.Address.ToShortString()));
        Assert.Equal(["04:00.0", "05:00.0", "06:00.0"], DeviceSelector.Parse("15b7:5030").Select(m.Topology, m.Origin).Select(d => d.Address.ToShortString()));
        Assert.Equal("03:00.0", DeviceSelector.Parse("03:00").SelectOne(m.Topology, m.Origin).Address.ToShortString());
        var ex = Assert.Throws<InputException>(() => DeviceSelector.Parse("15b7:5030").SelectOne(m.Topology, m.Origin));
        Assert.Contains("matches 3 devices", ex.Message);
        Assert.Contains("04:00.0, 05:00.0, 06:00.0", ex.Message);
    }

    [Fact]
    public void NoMatchListsAtMostEightCandidatesAndCountsTheRest()
    {
        var m = Z690Machine();
        var ex = Assert.Throws<InputException>(() => DeviceSelector.Parse("8086:ffff").Select(m.Topology, m.Origin));
        int vendorDevices = m.Topology.Devices.Count(d => d.VendorId == 0x8086);
        Assert.True(vendorDevices > DeviceSelector.MaxListed);
        Assert.EndsWith($" and {vendorDevices - DeviceSelector.MaxListed} more", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void EveryClassFilterHasOneRowAndMatchesItsClassCodes()
    {
        Assert.Equal(PciClasses.Filters.Count, PciClasses.Filters.Select(f => f.Name).Distinct().Count());
        bool M(string name, uint cls) => PciClasses.Filters.Single(f => f.Name == name).Matches(cls);
        Assert.True(M("sata", 0x010601));
        Assert.False(M("sata", 0x010802));
        Assert.True(M("nvme", 0x010802));
        Assert.True(M("audio", 0x040300));
        Assert.True(M("audio", 0x040100));
        Assert.False(M("audio", 0x040000)); // video
        Assert.True(M("gpu", 0x030200));
        Assert.True(M("storage", 0x010400));
    }

    [Fact]
    public void FilterKindsCombineWithAndAndValuesWithOr()
    {
        var m = Z690Machine();
        var f = DeviceFilter.Parse(["nvme", "sata"], ["15b7:5030,8086:7ae2"], []);
        Assert.Equal(["00:17.0", "04:00.0", "05:00.0", "06:00.0"], m.Topology.Devices.Where(f.Keeps).Select(d => d.Address.ToShortString()));
        Assert.Equal("--nvme --sata --id 15b7:5030,8086:7ae2", f.Describe());
        Assert.Throws<InputException>(() => DeviceFilter.Parse(["floppy"], [], []));
        Assert.False(DeviceFilter.None.Any);
    }

    [Theory]
    [InlineData("Audio device [0403]: Advanced Micro Devices, Inc. [AMD/ATI] Navi 21/23 HDMI/DP Audio Controller [1002:ab28]", 0x1002, 0xab28,
        "Audio device", "Advanced Micro Devices, Inc. [AMD/ATI] Navi 21/23 HDMI/DP Audio Controller")]
    [InlineData("VGA compatible controller [0300]: NVIDIA Corporation TU116 [GeForce GTX 1660] [10de:2184] (rev a1) (prog-if 00 [VGA controller])", 0x10de, 0x2184,
        "VGA compatible controller", "NVIDIA Corporation TU116 [GeForce GTX 1660]")]
    [InlineData("VGA compatible controller [0300]: NVIDIA Corporation TU116 [10de:2184]", 0x10de, 0x1111, "VGA compatible controller", null)] // other ids: the hex won
    [InlineData("0300: 10de:2184 (rev a1)", 0x10de, 0x2184, null, null)] // lspci -n: no names
    public void TheDumpsHeaderLineSplitsIntoClassNameAndVendorDevice(string description, int vendor, int device, string? cls, string? name)
    {
        var (c, n) = DeviceNames.FromDescription(description, (ushort)vendor, (ushort)device);
        Assert.Equal(cls, c);
        Assert.Equal(name, n);
    }

    [Fact]
    public void TheDumpsNamesWinOverPciIdsExceptLspcisPlaceholders()
    {
        var ids = PciIds.Parse("8086  Intel Corporation\n\t7ae2  A newer SATA name\n\t7ad0  A newer audio name\n1002  AMD\n\tab28  Navi audio from pci.ids\n");
        var m = Z690Machine();
        Assert.Equal("Advanced Micro Devices, Inc. [AMD/ATI] Navi 21/23 HDMI/DP Audio Controller", DeviceNames.Name(m.Topology[PciAddress.Parse("03:00.1")], ids));
        Assert.Equal("Intel Corporation Alder Lake-S PCH SATA Controller [AHCI Mode]", DeviceNames.Name(m.Topology[PciAddress.Parse("00:17.0")], ids));
        var placeholder = LspciReader.Read("00:17.0 SATA controller [0106]: Intel Corporation Device [8086:7ae2] (rev 11)\n", "t.txt");
        Assert.Equal("Intel Corporation A newer SATA name", DeviceNames.Name(placeholder.Topology.Devices[0], ids));
        Assert.Equal("Intel Corporation Device", DeviceNames.Name(placeholder.Topology.Devices[0], PciIds.Empty));
        Assert.Equal("SATA controller", DeviceNames.ClassName(placeholder.Topology.Devices[0], PciIds.Empty));
    }

    [Fact]
    public void KernelModulesAreReadFromLspciAndSurviveAJsonMachine()
    {
        var m = Z690Machine();
        Assert.Equal(["nvme"], m.Topology[PciAddress.Parse("04:00.0")].Facts.KernelModules);
        Assert.Equal(["snd_hda_intel", "snd_sof_pci_intel_tgl"], m.Topology[PciAddress.Parse("00:1f.3")].Facts.KernelModules);
        var json = new MemoryStream();
        MachineJson.Write(m, json);
        var back = MachineSource.LoadBytes(json.ToArray(), "back.json");
        foreach (var d in m.Topology.Devices)
            Assert.Equal(d.Facts.KernelModules, back.Topology[d.Address].Facts.KernelModules);
    }

    [Fact]
    public void AMalformedKernelModulesLineIsSkippedWithAWarning()
    {
        var m = LspciReader.Read("00:17.0 SATA controller [0106]: Intel Corporation Device [8086:7ae2] (rev 11)\n\tKernel modules: ahci, bad name\n", "t.txt");
        Assert.Empty(m.Topology.Devices[0].Facts.KernelModules);
        Assert.Contains(m.Warnings, w => w.Contains("Kernel modules:"));
    }

    [Fact]
    public void AStreamLoadsLikeTheFileAndAnEmptyOneIsBadInput()
    {
        var fromStream = MachineSource.LoadStream(new MemoryStream(File.ReadAllBytes(Z690)), MachineSource.StandardInputOrigin);
        Assert.Equal(Z690Machine().Topology.Devices.Select(d => d.Address), fromStream.Topology.Devices.Select(d => d.Address));
        Assert.Equal("standard input", fromStream.Origin);
        var ex = Assert.Throws<InputException>(() => MachineSource.Load("-", () => new MemoryStream()));
        Assert.StartsWith("standard input: nothing was given", ex.Message);
    }
}
