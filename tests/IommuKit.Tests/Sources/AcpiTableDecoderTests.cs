using System.Buffers.Binary;
using System.Globalization;
using System.Text.RegularExpressions;
using IommuKit.Pci;
using IommuKit.Sources.Acpi;
using Xunit;

namespace IommuKit.Tests.Sources;

/// <summary>
/// The DMAR/IVRS/IORT decoders against real firmware tables (tests/fixtures/acpi, from linuxhw/ACPI): each decodes to
/// the independent summary made from the same bytes, and every truncation or mutation of them is either decoded or
/// refused with a one-line <see cref="InputException"/>, never another exception.
/// </summary>
public class AcpiTableDecoderTests
{
    private static string Dir => Path.Combine(Fixtures.Root, "acpi");

    public static TheoryData<string> Tables()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Dir, "*.dat").Order(StringComparer.Ordinal)) data.Add(Path.GetFileName(f));
        return data;
    }

    private static object Decode(string file, byte[] bytes, List<string>? warnings = null) =>
        file.EndsWith("-DMAR.dat", StringComparison.Ordinal) ? AcpiTableReader.ReadDmar(bytes, file, warnings)
        : file.EndsWith("-IVRS.dat", StringComparison.Ordinal) ? AcpiTableReader.ReadIvrs(bytes, file, warnings)
        : AcpiTableReader.ReadIort(bytes, file, warnings);

    private static byte[] Bytes(string file) => File.ReadAllBytes(Path.Combine(Dir, file));

    [Theory]
    [MemberData(nameof(Tables))]
    public void RealTableDecodesToTheIndependentSummaryOfItsBytes(string file)
    {
        var summary = Path.Combine(Dir, file[..^("-DMAR.dat".Length)] + "-summary.txt");
        if (!File.Exists(summary)) return; // the IORT has its own oracle (iasl), below
        var expected = File.ReadAllLines(summary)
            .Where(l => l.StartsWith("    ", StringComparison.Ordinal) && !l.TrimStart().StartsWith('{')) // RHSA lines are not decoded
            .Select(l => Normalize(l.Trim()))
            .OrderBy(l => l.StartsWith("IVMD", StringComparison.Ordinal)).ToList(); // the model lists IVMDs after the IVHDs they sit between
        var warnings = new List<string>();
        var actual = Render(Decode(file, Bytes(file), warnings)).Select(Normalize).ToList();
        Assert.Equal(expected, actual);
        Assert.Empty(warnings); // every real table has a right checksum
    }

    /// <summary>IVHD entries compared as a multiset (the summary keeps entry order, the model groups by kind); padding dropped.</summary>
    private static string Normalize(string line)
    {
        // The summary prints an integer ACPI UID (format 1) as its raw bytes; the model reads it as the integer it is.
        line = Regex.Replace(line, "uid=([\\x01-\\x1f]+)", m => "uid=" + m.Groups[1].Value.Reverse().Aggregate(0UL, (v, c) => v << 8 | c));
        int colon = line.IndexOf(": ", StringComparison.Ordinal);
        if (!line.StartsWith("IVHD", StringComparison.Ordinal) || colon < 0) return line;
        var parts = line[(colon + 2)..].Split("; ").Where(p => p != "pad").ToList();
        var items = new List<string>();
        for (int i = 0; i < parts.Count; i++)
        {
            if ((parts[i].StartsWith("START", StringComparison.Ordinal) || parts[i].StartsWith("ALIAS_START", StringComparison.Ordinal)) &&
                i + 1 < parts.Count && parts[i + 1].StartsWith("END", StringComparison.Ordinal))
            {
                items.Add(parts[i] + "; " + parts[i + 1]);
                i++;
            }
            else items.Add(parts[i]);
        }
        return line[..(colon + 2)] + string.Join(" | ", items.Order(StringComparer.Ordinal));
    }

    private static string Rid(ushort id) => $"{id >> 8:x2}:{(id >> 3) & 31:x2}.{id & 7:x}";

    private static string Scope(DmarDeviceScope s)
    {
        string kind = s.Kind switch
        {
            DmarScopeKind.Endpoint => "EP", DmarScopeKind.Bridge => "BR", DmarScopeKind.IoApic => "IOAPIC",
            DmarScopeKind.Hpet => "HPET", _ => "NS",
        };
        string path = $"{s.StartBus:x2}:" + string.Join("/", s.Path.Select(p => $"{p.Device:x2}.{p.Function:x}"));
        return s.Kind is DmarScopeKind.IoApic or DmarScopeKind.Hpet ? $"{kind}:{path}#{s.EnumerationId}" : $"{kind}:{path}";
    }

    private static string Scopes(IEnumerable<DmarDeviceScope> scopes) => string.Concat(scopes.Select(s => " " + Scope(s)));

    /// <summary>The summary format of tests/fixtures/acpi/*-summary.txt, made from the decoded model.</summary>
    private static IEnumerable<string> Render(object table)
    {
        if (table is DmarTable d)
        {
            foreach (var u in d.Units)
                yield return $"DRHD fl=0x{(u.IncludePciAll ? 1 : 0):x}{(u.IncludePciAll ? " INCLUDE_ALL" : "")} seg={u.Segment} base=0x{u.RegisterBase:x}{Scopes(u.Scopes)}";
            foreach (var r in d.ReservedMemory) yield return $"RMRR 0x{r.Base:x}-0x{r.EndInclusive:x}{Scopes(r.Scopes)}";
            foreach (var a in d.Atsrs) yield return $"ATSR fl=0x{(a.AllPorts ? 1 : 0):x} seg={a.Segment}{Scopes(a.Scopes)}";
            foreach (var s in d.Satcs) yield return $"SATC fl=0x{(s.AtcRequired ? 1 : 0):x} seg={s.Segment}{Scopes(s.Scopes)}";
        }
        else if (table is IvrsTable v)
        {
            foreach (var b in v.Blocks)
            {
                var items = new List<string>();
                foreach (var e in b.Devices)
                    items.Add(e.Kind switch
                    {
                        IvhdEntryKind.All => "ALL",
                        IvhdEntryKind.Select => $"SELECT {Rid(e.First)}",
                        IvhdEntryKind.AliasSelect => $"ALIAS {Rid(e.First)}->{Rid(e.Alias!.Value)}",
                        IvhdEntryKind.AliasRange => $"ALIAS_START {Rid(e.First)}->{Rid(e.Alias!.Value)}; END {Rid(e.Last)}",
                        _ => $"START {Rid(e.First)}; END {Rid(e.Last)}",
                    });
                foreach (var s in b.Specials) items.Add($"SPECIAL {(s.Variety == IvhdSpecialVariety.IoApic ? "IOAPIC" : "HPET")}#{s.Handle} {Rid(s.RequesterId)}");
                foreach (var a in b.AcpiDevices) items.Add($"ACPIHID {Rid(a.RequesterId)} {a.Hid} uid={a.Uid}");
                yield return $"IVHD 0x{b.Type:x2} fl=0x{b.Flags:x2} iommu={Rid(b.IommuRequesterId)} seg={b.Segment} base=0x{b.BaseAddress:x}: {string.Join("; ", items)}";
            }
            foreach (var m in v.MemoryDefinitions)
                yield return $"IVMD 0x{m.Type:x2} fl=0x{m.Flags:x} dev={Rid(m.RequesterId)} aux={Rid(m.AuxiliaryId)} 0x{m.Start:x}+0x{m.Length:x}";
        }
    }

    [Fact]
    public void IortDecodesToIaslsReadingOfTheSameBytes()
    {
        const string file = "iasl-template-IORT.dat";
        var iort = AcpiTableReader.ReadIort(Bytes(file), file);
        // The oracle: iasl -d of the same bytes. Each "Type" line opens a node at its offset; the fields follow it.
        var expected = new List<string>();
        string? node = null;
        var mapping = new List<string>();
        foreach (var line in File.ReadAllLines(Path.Combine(Dir, "iasl-template-IORT.dsl")))
        {
            var m = Regex.Match(line, @"^\[([0-9A-F]{3})h [0-9]+ +[0-9]+\] +(.+?) : ([0-9A-F]+)");
            if (!m.Success) continue;
            string field = m.Groups[2].Value, value = m.Groups[3].Value;
            uint at = uint.Parse(m.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (field == "Type" && at >= 0x30) { if (node is not null) expected.Add(node); node = $"@{at:x} type {Convert.ToByte(value, 16)}"; }
            else if (node is not null && field is "PCI Segment Number") node += $" seg {Convert.ToUInt32(value, 16)}";
            else if (node is not null && field is "Base Address") node += $" base 0x{Convert.ToUInt64(value, 16):x}";
            else if (node is not null && field is "Input base" or "ID Count" or "Output Base" or "Output Reference")
            {
                mapping.Add($"{Convert.ToUInt32(value, 16):x}");
                if (mapping.Count == 4) { node += " map " + string.Join(",", mapping); mapping.Clear(); }
            }
        }
        if (node is not null) expected.Add(node);
        var actual = iort.Nodes.Select(n =>
            $"@{n.Offset:x} type {(byte)n.Kind}" + (n.Kind == IortNodeKind.RootComplex ? $" seg {n.Segment}" : "") +
            (n.Kind is IortNodeKind.Smmu or IortNodeKind.SmmuV3 ? $" base 0x{n.BaseAddress:x}" : "") +
            string.Concat(n.Mappings.Select(x => $" map {x.InputBase:x},{x.IdCount:x},{x.OutputBase:x},{x.OutputReference:x}"))).ToList();
        Assert.Equal(expected, actual);
        var rc = Assert.Single(iort.Nodes, n => n.Kind == IortNodeKind.RootComplex);
        Assert.Equal(2, rc.Segment);
        Assert.Equal(IortNodeKind.SmmuV3, iort.NodeAt(rc.Mappings[0].OutputReference)!.Kind);
    }

    [Fact]
    public void DmarRegistrationOrderPutsScopedUnitsFirstInReverseAndIncludeAllLast()
    {
        // X10DAi: socket-1 unit (80:..), the Azalia unit (00:1b.0), then INCLUDE_PCI_ALL; dmar_register_drhd_unit
        // list_add()s the first two at the head, so the Azalia unit is registered first.
        var d = AcpiTableReader.ReadDmar(Bytes("supermicro-x10dai-4a64a6094fe3-DMAR.dat"), "x10dai");
        Assert.Equal([1, 0, 2], d.RegistrationOrder.Select(u => u.Index));
        Assert.True(d.RegistrationOrder[^1].IncludePciAll);
        Assert.Equal(46, d.HostAddressWidth);
    }

    [Theory]
    [InlineData("framework-laptop-16-4c9287f693bf-IVRS.dat", 0x40)]
    [InlineData("asustek-computer-prime-x399-a-73edb0ddff0e-IVRS.dat", 0x11)]
    public void IvrsEffectiveTypeIsTheHighestTheFirstIommuIsDescribedWith(string file, int type)
    {
        var v = AcpiTableReader.ReadIvrs(Bytes(file), file);
        Assert.Equal(type, v.EffectiveType);
        Assert.All(v.EffectiveBlocks, b => Assert.Equal(type, b.Type));
        // Zen-era ranges never start at the root complex xx:00.0, and the IOMMU's own function is not covered either.
        Assert.All(v.EffectiveBlocks, b => Assert.False(b.Covers((ushort)(b.IommuRequesterId & 0xff00))));
    }

    [Theory]
    [MemberData(nameof(Tables))]
    public void EveryPrefixOfARealTableIsRefusedWithTheFileAndTheRule(string file)
    {
        var bytes = Bytes(file);
        for (int n = 0; n < bytes.Length; n++)
        {
            var e = Assert.Throws<InputException>(() => Decode(file, bytes[..n]));
            Assert.StartsWith(file + ": ", e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', e.Message);
        }
    }

    [Theory]
    [MemberData(nameof(Tables))]
    public void EveryPrefixWithItsLengthRewrittenDecodesOrIsRefusedAtAnOffset(string file)
    {
        var bytes = Bytes(file);
        for (int n = 36; n < bytes.Length; n++)
        {
            var cut = bytes[..n];
            BinaryPrimitives.WriteUInt32LittleEndian(cut.AsSpan(4), (uint)n);
            try { Decode(file, cut); }
            catch (InputException e) { Assert.Matches(@"^[^:]+: offset 0x[0-9a-f]+: ", e.Message); }
        }
    }

    [Theory]
    [MemberData(nameof(Tables))]
    public void RandomByteMutationsDecodeOrAreRefusedNeverCrash(string file)
    {
        var bytes = Bytes(file);
        var rng = new Random(file.Length * 7919 + bytes.Length);
        for (int i = 0; i < 400; i++)
        {
            var m = (byte[])bytes.Clone();
            for (int k = 0; k < 1 + i % 4; k++) m[36 + rng.Next(m.Length - 36)] = (byte)rng.Next(256);
            try { Decode(file, m); }
            catch (InputException e) { Assert.StartsWith(file + ": ", e.Message, StringComparison.Ordinal); }
        }
    }

    [Fact]
    public void WrongChecksumIsAWarningBecauseTheKernelOnlyWarns()
    {
        const string file = "dell-xps-13-9380-e27420be3a8a-DMAR.dat";
        var bytes = Bytes(file);
        bytes[9] ^= 0x5a;
        var warnings = new List<string>();
        var d = AcpiTableReader.ReadDmar(bytes, file, warnings);
        Assert.False(d.Header.ChecksumValid);
        Assert.Equal(2, d.Units.Count);
        Assert.Contains(warnings, w => w.Contains("checksum is wrong", StringComparison.Ordinal) && w.Contains("acpi_tb_verify_checksum", StringComparison.Ordinal));
    }

    [Fact]
    public void ZeroLengthRemappingStructureIsRefusedAtItsOffset()
    {
        const string file = "dell-xps-13-9380-e27420be3a8a-DMAR.dat";
        var bytes = Bytes(file);
        bytes[0x32] = 0; bytes[0x33] = 0; // first DRHD's length
        var e = Assert.Throws<InputException>(() => AcpiTableReader.ReadDmar(bytes, file));
        Assert.Equal($"{file}: offset 0x32: remapping structure type 0 has length 0, less than its 4-byte header", e.Message);
    }

    [Fact]
    public void WrongSignatureIsRefused()
    {
        var bytes = Bytes("dell-xps-13-9380-e27420be3a8a-DMAR.dat");
        var e = Assert.Throws<InputException>(() => AcpiTableReader.ReadIvrs(bytes, "t"));
        Assert.Equal("t: offset 0x0: signature is 'DMAR', expected 'IVRS'", e.Message);
    }

    [Fact]
    public void IvhdEntryOfUnknownVariableLengthIsRefused()
    {
        const string file = "asrock-x300-itx-400bc68b0f41-IVRS.dat";
        var bytes = Bytes(file);
        int first = 48 + (bytes[48] == 0x10 ? 24 : 40); // first device entry of the first IVHD
        bytes[first] = 0x80;
        var e = Assert.Throws<InputException>(() => AcpiTableReader.ReadIvrs(bytes, file));
        Assert.Contains("has no known length (ivhd_entry_length)", e.Message, StringComparison.Ordinal);
    }
}
