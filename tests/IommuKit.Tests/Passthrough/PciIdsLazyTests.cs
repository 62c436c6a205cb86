using System.Globalization;
using System.Text;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Passthrough;

/// <summary>
/// Issue 11 made <see cref="PciIds"/> index the database on first use and parse a vendor's lines only when one of its
/// devices is asked for. Its answers must be those of reading every line in order, as it did before: checked here
/// against that eager reader (kept below as the reference) on generated databases full of the awkward cases
/// (a vendor or class named twice, malformed ids, comments and blank lines inside sections, every line break
/// <c>string.EnumerateLines</c> knows, invalid UTF-8) and on the installed pci.ids when there is one.
/// </summary>
public class PciIdsLazyTests
{
    [Fact]
    public void AVendorNamedTwiceHasTheLaterNameAndTheDevicesOfBothSections()
    {
        var ids = PciIds.Parse("8086  Intel\n\t1234  first\n\t5678  old\n10de  NVIDIA\n8086  Intel Corporation\n\t5678  new\n");
        Assert.Equal("Intel Corporation", ids.Vendor(0x8086));
        Assert.Equal("first", ids.Device(0x8086, 0x1234));
        Assert.Equal("new", ids.Device(0x8086, 0x5678));
        Assert.Equal(2, ids.VendorCount);
        Assert.Equal(2, ids.DeviceCount);
    }

    [Fact]
    public void ATopLevelLineOfAnotherSectionEndsTheVendorsLines()
    {
        var ids = PciIds.Parse("8086  Intel\n\t1234  a\n# comment\n\n\t2345  b\nX  other section\n\t3456  not Intel's\n");
        Assert.Equal("b", ids.Device(0x8086, 0x2345));
        Assert.Null(ids.Device(0x8086, 0x3456));
    }

    [Fact]
    public void LinesBreakWhereTheTextReaderBreaksThem()
    {
        // CRLF, CR, form feed, NEL, LS and PS all end a line; a lone 0x85 byte is invalid UTF-8 (U+FFFD), not NEL.
        var bytes = Encoding.UTF8.GetBytes("8086  Intel\r\n\t0001  crlf\r\t0002  cr\f\t0003  ff\u0085\t0004  nel\u2028\t0005  ls\u2029\t0006  ps\n")
            .Concat(new byte[] { (byte)'\t', (byte)'0', (byte)'0', (byte)'0', (byte)'7', (byte)' ', (byte)'x', 0x85, (byte)'y', (byte)'\n' }).ToArray();
        var ids = Load(bytes);
        foreach (var (id, name) in new[] { (1, "crlf"), (2, "cr"), (3, "ff"), (4, "nel"), (5, "ls"), (6, "ps"), (7, "x\ufffdy") })
            Assert.Equal(name, ids.Device(0x8086, (ushort)id));
    }

    [Fact]
    public void GeneratedDatabasesAnswerAsReadingEveryLineInOrderDoes() =>
        Generated(new Random(11), ["\n", "\r\n", "\r", "\f", "\u0085", "\u2028", "\u2029", "\n\n"]);

    [Fact]
    public void GeneratedDatabasesWithOnlyLineFeedsAnswerAsReadingEveryLineInOrderDoes() =>
        // The distributed file's case: lines are split at LF alone, and ids are read from the bytes where they decide.
        Generated(new Random(12), ["\n", "\n\n"]);

    private static void Generated(Random rng, string[] breaks)
    {
        string[] tops = ["8086  Intel", "8086  Intel again", "10de  NVIDIA", "1af4  Red Hat", "zzzz  bad", "80  short", "C 02  Network",
            "C 02  Network again", "C 06  Bridge", "C zz  bad class", "X  other", "# comment", "", "   ", "1b36 \u00a0 QEMU", "\u00a0"];
        string[] subs = ["\t0001  one", "\t0002  two", "\t0002  two again", "\t00  sub zero", "\t04  PCI bridge", "\t\t0001 0002  subsystem",
            "\t\t00  prog-if", "\tXYZW  bad", "\t0003  ", "\t0003 \u3000", "\t0004  n\u00e4me", "\t 0005  spaced", "# inner comment", "\t",
            "\t0006 \u00a0\u00e4", "\t00\u00e47  odd", "\t0007\u00a0 nbsp", "\t0001 \t", "\tABCD  upper", "\t0x12  prefixed"];
        for (int round = 0; round < 300; round++)
        {
            var sb = new StringBuilder();
            int lines = rng.Next(1, 60);
            for (int i = 0; i < lines; i++)
            {
                sb.Append(rng.Next(3) == 0 ? tops[rng.Next(tops.Length)] : subs[rng.Next(subs.Length)]);
                if (rng.Next(8) == 0) sb.Append(" \t");
                sb.Append(breaks[rng.Next(breaks.Length)]);
            }
            AssertSameAnswers(sb.ToString());
        }
    }

