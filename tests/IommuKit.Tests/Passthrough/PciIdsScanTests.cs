using System.Text;
using FsCheck;
using FsCheck.Fluent;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Passthrough;

/// <summary>
/// <see cref="PciIds"/> finds top-level and child lines with a vectorized scan (issue 11). Every answer must be the one
/// the reader it replaced gave (<see cref="PciIdsReference"/>, kept verbatim): checked on generated databases made of
/// the awkward cases (every line break <c>string.EnumerateLines</c> knows and byte sequences that only look like one,
/// a vendor or class named twice, ids in upper case, comments, blank and tab-only lines inside sections, invalid
/// UTF-8, lines longer than the decode buffer and than a vector block), on every prefix of the CLI tests' pci.ids and
/// on the installed database, for every id present and some absent.
/// </summary>
public class PciIdsScanTests
{
    [Fact]
    public void GeneratedDatabasesAnswerAsTheReferenceReaderDoes() =>
        Prop.ForAll(Database().ToArbitrary(), bytes => { AssertSameAnswers(bytes); return true; })
            .Check(Config.QuickThrowOnFailure.WithMaxTest(400).WithEndSize(60));

    [Fact]
    public void GeneratedDatabasesWithOnlyLineFeedsAnswerAsTheReferenceReaderDoes() =>
        // The distributed file's case: every block is searched sixteen bytes at a time.
        Prop.ForAll(Database(Gen.Elements(Bytes("\n"), Bytes("\n\n"))).ToArbitrary(), bytes => { AssertSameAnswers(bytes); return true; })
            .Check(Config.QuickThrowOnFailure.WithMaxTest(200).WithEndSize(80));

    [Fact]
    public void EveryPrefixOfTheTestsDatabaseAnswersAsTheReferenceReaderDoes()
    {
        byte[] sample = File.ReadAllBytes(Path.Combine(Fixtures.Root, "pci.ids.sample"));
        for (int n = 0; n <= sample.Length; n++) AssertSameAnswers(sample[..n]);
    }

    [Fact]
    public void TheInstalledDatabaseAnswersAsTheReferenceReaderDoes()
    {
        // Debian's pciutils/hwdata; a machine without one still runs every generated case above. LoadInstalled maps
        // the file instead of reading it: both are compared.
        if (PciIds.LoadInstalled() is not { Path: { } path } installed) return;
        byte[] bytes = File.ReadAllBytes(path);
        AssertSameAnswers(bytes, installed);
    }

    [Fact]
    public void ABreakStraddlingABlockOrLookingLikeOneSplitsLinesAsTheReferenceReaderDoes()
    {
        // Each break placed at every offset around a 16-byte block edge, and near-breaks (C2 without 85, E2 80 without
        // A8/A9, a lone 85) that must not split a line.
        string[] breaks = ["\n", "\r\n", "\r", "\f", "\u0085", "\u2028", "\u2029"];
        byte[][] fakes = [[0xc2], [0xc2, 0x86], [0xe2, 0x80], [0xe2, 0x80, 0xaa], [0xe2, 0x81, 0xa8], [0x85], [0xe2]];
        for (int pad = 0; pad < 40; pad++)
        {
            foreach (var br in breaks.Select(Bytes).Concat(fakes))
            {
                byte[] db = [.. Bytes("8086  Intel" + new string('x', pad)), .. br, .. Bytes("\t0001  one"), .. br,
                    .. Bytes("C 02  Net"), .. br, .. Bytes("\t00  Eth"), .. br, .. Bytes("10de  NVIDIA\n\t0002  two")];
                AssertSameAnswers(db);
            }
        }
    }

    private static byte[] Bytes(string s) => new UTF8Encoding(false).GetBytes(s);

    /// <summary>Ids the generator writes (some in upper case) and some no line has.</summary>
    private static readonly ushort[] VendorProbes = [0x8086, 0x10de, 0x1af4, 0xabcd, 0x0000, 0xffff, 0x1234];
    private static readonly ushort[] DeviceProbes = [0x0001, 0x0002, 0x00ff, 0xabcd, 0x0000, 0x0005, 0x0007, 0x1234];
    private static readonly byte[] ClassProbes = [0x02, 0x06, 0x0c, 0xff, 0x00, 0x03];
    private static readonly byte[] SubclassProbes = [0x00, 0x04, 0x80, 0xab, 0x01];

