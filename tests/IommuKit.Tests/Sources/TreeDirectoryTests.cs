using System.Runtime.InteropServices;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Sources;

/// <summary>
/// Issue 11 reads a device's attributes and links relative to its directory, opened once (<see cref="TreeDirectory"/>),
/// and parses short attributes on the stack. These pin down that every answer is the one <see cref="FileTree"/> gives
/// for the whole path: links inside the tree followed, escapes refused naming the path, a FIFO refused at once, caps.
/// </summary>
public class TreeDirectoryTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "iommukit-treedir-" + Guid.NewGuid().ToString("n"));

    public TreeDirectoryTests()
    {
        Directory.CreateDirectory(Path.Combine(_root, "dev/a/sub"));
        Directory.CreateDirectory(Path.Combine(_root, "dev/b"));
        Directory.CreateDirectory(Path.Combine(_root, "kernel/iommu_groups/12"));
        File.WriteAllText(Path.Combine(_root, "dev/a/vendor"), "0x8086\n");
        File.WriteAllText(Path.Combine(_root, "dev/a/class"), " 0x020000 \n\0");
        File.WriteAllText(Path.Combine(_root, "dev/a/notHex"), "vendor\n");
        File.WriteAllText(Path.Combine(_root, "dev/a/utf8"), "caf\u00e9\u00a0\n");
        File.WriteAllText(Path.Combine(_root, "dev/a/long"), "0x" + new string('0', 400) + "1\n");
        File.WriteAllText(Path.Combine(_root, "dev/b/big"), new string('x', 40_000));
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private DirectoryFileTree Tree() => new(_root);

    private void Link(string path, string target) => File.CreateSymbolicLink(Path.Combine(_root, path), target);

    [Fact]
    public void ShortAttributesReadAsTheTreeReadsThemWhole()
    {
        var tree = Tree();
        using var d = tree.OpenDirectory("dev/a")!;
        Assert.True(d.Handle >= 0); // read relative to the open directory, not by path
        foreach (var name in new[] { "vendor", "class", "notHex", "utf8", "long", "missing", "sub" })
        {
            Assert.Equal(tree.ReadText("dev/a/" + name), d.ReadText(name));
            var text = tree.ReadText("dev/a/" + name);
            ulong? expected = text is not null && HexText.TryParse(text.AsSpan().Trim(), out var v) ? v : null;
            Assert.Equal(expected, d.ReadHex(name));
        }
        Assert.Equal(0x8086UL, d.ReadHex("vendor"));
        Assert.Equal(0x020000UL, d.ReadHex("class"));
        Assert.Equal(1UL, d.ReadHex("long")); // longer than the stack buffer: read by path, same answer
        Assert.Null(d.ReadHex("notHex"));
        Assert.Null(d.ReadHex("missing"));
        Assert.Null(d.ReadHex("sub")); // a directory is not an attribute
    }

    [Fact]
    public void AnAttributeThatIsALinkInsideTheTreeIsReadThroughIt()
    {
        Link("dev/b/vendor", "../a/vendor");
        Link("dev/b/absolute", "/dev/a/vendor"); // absolute: from the root, chroot-like
        using var d = Tree().OpenDirectory("dev/b")!;
        Assert.Equal(0x8086UL, d.ReadHex("vendor"));
        Assert.Equal("0x8086", d.ReadText("absolute"));
    }

    [Fact]
    public void AnAttributeLinkClimbingAboveTheRootIsRefusedNamingThePath()
    {
        Link("dev/b/vendor", "../../../../../../../../etc/hostname");
        using var d = Tree().OpenDirectory("dev/b")!;
        var ex = Assert.Throws<InputException>(() => d.ReadHex("vendor"));
        Assert.Contains("'dev/b/vendor' climbs above the root", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AFifoAttributeIsRefusedAtOnceNotReadAsEmpty()
    {
        Assert.Equal(0, mkfifo(Path.Combine(_root, "dev/a/revision"), Convert.ToUInt32("644", 8)));
        var read = Task.Run(() =>
        {
            using var d = Tree().OpenDirectory("dev/a")!;
            return Assert.Throws<FileReadException>(() => d.ReadHex("revision"));
        });
        Assert.Same(read, await Task.WhenAny(read, Task.Delay(TimeSpan.FromSeconds(30)))); // else the open blocked
        var ex = await read;
        Assert.Contains("FIFO", ex.Message, StringComparison.Ordinal);
        Assert.Equal(Path.Combine(_root, "dev/a/revision"), ex.File);
    }

    [Fact]
    public void CapsAreTheTreesAndAFileLongerThanTheCapIsRefusedNamingIt()
    {
        var tree = Tree();
        using var b = tree.OpenDirectory("dev/b")!;
        Assert.Equal(40_000, b.ReadText("big")!.Length);
        Assert.Contains("dev/b/big: file is longer than the 1000-byte cap", Assert.Throws<InputException>(() => b.ReadText("big", 1000)).Message, StringComparison.Ordinal);
        using var a = tree.OpenDirectory("dev/a")!;
        var ex = Assert.Throws<InputException>(() => a.ReadText("vendor", 3)); // shorter than the stack buffer, over the cap
        Assert.Contains("longer than the 3-byte cap", ex.Message, StringComparison.Ordinal);
        Assert.Contains("dev/a/vendor", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LinksGiveTheirLastComponentAndANumberOnlyWhenItIsOne()
    {
        Link("dev/a/iommu_group", "../../kernel/iommu_groups/12");
        Link("dev/a/driver", "../../bus/pci/drivers/e1000e/");
        Link("dev/a/odd", "../../kernel/iommu_groups/+12");
        var tree = Tree();
        using var d = tree.OpenDirectory("dev/a")!;
        Assert.Equal(12, d.ReadLinkNumber("iommu_group"));
        Assert.Equal("12", d.ReadLinkName("iommu_group"));
        Assert.Equal("e1000e", d.ReadLinkName("driver"));
        Assert.Equal(tree.ReadLinkName("dev/a/driver"), d.ReadLinkName("driver"));
        Assert.Null(d.ReadLinkNumber("driver"));
        Assert.Null(d.ReadLinkNumber("odd")); // NumberStyles.None: no sign
        Assert.Null(d.ReadLinkName("vendor")); // a file is not a link
        Assert.Null(d.ReadLinkName("missing"));
    }

    [Fact]
    public void OpeningFollowsLinksInsideTheTreeAndGivesNullForAFileOrNothing()
    {
        Link("dev/c", "a");
        var tree = Tree();
        using (var d = tree.OpenDirectory("dev/c")!)
        {
            Assert.Equal("dev/a", d.Path);
            Assert.Equal(0x8086UL, d.ReadHex("vendor"));
        }
        Assert.Null(tree.OpenDirectory("dev/a/vendor"));
        Assert.Null(tree.OpenDirectory("dev/missing"));
        Link("dev/out", "../../../../../../..");
        Assert.Throws<InputException>(() => tree.OpenDirectory("dev/out"));
    }

    [Fact]
    public void OpeningADirectoryTheWalkHasNotMetGivesWhatALaterWalkOfTheSameTreeGives()
    {
        // OpenDirectory learns a name it has not met by opening it as a directory (no statx): each kind of last name
        // (a directory, a link to one, a chain of links, a link to a file, a file, nothing, a link climbing out) gives
        // what a fresh tree's Resolve and Lstat say of it, the handle reads the right directory, and what was learnt
        // is what a later walk of the same tree sees.
        Link("dev/c", "a");
        Link("dev/chain", "c");
        Link("dev/tofile", "a/vendor");
        Link("dev/out", "../../../../../../..");
        string[] paths = ["dev/a", "dev/c", "dev/chain", "dev/b", "dev/a/sub", "dev/tofile", "dev/a/vendor", "dev/missing", "dev/a/missing/x"];
        foreach (var first in paths)
        {
            var tree = Tree();
            using (var d = tree.OpenDirectory(first))
            {
                var fresh = Tree();
                string? canonical = fresh.Resolve(first);
                bool isDir = canonical is not null && fresh.Lstat(canonical) == FileNodeKind.Directory;
                Assert.Equal(isDir, d is not null);
                if (d is not null)
                {
                    Assert.Equal(canonical, d.Path);
                    Assert.True(d.Handle >= 0);
                    Assert.Equal(fresh.List(canonical!), d.List("."));
                }
            }
            foreach (var p in paths)
            {
                var fresh = Tree();
                Assert.Equal(fresh.Resolve(p), tree.Resolve(p));
                Assert.Equal(fresh.IsDirectory(p), tree.IsDirectory(p));
                Assert.Equal(fresh.Resolve(p) is { } c ? fresh.Lstat(c) : FileNodeKind.Missing, tree.Resolve(p) is { } c2 ? tree.Lstat(c2) : FileNodeKind.Missing);
            }
            Assert.Throws<InputException>(() => tree.OpenDirectory("dev/out"));
        }
    }

    [Fact]
    public void AFaultOnAnAttributeIsReportedNamingItNeverReadAsAbsent()
    {
        var tree = new DirectoryFileTree(_root) { Faults = p => p == "dev/a/vendor" ? "permission denied" : null };
        using var d = tree.OpenDirectory("dev/a")!;
        var ex = Assert.Throws<FileReadException>(() => d.ReadHex("vendor"));
        Assert.Equal("permission denied", ex.Reason);
        Assert.Equal(Path.Combine(_root, "dev/a/vendor"), ex.File);
        Assert.Equal(0x020000UL, d.ReadHex("class"));
    }

    [Fact]
    public void EveryDeviceAttributeAndLinkOfACaptureReadsAsThroughThePathInBothKindsOfTree()
    {
        string tar = Path.Combine(Fixtures.Oracle, "g_k612_intel_mixed.tar.gz");
        string root = SourceTestKit.ExtractToTemp(tar);
        try
        {
            using var stream = File.OpenRead(tar);
            FileTree[] trees = [new DirectoryFileTree(root), TarFileTree.Read(new System.IO.Compression.GZipStream(stream, System.IO.Compression.CompressionMode.Decompress), tar)];
            string[] files = ["vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision", "removable", "config"];
            string[] links = ["iommu_group", "iommu", "driver", "firmware_node"];
            foreach (var tree in trees)
            {
                int devices = 0;
                foreach (var name in tree.List(SysfsReader.DevicesDir)!)
                {
                    string dir = tree.Resolve($"{SysfsReader.DevicesDir}/{name}")!;
                    using var d = tree.OpenDirectory(dir)!;
                    // The same names read without the type check a live sysfs does not need: the same answers for
                    // files, links, directories ("power", a bridge's child) and missing names.
                    using var k = tree.OpenDirectory(dir, kernelMade: true)!;
                    foreach (var f in files.Concat(["power", "subsystem", "firmware_node", "no-such-name"]).Concat(tree.List(dir)!))
                    {
                        var text = tree.ReadText(dir + "/" + f);
                        Assert.Equal(text, d.ReadText(f));
                        Assert.Equal(text, k.ReadText(f));
                        Assert.Equal(text is not null && HexText.TryParse(text.AsSpan().Trim(), out var v) ? v : null, d.ReadHex(f));
                    }
                    foreach (var l in links)
                    {
                        Assert.Equal(tree.ReadLinkName(dir + "/" + l), d.ReadLinkName(l));
                    }
                    Assert.NotNull(d.ReadHex("vendor"));
                    devices++;
                }
                Assert.True(devices > 10);
            }
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Fact]
    public void ThisHostsLiveSysfsReadsTheSameWithoutTheTypeCheck()
    {
        // A live sysfs (this machine's, when it has PCI): each name a load reads, opened as kernel-made (no statx, a
        // short read taken as the end) and as any directory, gives the same text. Nothing to compare without one.
        var tree = new DirectoryFileTree("/");
        if (!tree.IsLiveSysfs(SysfsReader.DevicesDir)) return;
        string[] names = ["uevent", "revision", "removable", "vendor", "device", "class", "subsystem_vendor", "subsystem_device",
            "config", "power", "driver", "iommu_group", "subsystem", "no-such-name"];
        int read = 0;
        foreach (var name in tree.List(SysfsReader.DevicesDir)!)
        {
            string dir = tree.Resolve($"{SysfsReader.DevicesDir}/{name}")!;
            using var d = tree.OpenDirectory(dir)!;
            using var k = tree.OpenDirectory(dir, kernelMade: true)!;
            foreach (var f in names)
            {
                Assert.Equal(d.ReadText(f), k.ReadText(f));
                read++;
            }
            Assert.Equal(d.ReadPciUevent(), k.ReadPciUevent());
        }
        foreach (var g in tree.List("sys/kernel/iommu_groups") ?? [])
        {
            using var d = tree.OpenDirectory("sys/kernel/iommu_groups/" + g)!;
            using var k = tree.OpenDirectory("sys/kernel/iommu_groups/" + g, kernelMade: true)!;
            foreach (var f in new[] { "type", "reserved_regions", "name", "devices" }) Assert.Equal(d.ReadText(f), k.ReadText(f));
        }
        Assert.True(read > 0);
    }

    [Fact]
    public void ListingANameInAnOpenDirectoryGivesWhatTheTreeGivesForThePath()
    {
        Directory.CreateDirectory(Path.Combine(_root, "kernel/iommu_groups/12/devices"));
        foreach (var n in new[] { "0000:00:1f.3", "0000:00:1f.0", "0000:00:1f.4" })
            Link($"kernel/iommu_groups/12/devices/{n}", $"../../../../dev/{n}");
        Link("kernel/iommu_groups/12/alias", "devices"); // a link to a directory inside the tree: followed
        Link("kernel/iommu_groups/12/out", "../../../../../../.."); // climbing out: refused as by path
        File.WriteAllText(Path.Combine(_root, "kernel/iommu_groups/12/type"), "DMA\n");
        var tree = Tree();
        using var g = tree.OpenDirectory("kernel/iommu_groups/12")!;
        Assert.True(g.Handle >= 0);
        var names = g.List("devices");
        Assert.Equal(["0000:00:1f.0", "0000:00:1f.3", "0000:00:1f.4"], names);
        Assert.Equal(tree.List("kernel/iommu_groups/12/devices"), names);
        Assert.Equal(names, g.List("alias"));
        Assert.Null(g.List("type"));    // a file is not a directory
        Assert.Null(g.List("missing"));
        Assert.Contains("climbs above the root", Assert.Throws<InputException>(() => g.List("out")).Message, StringComparison.Ordinal);
        // The fault seam sees the listing, as it sees a listing by path.
        var faulty = new DirectoryFileTree(_root) { Faults = p => p == "kernel/iommu_groups/12/devices" ? "permission denied" : null };
        using var f = faulty.OpenDirectory("kernel/iommu_groups/12")!;
        Assert.Equal("permission denied", Assert.Throws<FileReadException>(() => f.List("devices")).Reason);
    }

    [Fact]
    public void ADeviceLinkRemovedAfterTheListingReadsAsMissingNotAsABadTree()
    {
        // The listing remembers each name's kind (d_type); a link unplugged before it is walked is then a missing
        // device (skipped with a warning by the reader), never "a symlink with an empty target" failing the machine.
        Link("dev/gone", "a");
        var tree = Tree();
        Assert.Contains("gone", tree.List("dev")!);
        File.Delete(Path.Combine(_root, "dev/gone"));
        Assert.Null(tree.Resolve("dev/gone"));
        Assert.Null(tree.OpenDirectory("dev/gone"));
    }

    [Fact]
    public void ListingsThroughReaddirAndThroughGetdentsAgree()
    {
        // glibc before 2.30 has no getdents64 wrapper: listings then go through opendir/readdir. Both give the same
        // names and, where the file system says, the same kinds.
        for (int i = 0; i < 700; i++) File.WriteAllText(Path.Combine(_root, $"dev/b/f{i:d4}-{new string('n', 40)}"), "");
        Link("dev/b/link", "../a");
        Directory.CreateDirectory(Path.Combine(_root, "dev/b/dir"));
        string path = Path.Combine(_root, "dev/b");
        var kinds = new List<FileNodeKind?>();
        var viaGetdents = RegularFile.ListDirectory(path, path, SourceLimits.MaxEntries, kinds)!;
        var kindsReaddir = new List<FileNodeKind?>();
        List<string> viaReaddir;
        RegularFile.ForceReaddir = true;
        try { viaReaddir = RegularFile.ListDirectory(path, path, SourceLimits.MaxEntries, kindsReaddir)!; }
        finally { RegularFile.ForceReaddir = false; }
        Assert.Equal(703, viaGetdents.Count); // more than one 8 KiB getdents64 buffer holds
        Assert.Equal(viaGetdents.Zip(kinds).OrderBy(p => p.First, StringComparer.Ordinal), viaReaddir.Zip(kindsReaddir).OrderBy(p => p.First, StringComparer.Ordinal));
        Assert.Contains(("link", (FileNodeKind?)FileNodeKind.Symlink), viaGetdents.Zip(kinds));
        Assert.Contains(("dir", (FileNodeKind?)FileNodeKind.Directory), viaGetdents.Zip(kinds));
        Assert.Contains(("big", (FileNodeKind?)FileNodeKind.File), viaGetdents.Zip(kinds));
        Assert.Null(RegularFile.ListDirectory(Path.Combine(_root, "dev/a/vendor"), "x", 10)); // a file
        Assert.Null(RegularFile.ListDirectory(Path.Combine(_root, "nothing"), "x", 10));
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int mkfifo([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mode);
}