    [Fact]
    public void TheInstalledDatabaseAnswersAsReadingEveryLineInOrderDoes()
    {
        // Debian's pciutils/hwdata; a machine without one still runs every generated case above.
        // LoadInstalled maps the file instead of reading it: the same answers either way.
        if (PciIds.LoadInstalled() is not { Path: { } path } installed) return;
        AssertSameAnswers(Encoding.UTF8.GetString(File.ReadAllBytes(path)), installed);
    }

    private static PciIds Load(byte[] bytes)
    {
        string file = Path.Combine(Path.GetTempPath(), "iommukit-pciids-" + Guid.NewGuid().ToString("n"));
        try
        {
            File.WriteAllBytes(file, bytes);
            return PciIds.TryLoad(file)!;
        }
        finally { File.Delete(file); }
    }

    private static void AssertSameAnswers(string text, PciIds? also = null)
    {
        var reference = Eager.Parse(text);
        foreach (var ids in new[] { PciIds.Parse(text), Load(new UTF8Encoding(false).GetBytes(text)), also ?? PciIds.Parse(text) })
        {
            foreach (var v in reference.Vendors.Keys.Append((ushort)0x8086).Append((ushort)0x1234))
                Assert.Equal(reference.Vendors.GetValueOrDefault(v), ids.Vendor(v));
            foreach (var ((v, d), name) in reference.Devices)
                Assert.Equal(name, ids.Device(v, d));
            foreach (var v in new ushort[] { 0x8086, 0x10de, 0x1af4 })
                for (ushort d = 0; d < 8; d++)
                    Assert.Equal(reference.Devices.GetValueOrDefault((v, d)), ids.Device(v, d));
            foreach (uint cls in new uint[] { 0x020000, 0x020100, 0x060400, 0x060000, 0x030000 })
                Assert.Equal(reference.Class(cls), ids.Class(cls));
            Assert.Equal(reference.Vendors.Count, ids.VendorCount);
            Assert.Equal(reference.Devices.Count, ids.DeviceCount);
        }
    }

    /// <summary>The reader as it was before issue 11: every line parsed in order into dictionaries (pciutils lib/names-parse.c).</summary>
    private sealed class Eager
    {
        public Dictionary<ushort, string> Vendors { get; } = new();
        public Dictionary<(ushort, ushort), string> Devices { get; } = new();
        private readonly Dictionary<byte, string> _classes = new();
        private readonly Dictionary<ushort, string> _subclasses = new();

        public string? Class(uint code) =>
            _subclasses.GetValueOrDefault((ushort)((code >> 8) & 0xffff)) ?? _classes.GetValueOrDefault((byte)(code >> 16));

        public static Eager Parse(string text)
        {
            var ids = new Eager();
            int? vendor = null, cls = null;
            foreach (var raw in text.AsSpan().EnumerateLines())
            {
                var line = raw.TrimEnd();
                if (line.IsEmpty || line[0] == '#') continue;
                int tabs = 0;
                while (tabs < line.Length && line[tabs] == '\t') tabs++;
                var body = line[tabs..];
                if (tabs == 0)
                {
                    vendor = null; cls = null;
                    if (body.StartsWith("C ") && TryIdName(body[2..], 2, out int c, out var cname)) { cls = c; ids._classes[(byte)c] = cname; }
                    else if (TryIdName(body, 4, out int v, out var vname)) { vendor = v; ids.Vendors[(ushort)v] = vname; }
                }
                else if (tabs == 1)
                {
                    if (vendor is int v && TryIdName(body, 4, out int d, out var dname)) ids.Devices[((ushort)v, (ushort)d)] = dname;
                    else if (cls is int c && TryIdName(body, 2, out int s, out var sname)) ids._subclasses[(ushort)((c << 8) | s)] = sname;
                }
            }
            return ids;
        }

        private static bool TryIdName(ReadOnlySpan<char> s, int digits, out int id, out string name)
        {
            id = 0; name = "";
            if (s.Length < digits + 2 || s[digits] != ' ') return false;
            if (!int.TryParse(s[..digits], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out id)) return false;
            name = s[(digits + 1)..].Trim().ToString();
            return name.Length > 0;
        }
    }
}