    private static Gen<byte[]> Database(Gen<byte[]>? breaks = null)
    {
        breaks ??= Gen.Frequency(
            (10, Gen.Constant(Bytes("\n"))), (2, Gen.Constant(Bytes("\r\n"))), (1, Gen.Constant(Bytes("\r"))),
            (1, Gen.Constant(Bytes("\f"))), (1, Gen.Constant(Bytes("\u0085"))), (1, Gen.Constant(Bytes("\u2028"))),
            (1, Gen.Constant(Bytes("\u2029"))), (1, Gen.Constant(Bytes("\n\n"))), (1, Gen.Constant(Bytes("\r\r\n"))));
        // Bytes next to the hex digits in ASCII ('/', ':', '@', 'G', '`', 'g') must not pass as digits.
        var vendorId = Gen.Elements("8086", "10de", "10DE", "1af4", "AbCd", "zzzz", "80", "80 6", "0x12", "100g", "10:e", "1@f4", "10`e", "10/e", "100G");
        var deviceId = Gen.Elements("0001", "0002", "00ff", "00FF", "abcd", "ABCD", "XYZW", "00", " 0005", "0x12", "00\u00e47", "000g", "000G", "00`1", "00@1", "00:1", "00/1");
        var classId = Gen.Elements("02", "06", "0c", "0C", "zz", "2", "ff", "0g", "0G", "0:");
        var subclassId = Gen.Elements("00", "04", "80", "AB", "0", "x4", "0g", "0/", "0`");
        var name = Gen.Frequency(
            (8, Gen.Elements("Intel", "NVIDIA Corp", "Red Hat, Inc.", "n\u00e4me", "x", "\u00a0\u00e4", "\u3000", " ", "", "\t", "# not a comment").Select(Bytes)),
            (2, Gen.Elements<byte[]>([0xff], [0xc3], [0x85], [(byte)'a', 0xc2], [0xe2, 0x80], [0xc2, 0x85], [0xe2, 0x80, 0xa8], [0x01], [0x0b])),
            (1, Gen.Choose(200, 2000).Select(n => Bytes(new string('L', n)))),
            (1, Gen.Choose(0, 100).Select(n => Bytes(new string(' ', n) + "padded"))));
        var space = Gen.Elements("  ", " ", " \t", "\u00a0 ", "   ").Select(Bytes);
        Gen<byte[]> Line(Gen<string> prefix, Gen<string> id) =>
            from p in prefix from i in id from sp in space from n in name from tail in Gen.Elements("", " ", " \t", "\u00a0")
            select (byte[])[.. Bytes(p + i), .. sp, .. n, .. Bytes(tail)];
        var line = Gen.Frequency(
            (4, Line(Gen.Constant(""), vendorId)),
            (2, Line(Gen.Constant("C "), classId)),
            (8, Line(Gen.Elements("\t", "\t"), deviceId)),
            (4, Line(Gen.Constant("\t"), subclassId)),
            (3, Line(Gen.Elements("\t\t", "\t\t\t"), deviceId)),
            (2, Gen.Elements("# comment", "#", "", " ", "\t", "\u00a0", "X  other section", "C", "C ", " 8086  spaced", "\v").Select(Bytes)),
            (1, Gen.ArrayOf(Gen.Elements<byte>(0x09, 0x0a, 0x0d, 0x20, 0x23, 0x30, 0x31, 0x43, 0x80, 0x85, 0xa8, 0xc2, 0xe2, 0xff))));
        var piece = from l in line from b in breaks select (byte[])[.. l, .. b];
        return from pieces in Gen.ListOf(piece)
               from last in line
               from end in Gen.Elements(true, false)
               select pieces.SelectMany(p => p).Concat(end ? last : []).ToArray();
    }

    private static void AssertSameAnswers(byte[] bytes, PciIds? also = null)
    {
        var reference = new PciIdsReference(bytes);
        var vendors = reference.VendorIds.Concat(VendorProbes).Distinct().ToArray();
        var classes = reference.ClassIds.Concat(ClassProbes).Distinct().ToArray();
        int devices = reference.VendorIds.Sum(v => reference.DeviceIds(v).Count);
        foreach (var ids in new[] { PciIds.FromUtf8(bytes), also ?? PciIds.FromUtf8(bytes) })
        {
            foreach (var v in vendors)
            {
                Assert.Equal(reference.Vendor(v), ids.Vendor(v));
                foreach (var d in reference.DeviceIds(v).Concat(DeviceProbes).Distinct())
                {
                    Assert.Equal(reference.Device(v, d), ids.Device(v, d));
                    Assert.Equal(reference.Name(v, d), ids.Name(v, d));
                }
            }
            foreach (var c in classes)
                foreach (var s in reference.SubclassIds(c).Select(s => (byte)s).Concat(SubclassProbes).Distinct())
                    foreach (byte progIf in new byte[] { 0x00, 0x01 })
                        Assert.Equal(reference.Class((uint)(c << 16 | s << 8 | progIf)), ids.Class((uint)(c << 16 | s << 8 | progIf)));
            Assert.Equal(reference.VendorIds.Count, ids.VendorCount);
            Assert.Equal(devices, ids.DeviceCount);
        }
    }
}
