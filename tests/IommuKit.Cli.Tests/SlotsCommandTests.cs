using System.Text.Json;
using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

/// <summary>
/// Issue 10, slots: <c>iommu slots [--for]</c> over real dumps (tests/fixtures/lspci, SOURCES.md) and oracle captures,
/// slot names beside devices in <c>groups</c>, <c>devices</c> and <c>vfio-check</c>, and <c>groups -r</c>.
/// </summary>
public class SlotsCommandTests
{
    private static string Dump(string name) => Path.Combine(FixturesDir, "lspci", name + ".txt");
    private const string Z390 = "intel-z390-coffeelake-asrock-pg-sli-iommugroups";
    private const string Z690 = "intel-z690-alderlake-asrock-z690-pro-rs-debian-acs-iommugroups";
    private const string Renoir = "amd-renoir-apu-asrock-x300m-stx-pve-noacs-iommugroups";
    private const string Xps15 = "laptop-kabylake-h-alpineridge-nvidia-dell-xps15-9560-debian-iommugroups";
    private const string B560 = "intel-b560-rocketlake-asrock-b560m-hdv-debian-acs-iommugroups";

    [Fact]
    public void SlotsListsEverySlotPortWithItsOccupantAndGroup()
    {
        var r = Run("slots", "--pci-ids", "none", "--source", Dump(Z390));
        Assert.Equal(0, r.Code);
        AssertGolden("slots-z390.txt", r.Out);
    }

