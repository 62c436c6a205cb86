using System.Runtime.InteropServices;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Sources;

/// <summary>
/// Issue 11 read a directory tree with fewer system calls (an attribute is opened with O_NOFOLLOW instead of lstat'ed
/// first, a link is readlink'ed directly, a directory is listed without a stat per entry). These pin down that the tree
/// still answers exactly as before: links inside the tree are followed, links out of it refused, a FIFO refused at once.
/// </summary>
public class DirectoryFileTreeTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "iommukit-tree-" + Guid.NewGuid().ToString("n"));

    public DirectoryFileTreeTests()
    {
        Directory.CreateDirectory(Path.Combine(_root, "dev/a"));
        Directory.CreateDirectory(Path.Combine(_root, "dev/b"));
        File.WriteAllText(Path.Combine(_root, "dev/a/vendor"), "0x8086\n");
        File.WriteAllText(Path.Combine(_root, "dev/b/big"), new string('x', 40_000));
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private DirectoryFileTree Tree() => new(_root);

    private void Link(string path, string target) => File.CreateSymbolicLink(Path.Combine(_root, path), target);

    [Fact]
    public void AnAttributeThatIsALinkInsideTheTreeIsReadThroughIt()
    {
        Link("dev/b/vendor", "../a/vendor");
        Link("dev/b/absolute", "/dev/a/vendor"); // absolute: from the root, chroot-like
        Assert.Equal("0x8086", Tree().ReadText("dev/b/vendor"));
        Assert.Equal("0x8086", Tree().ReadText("dev/b/absolute"));
    }

    [Fact]
    public void AnAttributeLinkClimbingAboveTheRootIsRefusedNamingThePath()
    {
        Link("dev/b/vendor", "../../../../../../../../etc/hostname");
        var ex = Assert.Throws<InputException>(() => Tree().ReadText("dev/b/vendor"));
        Assert.Contains("'dev/b/vendor' climbs above the root", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ALinkedDirectoryOnTheWayIsResolvedInsideTheTree()
    {
        Link("dev/c", "a");
        Assert.Equal("0x8086", Tree().ReadText("dev/c/vendor"));
        Assert.Equal("0x8086", Tree().ReadText("dev/c/../a/vendor"));
    }

    [Fact]
    public void AMissingNameOrADirectoryReadsAsNullAndAFileIsReadWhole()
    {
        var tree = Tree();
        Assert.Null(tree.ReadBytes("dev/a/missing", 100));
        Assert.Null(tree.ReadBytes("dev/missing/vendor", 100));
        Assert.Null(tree.ReadBytes("dev/a/vendor/under-a-file", 100));
        Assert.Null(tree.ReadBytes("dev/a", 100));
        Assert.Equal(40_000, tree.ReadBytes("dev/b/big", 64 * 1024)!.Length);
        Assert.Equal(1001, tree.ReadBytes("dev/b/big", 1000)!.Length); // cap + 1: the caller reports the excess
        Assert.Contains("longer than the 1000-byte cap", Assert.Throws<InputException>(() => tree.ReadText("dev/b/big", 1000)).Message,
            StringComparison.Ordinal);
    }

    [Fact]
    public async Task AFifoAttributeIsRefusedAtOnceNotReadAsEmpty()
    {
        Assert.Equal(0, mkfifo(Path.Combine(_root, "dev/a/class"), Convert.ToUInt32("644", 8)));
        var read = Task.Run(() => Assert.Throws<FileReadException>(() => Tree().ReadBytes("dev/a/class", 100)));
        Assert.Same(read, await Task.WhenAny(read, Task.Delay(TimeSpan.FromSeconds(30)))); // else the open blocked
        Assert.Contains("FIFO", (await read).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadLinkGivesTheRawTargetOfALinkAndNullOtherwise()
    {
        Link("dev/a/driver", "../../bus/pci/drivers/e1000e");
        var tree = Tree();
        Assert.Equal("../../bus/pci/drivers/e1000e", tree.ReadLink("dev/a/driver"));
        Assert.Equal("e1000e", tree.ReadLinkName("dev/a/driver"));
        Assert.Null(tree.ReadLink("dev/a/vendor"));
        Assert.Null(tree.ReadLink("dev/a/missing"));
    }

    [Fact]
    public void AListingHasEveryNameSortedIncludingDanglingLinksAndNoDotEntries()
    {
        Link("dev/zz-dangling", "nowhere");
        Link("dev/0-link", "a");
        File.WriteAllText(Path.Combine(_root, "dev/.hidden"), "");
        Assert.Equal(new[] { ".hidden", "0-link", "a", "b", "zz-dangling" }, Tree().List("dev"));
        Assert.Null(Tree().List("dev/a/vendor"));
        Assert.Null(Tree().List("missing"));
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int mkfifo([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mode);
}
