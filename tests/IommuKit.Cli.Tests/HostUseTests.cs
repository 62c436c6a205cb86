using System.Formats.Tar;
using System.IO.Compression;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

/// <summary>
/// What the host uses its devices for (issue 10), read from a directory root built like a live host's: an oracle
/// capture (g_k612_intel_mixed) extracted, plus the proc tables and the sysfs links of block, network, graphics and
/// input devices as the kernel lays them out (relative symlinks, <c>proc/self</c> and <c>proc/net</c> links included).
/// </summary>
public class HostUseTests
{
    private const string Sys = "sys/devices/pci0000:00";

    /// <summary>
    /// The host: root on <c>/dev/mapper/cryptroot</c> (dm-0 over vda2 on the virtio 09:00.0), <c>/boot</c> on sda1 and
    /// swap on sda2 (AHCI 00:1f.2), the default route on the bridge vmbr0 whose port is enp1s0 (01:00.0), boot VGA and
    /// fb0 on 00:01.0, a USB keyboard and a mouse below 05:00.0, a PS/2 keyboard on no PCI function.
    /// </summary>
    private static void WithHostRoot(Action<string> body)
    {
        string root = Path.Combine(Path.GetTempPath(), "iommukit-hostuse-" + Guid.NewGuid().ToString("N"));
        try
        {
            Directory.CreateDirectory(root);
            using (var gz = new GZipStream(File.OpenRead(Oracle("g_k612_intel_mixed")), CompressionMode.Decompress))
                TarFile.ExtractToDirectory(gz, root, overwriteFiles: false);
            void F(string path, string text) { Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(root, path))!); File.WriteAllText(Path.Combine(root, path), text); }
            void L(string path, string target) { Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(root, path))!); File.CreateSymbolicLink(Path.Combine(root, path), target); }
            void D(string path) => Directory.CreateDirectory(Path.Combine(root, path));

            L("proc/self", "4242");
            L("proc/net", "self/net");
            F("proc/4242/mountinfo",
                "1 1 0:2 / / rw - rootfs rootfs rw\n" +
                "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/mapper/cryptroot rw\n" +
                "23 22 8:1 / /boot rw,relatime shared:2 - ext2 /dev/sda1 rw\n" +
                "24 22 0:40 / /home/my\\040files rw shared:3 - tmpfs tmpfs rw\n" +
                "25 22 0:41 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw,lowerdir=/x\n");
            F("proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sda2                               partition\t8388604\t\t0\t\t-2\n");
            F("proc/4242/net/route",
                "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
                "vmbr0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
                "vmbr0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");

            // Block: virtio disk vda (09:00.0) with partition vda2 under dm-0; sda (AHCI 00:1f.2) with sda1, sda2.
            string vda = $"{Sys}/0000:00:0d.0/0000:06:00.0/0000:07:01.0/0000:09:00.0/virtio3/block/vda";
            D(vda + "/vda2");
            D("sys/devices/virtual/block/dm-0/slaves");
            F("sys/devices/virtual/block/dm-0/dm/name", "cryptroot\n");
            L("sys/devices/virtual/block/dm-0/slaves/vda2", "../../../../pci0000:00/0000:00:0d.0/0000:06:00.0/0000:07:01.0/0000:09:00.0/virtio3/block/vda/vda2");
            string sda = $"{Sys}/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda";
            D(sda + "/sda1");
            D(sda + "/sda2");
            L("sys/class/block/vda", "../../devices/pci0000:00/0000:00:0d.0/0000:06:00.0/0000:07:01.0/0000:09:00.0/virtio3/block/vda");
            L("sys/class/block/vda2", "../../devices/pci0000:00/0000:00:0d.0/0000:06:00.0/0000:07:01.0/0000:09:00.0/virtio3/block/vda/vda2");
            L("sys/class/block/dm-0", "../../devices/virtual/block/dm-0");
            L("sys/class/block/sda1", "../../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1");
            L("sys/class/block/sda2", "../../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda2");
            L("sys/dev/block/254:0", "../../devices/virtual/block/dm-0");
            L("sys/dev/block/8:1", "../../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1");

            // Network: vmbr0 (virtual) with its port enp1s0 on 01:00.0.
            D($"{Sys}/0000:00:06.0/0000:01:00.0/net/enp1s0");
            L($"{Sys}/0000:00:06.0/0000:01:00.0/net/enp1s0/device", "../../../0000:01:00.0");
            D("sys/devices/virtual/net/vmbr0");
            L("sys/devices/virtual/net/vmbr0/lower_enp1s0", "../../../pci0000:00/0000:00:06.0/0000:01:00.0/net/enp1s0");
            L("sys/class/net/vmbr0", "../../devices/virtual/net/vmbr0");
            L("sys/class/net/enp1s0", "../../devices/pci0000:00/0000:00:06.0/0000:01:00.0/net/enp1s0");

            // Graphics: 00:01.0 is the boot VGA device and carries fb0.
            F($"{Sys}/0000:00:01.0/boot_vga", "1\n");
            D($"{Sys}/0000:00:01.0/graphics/fb0");
            L($"{Sys}/0000:00:01.0/graphics/fb0/device", "../../../0000:00:01.0");
            L("sys/class/graphics/fb0", "../../devices/pci0000:00/0000:00:01.0/graphics/fb0");

            // Input: a USB keyboard and a USB mouse below 05:00.0, a PS/2 keyboard on the i8042 (no PCI function).
            void Input(string n, string dir, string name, string ev, string key)
            {
                F($"{dir}/{n}/name", name + "\n");
                F($"{dir}/{n}/capabilities/ev", ev + "\n");
                F($"{dir}/{n}/capabilities/key", key + "\n");
                L($"sys/class/input/{n}", "../../" + dir[4..] + "/" + n);
            }
            string usb = $"{Sys}/0000:00:0c.1/0000:05:00.0/usb1/1-1/1-1:1.0/0003:0627:0001.0001/input";
            Input("input3", usb, "QEMU QEMU USB Keyboard", "120013", "1000000000007 ff800000000007ff febeffdfffefffff fffffffffffffffe");
            Input("input4", $"{Sys}/0000:00:0c.1/0000:05:00.0/usb1/1-2/1-2:1.0/0003:0627:0001.0002/input", "QEMU QEMU USB Mouse", "17", "1f0000 0 0 0 0");
            Input("input1", "sys/devices/platform/i8042/serio0/input", "AT Translated Set 2 keyboard", "120013", "402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe");
            body(root);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    private static string Uses(Machine m) => string.Join("\n", m.HostUses!.Uses.Select(u => $"{u.Device} {u.Kind} {u.Detail} {u.Via}".TrimEnd()));

    private const string Expected =
        "0000:09:00.0 RootFs /dev/mapper/cryptroot dm-0 -> vda2\n" +
        "0000:00:1f.2 BootFs /dev/sda1\n" +
        "0000:00:1f.2 Swap /dev/sda2\n" +
        "0000:01:00.0 DefaultRoute vmbr0 vmbr0 -> enp1s0\n" +
        "0000:00:01.0 BootVga boot_vga\n" +
        "0000:00:01.0 ConsoleFb fb0\n" +
        "0000:05:00.0 Keyboard QEMU QEMU USB Keyboard";

    [Fact]
    public void EachHostUseIsTracedFromProcAndSysfsToItsPciFunction()
    {
        WithHostRoot(root =>
        {
            var m = MachineSource.LoadHost(root)!;
            Assert.NotNull(m.HostUses);
            Assert.False(m.HostUses!.Live);
            Assert.Equal(Expected, Uses(m));
        });
    }

    [Fact]
    public void ASwapFileIsTracedThroughItsFileSystemAndAnIpv6DefaultRouteCounts()
    {
        WithHostRoot(root =>
        {
            File.WriteAllText(Path.Combine(root, "proc/swaps"), "Filename\tType\tSize\tUsed\tPriority\n/var/swap\\040file                          file\t1048572\t0\t-2\n");
            // No IPv4 default route; IPv6's ::/0 on enp1s0 (flags RTF_UP|RTF_GATEWAY) and the kernel's unreachable one on lo.
            File.WriteAllText(Path.Combine(root, "proc/4242/net/route"), "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
                "vmbr0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
            string zero = new('0', 32);
            File.WriteAllText(Path.Combine(root, "proc/4242/net/ipv6_route"),
                $"{zero} 00 {zero} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003   enp1s0\n" +
                $"{zero} 00 {zero} 00 {zero} ffffffff 00000001 00000000 00200200       lo\n");
            // A line too short to be a mount and one without the separator are skipped, not fatal.
            File.AppendAllText(Path.Combine(root, "proc/4242/mountinfo"), "garbage\n26 22 8:3 / /x rw no separator here at all\n");
            var m = MachineSource.LoadHost(root)!;
            var uses = Uses(m).Split('\n');
            Assert.Contains("0000:09:00.0 Swap /var/swap file dm-0 -> vda2", uses);
            Assert.Contains("0000:01:00.0 DefaultRoute enp1s0", uses);
            Assert.DoesNotContain(uses, u => u.Contains("vmbr0", StringComparison.Ordinal));
            Assert.Contains("0000:09:00.0 RootFs /dev/mapper/cryptroot dm-0 -> vda2", uses);
        });
    }

    [Fact]
    public void ASnapshotRecordsTheHostUsesAndReadsBackTheSameWithoutTheRestOfTheTables()
    {
        WithHostRoot(root =>
        {
            using var ms = new MemoryStream();
            SnapshotWriter.Capture(root, ms);
            var snap = MachineSource.LoadBytes(ms.ToArray(), "snap.tar.gz");
            Assert.Equal(Expected, Uses(snap));

            ms.Position = 0;
            var members = new Dictionary<string, string>();
            using (var gz = new GZipStream(new MemoryStream(ms.ToArray()), CompressionMode.Decompress))
            using (var tar = new TarReader(gz))
                while (tar.GetNextEntry() is { } e)
                    members[e.Name] = e.DataStream is { } s ? new StreamReader(s).ReadToEnd() : e.LinkName;
            // proc/self is stored as a directory, not as a link to the capturing process's pid: snapshots of one host match.
            Assert.DoesNotContain(members.Keys, k => k.StartsWith("proc/4242", StringComparison.Ordinal));
            Assert.Equal("self/net", members["proc/net"]);
            // Only the mounts that matter and the default routes are kept: not /home, not docker's overlays.
            Assert.Equal("22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/mapper/cryptroot rw\n1 1 0:2 / / rw - rootfs rootfs rw\n23 22 8:1 / /boot rw,relatime shared:2 - ext2 /dev/sda1 rw\n"
                .Split('\n').Order().ToArray(), members["proc/self/mountinfo"].Split('\n').Order().ToArray());
            Assert.DoesNotContain("0002A8C0", members["proc/self/net/route"]);
            Assert.Contains("vmbr0\t00000000", members["proc/self/net/route"]);
            // The mouse was looked at (it is not a keyboard) and the PS/2 keyboard too: both are in, neither is a use.
            Assert.Contains(members.Keys, k => k.EndsWith("input4/capabilities/key", StringComparison.Ordinal));
        });
    }

    [Fact]
    public void AnOlderSnapshotWithoutMountTablesSaysNothingAboutHostUses()
    {
        var m = MachineSource.Load(Oracle("g_k612_intel_mixed"));
        Assert.Null(m.HostUses);
        // And the verdict keeps its hedge, since it cannot know.
        var r = Run("vfio-check", "01:00.0", "--source", Oracle("g_k612_intel_mixed"));
        Assert.DoesNotContain("default route", r.Out);
    }

    [Fact]
    public void TheVerdictNamesWhatTheHostUsesAndSaysTheSnapshotRecordedIt()
    {
        WithHostRoot(root =>
        {
            var r = Run("vfio-check", "01:00.0", "--source", root);
            Assert.Contains("01:00.0 is the network interface of your default route (vmbr0 -> enp1s0) (as the snapshot recorded it)", r.Out);
            Assert.Contains("The host is using it, so `iommu bind --apply` refuses: 01:00.0 is the network interface of your default route", r.Out);
            var j = Run("vfio-check", "01:00.0", "--source", root, "--json");
            var use = j.Json.GetProperty("devices")[0].GetProperty("host_use")[0];
            Assert.Equal("default-route", use.GetProperty("kind").GetString());
            Assert.Equal("vmbr0", use.GetProperty("detail").GetString());
            Assert.Equal("vmbr0 -> enp1s0", use.GetProperty("via").GetString());
            // A NIC the host does not route through loses the hedge about the host's own connection.
            var other = Run("vfio-check", "02:00.0", "--source", root);
            Assert.Contains("not the default route's", other.Out);
            Assert.DoesNotContain("including the host's own connection", other.Out);
        });
    }

    [Fact]
    public void BindApplyRefusesTheDefaultRoutesNicAndWritesNothingUnlessForced()
    {
        WithHostRoot(root =>
        {
            string ov = Path.Combine(root, "sys/bus/pci/devices/0000:01:00.0/driver_override");
            var dry = Run("bind", "01:00.0", "--source", root);
            Assert.Equal(0, dry.Code);
            Assert.Contains("warning: --apply will refuse: 01:00.0 is the network interface of your default route", dry.Err);

            var r = Run("bind", "01:00.0", "--source", root, "--apply", "--yes");
            Assert.Equal(1, r.Code);
            Assert.Contains("refusing to bind 01:00.0: 01:00.0 is the network interface of your default route (vmbr0 -> enp1s0)", r.Err);
            Assert.Contains("--force binds it anyway", r.Err);
            Assert.False(File.Exists(ov));

            var forced = Run("bind", "01:00.0", "--source", root, "--apply", "--yes", "--force");
            Assert.True(forced.Code == 0, forced.Out + forced.Err);
            Assert.Equal("vfio-pci", File.ReadAllText(ov).TrimEnd('\n'));
        });
    }

    [Fact]
    public void TheReportShowsTheSameHostUsesAsVfioCheck()
    {
        WithHostRoot(root =>
        {
            string html = Path.Combine(root, "report.html");
            var r = Run("report", "--source", root, "-o", html);
            Assert.True(r.Code == 0, r.Out + r.Err);
            string page = System.Net.WebUtility.HtmlDecode(File.ReadAllText(html));
            // The default route's NIC: the picture says what the host uses it for, as vfio-check does, not a class guess.
            var check = Run("vfio-check", "01:00.0", "--source", root, "--json");
            var what = check.Json.GetProperty("host_losses").EnumerateArray()
                .Single(l => l.GetProperty("address").GetString() == "0000:01:00.0").GetProperty("what").GetString()!;
            Assert.Contains("default route", what);
            Assert.Contains("01:00.0: " + what, page);
        });
    }

    [Fact]
    public void SetTypeApplyAsksNamingWhatTheHostUsesTheDeviceForInsteadOfItsClass()
    {
        WithHostRoot(root =>
        {
            // 01:00.0 (e1000e, group 13) carries the default route: unbinding it for the type write drops that route.
            string? asked = null;
            Cli.Commands.BindCommand.Confirm = q => { asked = q; return false; };
            try
            {
                var r = Run("set-type", "13", "identity", "--source", root, "--apply");
                Assert.True(asked is not null, r.Out + r.Err);
                Assert.True(asked!.Contains("0000:01:00.0 from e1000e (it is the network interface of your default route (vmbr0 -> enp1s0)", StringComparison.Ordinal), asked);
                Assert.DoesNotContain("its network link drops", asked);
                Assert.Equal(1, r.Code);
                Assert.Contains("nothing written", r.Err);
            }
            finally
            {
                Cli.Commands.BindCommand.Confirm = null;
            }
        });
    }

    [Fact]
    public void ApplyBindItselfRefusesAHeldPlanBeforeAnyWrite()
    {
        WithHostRoot(root =>
        {
            var m = MachineSource.LoadHost(root)!;
            var v = HostAnalysis.VfioCheck(HostAnalysis.Analyze(m), PciAddress.Parse("0000:00:1f.2"), null, force: false);
            var io = new NoWrites();
            var outcome = HostAnalysis.ApplyBind(v, io);
            Assert.False(outcome.Ok);
            Assert.Empty(outcome.Done);
            Assert.Equal(0, io.Writes);
            Assert.StartsWith("refusing to bind: 00:1f.2 holds /dev/sda1, your boot filesystem; holds /dev/sda2, your swap", outcome.Failure);
        });
    }

    private sealed class NoWrites : ISysfsAccess
    {
        public int Writes;
        public bool Live => false;
        public void Write(string path, string text) => Writes++;
        public string? Read(string path) => null;
        public string? DriverOf(PciAddress device) => null;
    }
}
