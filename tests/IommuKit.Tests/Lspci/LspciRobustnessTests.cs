using System.Text;
using IommuKit.Sources.Lspci;
using Xunit;

namespace IommuKit.Tests.Lspci;

/// <summary>Cut, mutated and hostile dumps either load or fail with one <see cref="InputException"/> line; nothing else.</summary>
public class LspciRobustnessTests
{
    private const string SampleName = "intel-alderlake-n100-asrock-n100dc-itx-debian-acs-iommugroups.txt";
    private static string Sample => File.ReadAllText(Path.Combine(Fixtures.Lspci, SampleName));
    /// <summary>The first five records of an lspci -vvnn -xxxx dump (text and 4 KiB hex per device).</summary>
    private static string HexSample
    {
        get
        {
            var text = File.ReadAllText(Path.Combine(Fixtures.Root, "lspci-generated", "c_switch.vvnnxxxx.txt"));
            var records = LspciCorpusTests.Records(text);
            return string.Concat(records.Take(5).Select(r => r.Text));
        }
    }

    /// <summary>Loads or throws InputException; returns the machine or null. Any other exception fails the test.</summary>
    private static Machine? LoadOrReject(string text, string origin)
    {
        try
        {
            return LspciReader.Read(text, origin);
        }
        catch (InputException e)
        {
            Assert.StartsWith(origin, e.Message);
            Assert.DoesNotContain('\n', e.Message);
            return null;
        }
    }

    private static int CompleteRecords(string prefix) =>
        // A record is complete when a blank line follows it (lspci ends every record with one).
        LspciCorpusTests.Records(prefix).Count(r => r.Text.Contains("\n\n", StringComparison.Ordinal));

    [Fact]
    public void EveryLinePrefixOfARealDumpLoadsItsCompleteDevicesOrIsRejected()
    {
        var text = Sample;
        int records = LspciCorpusTests.DeviceLine.Matches(text).Count;
        int loaded = 0;
        for (int end = text.IndexOf('\n'); end >= 0; end = text.IndexOf('\n', end + 1))
        {
            var prefix = text[..(end + 1)];
            var m = LoadOrReject(prefix, "prefix.txt");
            if (m is null) continue;
            loaded++;
            int complete = CompleteRecords(prefix);
            int started = LspciCorpusTests.DeviceLine.Matches(prefix).Count;
            // Complete records always load; the last, unfinished one loads only if nothing of it seems missing.
            Assert.InRange(m.Topology.Count, complete, started);
            if (m.Topology.Count < started)
                Assert.Contains(m.Warnings, w => w.Contains("the dump ends in the middle of this device", StringComparison.Ordinal));
        }
        Assert.True(loaded > records, "most prefixes hold at least one complete device and load");
    }

    [Fact]
    public void CharacterPrefixesOfTextAndHexDumpsLoadOrAreRejected()
    {
        foreach (var text in new[] { Sample, HexSample })
        {
            // Every character of the first records, then a stride through the rest.
            for (int len = 0; len <= Math.Min(text.Length, 3000); len++) LoadOrReject(text[..len], "cut.txt");
            for (int len = 3000; len <= text.Length; len += 211) LoadOrReject(text[..len], "cut.txt");
        }
    }

    [Fact]
    public void CutInsideAnAcsBlockSkipsThatDeviceAndNamesItsAddressAndLine()
    {
        var text = Sample;
        int ctl = text.IndexOf("ACSCtl:", StringComparison.Ordinal);
        var prefix = text[..ctl]; // ends after the ACSCap line of 00:1c.0
        int line = prefix.Count(c => c == '\n');
        var m = LspciReader.Read(prefix, "cut.txt");
        Assert.Null(m.Topology.Find(IommuKit.Pci.PciAddress.Parse("00:1c.0")));
        Assert.Equal(CompleteRecords(prefix), m.Topology.Count);
        var w = Assert.Single(m.Warnings, w => w.Contains("ends in the middle", StringComparison.Ordinal));
        Assert.Contains($"cut.txt:{line}: 0000:00:1c.0", w);
    }

    [Fact]
    public void CutInsideAHexDumpSkipsThatDevice()
    {
        var text = HexSample;
        var records = LspciCorpusTests.Records(text);
        int start = text.IndexOf(records[3].Text, StringComparison.Ordinal);
        int cut = text.IndexOf("\n40: ", start, StringComparison.Ordinal) + 1;
        var m = LspciReader.Read(text[..cut], "cut.txt");
        Assert.Equal(3, m.Topology.Count);
        Assert.Contains(m.Warnings, w => w.Contains(records[3].Address.ToString(), StringComparison.Ordinal) && w.Contains("hex dump stops at offset 0x40", StringComparison.Ordinal));
    }

    [Fact]
    public void HundredsOfSeededMutationsLoadOrAreRejectedCleanly()
    {
        var rng = new Random(20261121);
        string[] sources = [Sample, HexSample, File.ReadAllText(Path.Combine(Fixtures.Lspci, "laptop-tigerlake-tbt4-vmd-dell-xps13-9310-nonroot.txt"))];
        int rejected = 0, loaded = 0;
        for (int i = 0; i < 400; i++)
        {
            var text = Mutate(sources[i % sources.Length], rng, rng.Next(1, 4));
            if (LoadOrReject(text, $"mutant{i}.txt") is null) rejected++; else loaded++;
        }
        Assert.True(rejected > 0 && loaded > 0, $"mutations both load ({loaded}) and are rejected ({rejected})");
    }