    [Fact]
    public void SlotsForAGpuWithItsPathOnlyRanksWhereItIsFirstThenTheFreeSlots()
    {
        // The GTX sits with its CPU root port 00:01.0 (no ACS): a group with its path only, which can be passed through,
        // so staying is best. The chipset root ports 00:1c.x have ACS: moved there, the card is alone; the empty ones
        // come before the occupied ones.
        var r = Run("slots", "--for", "01:00.0", "--pci-ids", "none", "--source", Dump(Z390));
        Assert.Equal(0, r.Code);
        AssertGolden("slots-z390-for-01_00.0.txt", r.Out);
        var j = Run("slots", "--for", "01:00.0", "--json", "--pci-ids", "none", "--source", Dump(Z390)).Json;
        var slots = j.GetProperty("slots").EnumerateArray().ToList();
        Assert.Equal(["0000:00:01.0", "0000:00:1c.5", "0000:00:1c.6", "0000:00:1c.7", "0000:00:1c.0", "0000:00:1d.0"],
            slots.Select(s => s.GetProperty("port").GetString()));
        Assert.Equal(["with-path", "alone", "alone", "alone", "alone", "alone"], slots.Select(s => s.GetProperty("fit").GetString()));
        Assert.True(slots[0].GetProperty("current").GetBoolean());
        Assert.Equal(["0000:00:01.0"], slots[0].GetProperty("with").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(0, slots[1].GetProperty("occupants").GetArrayLength());
        Assert.Equal("0000:02:00.0", slots[4].GetProperty("occupants")[0].GetProperty("address").GetString());
        Assert.True(j.GetProperty("isolatable").GetBoolean());
    }

    [Fact]
    public void SlotsForACardBehindPortsWithoutAcsSaysNoSlotIsolatesItAndExitsOne()
    {
        // Renoir's GPP bridges 00:02.1/00:02.3 lack ACS: wherever the NVMe goes, it shares with the NIC.
        var r = Run("slots", "--for", "01:00.0", "--json", "--pci-ids", "none", "--source", Dump(Renoir));
        Assert.Equal(1, r.Code);
        Assert.False(r.Json.GetProperty("isolatable").GetBoolean());
        Assert.All(r.Json.GetProperty("slots").EnumerateArray(), s => Assert.Equal("shares", s.GetProperty("fit").GetString()));
        Assert.Contains(r.Json.GetProperty("slots")[0].GetProperty("with").EnumerateArray(), e => e.GetString() == "0000:02:00.0");
    }

    public static TheoryData<string, string> Cards() => new()
    {
        { Z390, "01:00.0" },
        { Renoir, "01:00.0" },
        { Xps15, "01:00.0" }, // includes the empty hot-plug slot 00:1d.6
        { Z690, "03:00.0" }, // a GPU behind its card's own switch: the switch moves
    };

    [Theory]
    [MemberData(nameof(Cards))]
    public void SlotsForRankingIsExactlyWhatWhatIfPredictsForEachSlot(string dump, string card)
    {
        var j = Run("slots", "--for", card, "--json", "--pci-ids", "none", "--source", Dump(dump)).Json;
        string moves = j.GetProperty("moves").GetString()!;
        string asked = j.GetProperty("card").GetString()!;
        int checkedSlots = 0;
        foreach (var slot in j.GetProperty("slots").EnumerateArray())
        {
            Assert.Equal(JsonValueKind.Null, slot.GetProperty("problem").ValueKind);
            if (slot.GetProperty("current").GetBoolean()) continue;
            string port = slot.GetProperty("port").GetString()!;
            var w = Run("whatif", "--move", $"{moves}={port}", "--json", "--pci-ids", "none", "--source", Dump(dump));
            Assert.True(w.Code is 0 or 1, w.Err);
            var map = w.Json.GetProperty("change").GetProperty("move").GetProperty("addresses");
            string there = map.GetProperty(asked).GetString()!;
            var group = w.Json.GetProperty("groups_after").EnumerateArray()
                .Single(g => g.GetProperty("devices").EnumerateArray().Any(d => d.GetProperty("address").GetString() == there));
            Assert.Equal(group.GetProperty("devices").EnumerateArray().Select(d => d.GetProperty("address").GetString()),
                slot.GetProperty("group").EnumerateArray().Select(e => e.GetString()));
            // "with" is the group less the moved card's own functions.
            var movedTo = map.EnumerateObject().Select(p => p.Value.GetString()).ToHashSet();
            Assert.Equal(slot.GetProperty("group").EnumerateArray().Select(e => e.GetString()).Where(a => !movedTo.Contains(a)),
                slot.GetProperty("with").EnumerateArray().Select(e => e.GetString()));
            checkedSlots++;
        }
        Assert.True(checkedSlots > 0);
    }

    [Fact]
    public void AGpuBehindItsCardsOwnSwitchMovesWithTheSwitch()
    {
        var r = Run("slots", "--for", "03:00.0", "--json", "--pci-ids", "none", "--source", Dump(Z690));
        Assert.Equal("0000:01:00.0", r.Json.GetProperty("moves").GetString());
        var current = r.Json.GetProperty("slots").EnumerateArray().Single(s => s.GetProperty("current").GetBoolean());
        Assert.Equal("0000:00:01.0", current.GetProperty("port").GetString());
        Assert.DoesNotContain(r.Json.GetProperty("slots").EnumerateArray(), s => s.GetProperty("port").GetString() == "0000:02:00.0");
    }

    [Theory]
    [InlineData(Z690, "09:1f.0", "0000:09:1f.0: no such device")]
    [InlineData(Z690, "00:1f.3", "built into the chipset or CPU")]
    [InlineData(Z690, "02:00.0", "a port inside the switch at 01:00.0, not a card")]
    [InlineData(Z690, "nonsense", "--for 'nonsense' is not a PCI address")]
    public void BadCardsAreOneLineErrors(string dump, string card, string says)
    {
        var r = Run("slots", "--for", card, "--pci-ids", "none", "--source", Dump(dump));
        AssertOneLineError(r, says);
    }

    [Fact]
    public void AVirtualFunctionIsNotACard()
    {
        // h_k612_sriov_nvme: 01:00.1 is a VF of the NVMe at 01:00.0.
        var r = Run("slots", "--for", "01:00.1", "--pci-ids", "none", "--source", Oracle("h_k612_sriov_nvme"));
        AssertOneLineError(r, "SR-IOV virtual function", "01:00.0");
    }

    private static void AssertOneLineError(Result r, params string[] says)
    {
        Assert.True(r.Code == 3, $"exit {r.Code}: {r.Err}");
        Assert.Equal("", r.Out);
        var lines = r.Err.TrimEnd('\n').Split('\n');
        Assert.True(lines.Length == 1, r.Err);
        Assert.StartsWith("iommu: ", lines[0]);
        foreach (var s in says) Assert.Contains(s, lines[0]);
    }

    [Fact]
    public void SysfsSlotNamesComeFromTheCapturedSlotsDirectory()
    {
        // QEMU's pcie-root-ports register pciehp slots "0" and "0-2"; the card in each carries the slot's name.
        var r = Run("slots", "--json", "--pci-ids", "none", "--source", Oracle("h_k612_sriov_nvme"));
        Assert.Equal(0, r.Code);
        var slots = r.Json.GetProperty("slots").EnumerateArray().ToList();
        Assert.Equal(["0", "0-2"], slots.Select(s => s.GetProperty("name").GetString()));
        Assert.All(slots, s => Assert.True(s.GetProperty("hotplug").GetBoolean()));
        Assert.Equal("0-2", slots[1].GetProperty("occupants")[0].GetProperty("slot").GetString());
        Assert.Equal(JsonValueKind.Null, r.Json.GetProperty("card").ValueKind);
    }

    [Fact]
    public void SlotNamesStandBesidePortsAndCardsInDevicesGroupsAndVfioCheck()
    {
        // XPS 15: 03:00.0 has lspci's "Physical Slot: 1" (its port's PSN is 5); other ports only have a Slot #N.
        var devices = Run("devices", "--source", Dump(Xps15));
        Assert.Contains(devices.Lines, l => l.Contains("0000:00:1c.1 [8086:a111]") && l.EndsWith(", slot 1"));
        Assert.Contains(devices.Lines, l => l.Contains("0000:03:00.0 [10ec:525a]") && l.EndsWith(", slot 1"));
        Assert.Contains(devices.Lines, l => l.Contains("0000:00:1d.6 [8086:a11e]") && l.EndsWith(", slot #18"));
        var dj = Run("devices", "--json", "--source", Dump(Xps15)).Json.GetProperty("devices").EnumerateArray().ToList();
        Assert.Equal("#1", dj.Single(d => d.GetProperty("address").GetString() == "0000:01:00.0").GetProperty("slot").GetString());
        Assert.Equal(JsonValueKind.Null, dj.Single(d => d.GetProperty("address").GetString() == "0000:00:1f.3").GetProperty("slot").ValueKind);

        var groups = Run("groups", "--pci-ids", "none", "--source", Dump(Xps15));
        Assert.Contains(groups.Lines, l => l.StartsWith("  03:00.0 ", StringComparison.Ordinal) && l.EndsWith("  slot: 1"));
        var gj = Run("groups", "--json", "--pci-ids", "none", "--source", Dump(Xps15)).Json;
        Assert.Contains(gj.GetProperty("groups").EnumerateArray().SelectMany(g => g.GetProperty("devices").EnumerateArray()),
            d => d.GetProperty("address").GetString() == "0000:03:00.0" && d.GetProperty("slot").GetString() == "1");

        var v = Run("vfio-check", "01:00.0", "--json", "--pci-ids", "none", "--source", Dump(B560)).Json;
        Assert.All(v.GetProperty("devices").EnumerateArray(), d => Assert.Equal("#1", d.GetProperty("slot").GetString()));
        var vt = Run("vfio-check", "01:00.0", "--pci-ids", "none", "--source", Dump(B560));
        Assert.Contains(vt.Lines, l => l.StartsWith("  asked     01:00.0 ", StringComparison.Ordinal) && l.EndsWith("slot: #1"));
    }

    [Fact]
    public void GroupsRelatedListsACardsFunctionsInOtherGroups()
    {
        // Z690: the Radeon 03:00.0 is in group 15, its HDMI audio 03:00.1 in group 16 (ls-iommu -r).
        var r = Run("groups", "-r", "--pci-ids", "none", "--source", Dump(Z690));
        Assert.Equal(0, r.Code);
        int g15 = Array.IndexOf(r.Lines, r.Lines.First(l => l.StartsWith("Group 15 ", StringComparison.Ordinal)));
        Assert.StartsWith("  03:00.0 ", r.Lines[g15 + 1]);
        Assert.Equal("  related: 03:00.1 is part of this card and sits in group 16 (driver snd_hda_intel)", r.Lines[g15 + 2]);
        Assert.Contains("  related: 03:00.0 is part of this card and sits in group 15 (driver amdgpu)", r.Lines);
        Assert.Equal(2, r.Lines.Count(l => l.StartsWith("  related: ", StringComparison.Ordinal)));
        Assert.DoesNotContain(Run("groups", "--pci-ids", "none", "--source", Dump(Z690)).Lines, l => l.Contains("related:"));

        var j = Run("groups", "--related", "--json", "--pci-ids", "none", "--source", Dump(Z690)).Json;
        var group15 = j.GetProperty("groups").EnumerateArray().Single(g => g.GetProperty("id").GetInt32() == 15);
        var rel = Assert.Single(group15.GetProperty("related").EnumerateArray());
        Assert.Equal("0000:03:00.1", rel.GetProperty("address").GetString());
        Assert.Equal(16, rel.GetProperty("group").GetInt32());
        Assert.Equal("snd_hda_intel", rel.GetProperty("driver").GetString());
        Assert.All(j.GetProperty("groups").EnumerateArray(), g => Assert.True(g.TryGetProperty("related", out _)));
        var plain = Run("groups", "--json", "--pci-ids", "none", "--source", Dump(Z690)).Json;
        Assert.All(plain.GetProperty("groups").EnumerateArray(), g => Assert.False(g.TryGetProperty("related", out _)));
    }

    [Fact]
    public void GroupsRelatedAgreesWithVfioChecksRelatedFunctions()
    {
        // One rule: what groups -r lists under the GPU's group is what vfio-check binds with it.
        var v = Run("vfio-check", "03:00.0", "--json", "--pci-ids", "none", "--source", Dump(Z690)).Json;
        var j = Run("groups", "-r", "--json", "--pci-ids", "none", "--source", Dump(Z690)).Json;
        var g = j.GetProperty("groups").EnumerateArray().Single(x => x.GetProperty("id").GetInt32() == v.GetProperty("group").GetProperty("id").GetInt32());
        static string[] Rows(JsonElement a) => a.EnumerateArray().Select(e => $"{e.GetProperty("address")} {e.GetProperty("group")} {e.GetProperty("driver")}").ToArray();
        Assert.Single(Rows(g.GetProperty("related")));
        Assert.Equal(Rows(v.GetProperty("related")), Rows(g.GetProperty("related")));
    }

    [Fact]
    public void RelatedDoesNotCombineWithLegacy()
    {
        var r = Run("groups", "-r", "--legacy", "--pci-ids", "none", "--source", Dump(Z690));
        Assert.Equal(4, r.Code);
        Assert.Contains("--legacy and --related cannot be combined", r.Err);
    }
}