    private static string Mutate(string text, Random rng, int times)
    {
        var lines = text.Split('\n').ToList();
        for (int t = 0; t < times; t++)
        {
            int li = rng.Next(lines.Count);
            string line = lines[li];
            switch (rng.Next(11))
            {
                case 0: // delete a span of characters
                    if (line.Length > 0) { int a = rng.Next(line.Length); lines[li] = line.Remove(a, rng.Next(1, line.Length - a + 1)); }
                    break;
                case 1: // insert random characters, control ones included
                    lines[li] = line.Insert(rng.Next(line.Length + 1), RandomChars(rng, rng.Next(1, 12)));
                    break;
                case 2: // replace the line with noise
                    lines[li] = RandomChars(rng, rng.Next(0, 80));
                    break;
                case 3: // duplicate a line (a device line twice is a duplicate device)
                    lines.Insert(li, line);
                    break;
                case 4: // swap two lines
                    int lj = rng.Next(lines.Count);
                    (lines[li], lines[lj]) = (lines[lj], lines[li]);
                    break;
                case 5: // truncate the whole dump
                    return string.Join('\n', lines)[..rng.Next(string.Join('\n', lines).Length + 1)];
                case 6: // change one hex digit or number
                    int d = line.IndexOfAny("0123456789abcdef".ToCharArray(), rng.Next(line.Length + 1) is var s && s < line.Length ? s : 0);
                    if (d >= 0) lines[li] = line[..d] + "0123456789abcdefz+-:["[rng.Next(21)] + line[(d + 1)..];
                    break;
                case 7: // a line far longer than any lspci line
                    lines[li] = new string('f', rng.Next(LspciReader.MaxLineLength - 10, LspciReader.MaxLineLength + 10));
                    break;
                case 8: // drop a line
                    lines.RemoveAt(li);
                    if (lines.Count == 0) lines.Add("");
                    break;
                case 9: // strip the indentation of a line
                    lines[li] = line.TrimStart();
                    break;
                default: // a blank line in the middle of a record
                    lines.Insert(li, "");
                    break;
            }
        }
        return string.Join('\n', lines);
    }

    private static string RandomChars(Random rng, int n)
    {
        const string alphabet = "0123456789abcdef:.[]()+-= \tACSCapCtlBus:primary=Express\0\u0001\u00ff\uFFFD";
        var sb = new StringBuilder(n);
        for (int i = 0; i < n; i++) sb.Append(alphabet[rng.Next(alphabet.Length)]);
        return sb.ToString();
    }

    [Fact]
    public void BinaryNoiseIsNotLspci()
    {
        var rng = new Random(7);
        var bytes = new byte[4096];
        rng.NextBytes(bytes);
        var text = Encoding.Latin1.GetString(bytes);
        Assert.False(LspciReader.LooksLikeLspci(text));
        var e = Assert.Throws<InputException>(() => LspciReader.Read(text, "noise.bin"));
        Assert.StartsWith("noise.bin:", e.Message);
    }

    [Fact]
    public void MoreDevicesThanTheCapAreRejectedNamingTheLineAndDevice()
    {
        var sb = new StringBuilder();
        int n = 0;
        for (int domain = 0; n <= LspciReader.MaxDevices; domain++)
            for (int devfn = 0; devfn < 256 * 256 && n <= LspciReader.MaxDevices; devfn++, n++)
                sb.Append($"{domain:x4}:{devfn >> 8:x2}:{(devfn >> 3) & 0x1f:x2}.{devfn & 7} x\n");
        var e = Assert.Throws<InputException>(() => LspciReader.Read(sb.ToString(), "many.txt"));
        Assert.StartsWith($"many.txt:{LspciReader.MaxDevices + 1}: 0002:00:00.0: more than {LspciReader.MaxDevices} devices", e.Message);
    }

    [Fact]
    public void ADumpLargerThanTheCapIsRejectedBeforeParsing()
    {
        var e = Assert.Throws<InputException>(() => LspciReader.Read(new string(' ', LspciReader.MaxTextLength + 1), "huge.txt"));
        Assert.Contains("cap", e.Message);
    }

    [Theory]
    [InlineData("Express (v99999999999) Root Port (Slot+), MSI 00")]
    [InlineData("Express (v2) Unknown type 99999999999, MSI 00")]
    public void AnOverlongNumberInTheExpressLineIsSkippedWithAWarning(string express)
    {
        string text = "00:1c.0 PCI bridge [0604]: Intel Corporation Device [8086:a110]\n" +
                      "\tControl: I/O+ Mem+ BusMaster+\n" +
                      "\tBus: primary=00, secondary=01, subordinate=01, sec-latency=0\n" +
                      $"\tCapabilities: [40] {express}\n\n";
        var m = LoadOrReject(text, "express.txt");
        Assert.NotNull(m);
        Assert.Single(m.Topology.Devices);
        Assert.Contains(m.Warnings, w => w.Contains("express.txt:4: 0000:00:1c.0: cannot read the Express capability line", StringComparison.Ordinal));
    }
}
