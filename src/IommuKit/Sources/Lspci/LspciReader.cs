using System.Buffers;
using System.Globalization;
using System.Text.RegularExpressions;
using IommuKit.Pci;

namespace IommuKit.Sources.Lspci;

/// <summary>
/// Reads what <c>lspci</c> prints into a <see cref="Machine"/>: the <c>-vvnn</c> text people paste (with or without
/// <c>-k</c>, with or without the domain <c>-D</c>, <c>-v</c>/<c>-vv</c>/<c>-vvv</c>), <c>-x</c>/<c>-xxx</c>/<c>-xxxx</c>
/// hex dumps, or both in one dump. The layout it follows is pciutils' <c>lspci.c</c>/<c>ls-caps.c</c>/<c>ls-ecaps.c</c>.
/// </summary>
/// <remarks>
/// One pass over the lines, bounded by <see cref="MaxTextLength"/>, <see cref="MaxLineLength"/> and
/// <see cref="MaxDevices"/>. A dump cut in the middle of its last device loads the complete devices and warns about
/// the cut one; a malformed line inside a device record is skipped with a warning; text that is not lspci output is an
/// <see cref="InputException"/> naming the file and line.
/// </remarks>
internal static partial class LspciReader
{
    /// <summary>
    /// Largest dump accepted, in characters (and in bytes by <see cref="MachineSource.LoadBytes"/>): a 4,096-device
    /// <c>-vvnn</c> dump is about 12 MB, the same machine with <c>-xxxx</c> (4 KiB of config as 12 KiB of hex per device)
    /// about 70 MB.
    /// </summary>
    public const int MaxTextLength = 128 * 1024 * 1024;
    /// <summary>Longest line accepted: lspci lines are under 300 characters, a <c>-xxxx</c> hex line is 52.</summary>
    public const int MaxLineLength = 4096;
    /// <summary>Most device records accepted in one dump.</summary>
    public const int MaxDevices = 1 << 17;
    /// <summary>Non-device lines tolerated before the first device (a shell prompt, an lspci warning) before the text is judged not lspci.</summary>
    public const int MaxPreambleLines = 16;
    /// <summary>Warnings kept per dump about single devices and lines; the rest are counted in one line (<see cref="LoadWarnings"/>).</summary>
    public const int MaxWarnings = SourceLimits.MaxWarnings;
    /// <summary>Characters of the text <see cref="LooksLikeLspci"/> looks at (callers may decode only this much).</summary>
    internal const int DetectWindow = 256 * 1024;

    /// <summary>
    /// True when the text looks like lspci output (text, hex or both): among its first
    /// <see cref="MaxPreambleLines"/> non-blank lines one is a device line (<c>00:1f.3 SMBus ...</c> or
    /// <c>0000:00:1f.3 ...</c> at the start of the line), and there is no NUL byte (binary) before it.
    /// </summary>
    public static bool LooksLikeLspci(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var span = text.AsSpan(0, Math.Min(text.Length, DetectWindow));
        if (span.Length > 0 && span[0] == '\uFEFF') span = span[1..]; // a byte order mark from an editor
        int nonBlank = 0;
        while (span.Length > 0 && nonBlank < MaxPreambleLines)
        {
            int nl = span.IndexOf('\n');
            var line = nl < 0 ? span : span[..nl];
            span = nl < 0 ? default : span[(nl + 1)..];
            if (line.Contains('\0')) return false;
            if (line.IsWhiteSpace()) continue;
            nonBlank++;
            if (TryParseDeviceLine(line.TrimEnd('\r'), out _, out _)) return true;
        }
        return false;
    }

    /// <summary>Parses a dump into a machine whose <see cref="Machine.Origin"/> is <paramref name="origin"/>.</summary>
    /// <param name="text">The dump: lspci -vvnn text, -x/-xxx/-xxxx hex, or both.</param>
    /// <param name="origin">The file name, used in <see cref="Machine.Origin"/> and in every message.</param>
    /// <returns>
    /// A machine with every complete device. <see cref="Machine.KernelGroups"/> is built from <c>IOMMU group: N</c>
    /// lines (type unknown, no reserved regions) and is null when the dump has none.
    /// </returns>
    /// <exception cref="InputException">Not lspci output, a cap exceeded, a device listed twice, or no device at all;
    /// the one-line message names the file, the line and the device.</exception>
    public static Machine Read(string text, string origin)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(origin);
        if (text.Length > MaxTextLength)
            throw InputException.At(origin, $"dump of {text.Length} characters is larger than the {MaxTextLength}-character cap");
        var parser = new Parser(text, origin);
        return parser.Run();
    }

    // "0000:00:1f.3 SMBus [0c05]: ..." / "00:1f.3 ..." / "10000:e0:06.0 ...": address at column 0, a space, the rest.
    internal static bool TryParseDeviceLine(ReadOnlySpan<char> line, out PciAddress address, out ReadOnlySpan<char> rest)
    {
        address = default;
        rest = default;
        int sp = line.IndexOf(' ');
        var head = sp < 0 ? line : line[..sp];
        // bb:dd.f at the least (7 characters), dddddddd:bb:dd.f at the most.
        if (head.Length < 7 || head.Length > 16 || head[^2] != '.' || head[^5] != ':') return false;
        if (!PciAddress.TryParse(head, out address)) return false;
        rest = sp < 0 ? default : line[(sp + 1)..];
        return true;
    }

    /// <summary>
    /// Reads a hex row: "00: 86 80 10 a1 ..." (-x/-xxx) or "100: 01 00 ..." (-xxxx). pciutils lspci.c show_hex_dump
    /// prints "%02x:" every 16 bytes, then " %02x" per byte. Hand-written rather than a regex: a -xxxx dump has 256 rows
    /// per device.
    /// </summary>
    /// <param name="bytes">Receives up to 16 bytes.</param>
    internal static bool TryParseHexRow(ReadOnlySpan<char> line, Span<byte> bytes, out int offset, out int count)
    {
        offset = 0;
        count = 0;
        int colon = line.IndexOf(':');
        if (colon is not (2 or 3)) return false;
        for (int i = 0; i < colon; i++)
        {
            int v = HexValue(line[i]);
            if (v < 0) return false;
            offset = offset * 16 + v;
        }
        var rest = line[(colon + 1)..].TrimEnd();
        if (rest.Length == 0 || rest.Length % 3 != 0 || rest.Length > 16 * 3) return false;
        int n = rest.Length / 3;
        for (int k = 0; k < n; k++)
        {
            if (rest[k * 3] != ' ') return false;
            int hi = HexValue(rest[k * 3 + 1]), lo = HexValue(rest[k * 3 + 2]);
            if (hi < 0 || lo < 0) return false;
            bytes[k] = (byte)(hi << 4 | lo);
        }
        count = n;
        return true;
    }

    // Hex fields a regex has already matched ([0-9a-fA-F]{2} / {4}): cannot fail.
    private static byte Hex8(ReadOnlySpan<char> s) => byte.Parse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);

    private static ushort Hex16(ReadOnlySpan<char> s) => ushort.Parse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);

    private static int HexValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };

    // A line that starts like a hex line but is not one.
    /// <summary>Module names on one "Kernel modules:" line (a real line lists one to four).</summary>
    public const int MaxKernelModules = 64;

    [GeneratedRegex(@"^[0-9a-fA-F]{2,3}:(?: |$)", RegexOptions.CultureInvariant)]
    private static partial Regex HexishRegex();

    // -nn: "PCI bridge [0604]: Intel Corporation ... [8086:a110] (rev 0a) (prog-if 00 [Normal decode])".
    [GeneratedRegex(@"^(?<cname>.*?) ?\[(?<cls>[0-9a-fA-F]{4})\]: (?<name>.*)$", RegexOptions.CultureInvariant)]
    private static partial Regex ClassNnRegex();

    [GeneratedRegex(@"\[(?<v>[0-9a-fA-F]{4}):(?<d>[0-9a-fA-F]{4})\](?<tail>(?: \((?:rev [0-9a-fA-F]{2}|prog-if [0-9a-fA-F]{2}(?: \[[^\]]*\])?)\))*)\s*$", RegexOptions.CultureInvariant)]
    private static partial Regex IdsNnRegex();

    // -n: "0604: 8086:a110 (rev 0a) (prog-if 00 [Normal decode])".
    [GeneratedRegex(@"^(?<cls>[0-9a-fA-F]{4}): (?<v>[0-9a-fA-F]{4}):(?<d>[0-9a-fA-F]{4})(?<tail>.*)$", RegexOptions.CultureInvariant)]
    private static partial Regex IdsNRegex();

    [GeneratedRegex(@"\(rev (?<rev>[0-9a-fA-F]{2})\)", RegexOptions.CultureInvariant)]
    private static partial Regex RevRegex();

    [GeneratedRegex(@"\(prog-if (?<pi>[0-9a-fA-F]{2})", RegexOptions.CultureInvariant)]
    private static partial Regex ProgIfRegex();

    // "Subsystem: Dell Device [1028:0991]" (-nn) or "Subsystem: 1028:0991" (-n).
    [GeneratedRegex(@"(?:\[(?<v>[0-9a-fA-F]{4}):(?<d>[0-9a-fA-F]{4})\]|^(?<v>[0-9a-fA-F]{4}):(?<d>[0-9a-fA-F]{4}))\s*$", RegexOptions.CultureInvariant)]
    private static partial Regex SubsystemRegex();

    // pciutils lspci.c show_htype1: "Bus: primary=%02x, secondary=%02x, subordinate=%02x, sec-latency=%d".
    [GeneratedRegex(@"^Bus: primary=(?<p>[0-9a-fA-F]{2}), secondary=(?<s>[0-9a-fA-F]{2}), subordinate=(?<u>[0-9a-fA-F]{2})", RegexOptions.CultureInvariant)]
    private static partial Regex BusRegex();

    /// <summary>
    /// Reads "[40] Express ..." or "[148 v1] Access Control Services" (after "Capabilities: "): the offset, the
    /// extended capability's version (-1 for a standard capability, printed without one) and the name.
    /// </summary>
    internal static bool TryParseCapabilityHead(ReadOnlySpan<char> s, out int offset, out int version, out ReadOnlySpan<char> name)
    {
        offset = 0;
        version = -1;
        name = default;
        if (s.Length < 3 || s[0] != '[') return false;
        int close = s.IndexOf(']');
        if (close < 2) return false;
        var inside = s[1..close];
        int sp = inside.IndexOf(' ');
        var off = sp < 0 ? inside : inside[..sp];
        if (off.Length is 0 or > 3) return false;
        foreach (char c in off)
        {
            int v = HexValue(c);
            if (v < 0) return false;
            offset = offset * 16 + v;
        }
        if (sp >= 0)
        {
            var ver = inside[(sp + 1)..];
            if (ver.Length is < 2 or > 3 || ver[0] != 'v' || !int.TryParse(ver[1..], NumberStyles.None, CultureInfo.InvariantCulture, out version))
                return false;
        }
        name = s[(close + 1)..].TrimStart();
        return true;
    }

    // ls-caps.c cap_express: "Express (v2) Root Port (Slot+), MSI 00" (the "(vN)" only at -vv). The version and the
    // device/port type are 4-bit fields (PCIe r6.0 §7.5.3.2), so one or two digits: longer is not lspci's, and would
    // overflow int.Parse.
    [GeneratedRegex(@"^Express (?:\(v(?<ver>[0-9]{1,2})\) )?(?<type>Endpoint|Legacy Endpoint|Root Port|Upstream Port|Downstream Port|PCI-Express to PCI/PCI-X Bridge|PCI/PCI-X to PCI-Express Bridge|Root Complex Integrated Endpoint|Root Complex Event Collector|Unknown type (?<num>[0-9]{1,2})(?![0-9]))(?: \(Slot(?<slot>[+-])\))?", RegexOptions.CultureInvariant)]
    private static partial Regex ExpressRegex();

    [GeneratedRegex(@"Next Function: (?<n>[0-9]{1,3})", RegexOptions.CultureInvariant)]
    private static partial Regex AriNextRegex();

    // ls-ecaps.c cap_sriov: "Initial VFs: %d, Total VFs: %d, Number of VFs: %d, ..." and "VF offset: %d, stride: %d, Device ID: %04x".
    [GeneratedRegex(@"^Initial VFs: (?<i>[0-9]{1,5}), Total VFs: (?<t>[0-9]{1,5}), Number of VFs: (?<n>[0-9]{1,5})", RegexOptions.CultureInvariant)]
    private static partial Regex SriovCountsRegex();

    [GeneratedRegex(@"^VF offset: (?<o>[0-9]{1,5}), stride: (?<s>[0-9]{1,5}), Device ID: (?<d>[0-9a-fA-F]{4})", RegexOptions.CultureInvariant)]
    private static partial Regex SriovOffsetRegex();

    [GeneratedRegex(@"Speed (?<speed>[0-9.]+)GT/s.*?Width x(?<width>[0-9]{1,2})", RegexOptions.CultureInvariant)]
    private static partial Regex LinkRegex();

    [GeneratedRegex(@"Port #(?<port>[0-9]{1,3})", RegexOptions.CultureInvariant)]
    private static partial Regex PortRegex();

    [GeneratedRegex(@"^Slot #(?<slot>[0-9]{1,4})", RegexOptions.CultureInvariant)]
    private static partial Regex SlotNumberRegex();

    private static readonly PcieType[] s_pcieTypes = Enum.GetValues<PcieType>();

    /// <summary>
    /// The type whose <see cref="PcieTypeNames.ToDisplayName"/> lspci printed (ls-caps.c cap_express). Only called on a
    /// name <see cref="ExpressRegex"/> matched, which lists exactly those names.
    /// </summary>
    private static PcieType PcieTypeFromLspciName(ReadOnlySpan<char> name)
    {
        foreach (var t in s_pcieTypes)
        {
            if (name.SequenceEqual(t.ToDisplayName())) return t;
        }
        throw new InvalidOperationException($"ExpressRegex matched a PCIe type name PcieTypeNames does not know: {name}");
    }

    /// <summary>The PCI Express Link Speeds encoding (PCIe r6.0 §7.5.3.18): 1 = 2.5 GT/s … 6 = 64 GT/s.</summary>
    private static uint LinkSpeedCode(ReadOnlySpan<char> gts) => gts switch
    {
        "2.5" => 1,
        "5" => 2,
        "8" => 3,
        "16" => 4,
        "32" => 5,
        "64" => 6,
        _ => 0,
    };

    private static bool TryParseAcsFlags(ReadOnlySpan<char> text, out AcsFlags flags)
    {
        // ls-ecaps.c cap_acs: "SrcValid%c TransBlk%c ReqRedir%c CmpltRedir%c UpstreamFwd%c EgressCtrl%c DirectTrans%c".
        flags = AcsFlags.None;
        int seen = 0;
        foreach (var (flag, name) in AcsFlagsNames.LspciNames)
        {
            int at = text.IndexOf(name, StringComparison.Ordinal);
            if (at < 0 || at + name.Length >= text.Length) continue;
            char sign = text[at + name.Length];
            if (sign == '+') flags |= flag;
            else if (sign != '-') continue;
            seen++;
        }
        return seen > 0;
    }

    /// <summary>One pass over the dump's lines.</summary>
    private sealed class Parser
    {
        private readonly string _text;
        private readonly string _origin;
        private readonly LoadWarnings _warnings;
        private readonly List<LspciDevice> _devices = new();
        private readonly HashSet<PciAddress> _seen = new();
        private LspciDevice? _current;
        private bool _blankSinceHeader;
        private int _preamble;
        private readonly List<string> _preambleWarnings = new(); // reported only if a device follows
        private int _firstNonBlankLine;

        // The last line read: whether it ended with '\n' and whether it carried a fact we used.
        private bool _lastLineTerminated = true;
        private bool _lastLineWasFact;
        private bool _endsWithBlank;

        public Parser(string text, string origin)
        {
            _text = text;
            _origin = origin;
            _warnings = new LoadWarnings(origin);
        }

        private void Warn(string message) => _warnings.Add(message);

        private InputException Error(string rule, int line, PciAddress? device = null) =>
            InputException.At(_origin, rule, line, device: device?.ToString());

        public Machine Run()
        {
            int pos = _text.Length > 0 && _text[0] == '\uFEFF' ? 1 : 0; // a byte order mark from an editor
            int lineNo = 0;
            while (pos < _text.Length)
            {
                ReadOnlySpan<char> line = NextPhysicalLine(ref pos, ref lineNo, out bool terminated);
                int thisLine = lineNo;

                // stderr interleaved with stdout when both went to one file: pcilib's "pcilib: sysfs_read_vpd: read
                // failed: No such device" or lspci's "lspci: Unable to load libkmod resources: error -2", inserted
                // anywhere, even mid-line ("\t\tLnkCap2: Supported pcilib: ...\nLink Speeds: ..."). Each message runs
                // to its newline; stdout resumes on the next line. Cut the messages out and join the halves.
                int cut = StderrMessageAt(line, 0);
                if (cut >= 0)
                {
                    string joined = line[..cut].ToString();
                    while (pos < _text.Length)
                    {
                        var next = NextPhysicalLine(ref pos, ref lineNo, out terminated);
                        int from = joined.Length;
                        joined = string.Concat(joined, next);
                        int again = StderrMessageAt(joined, from);
                        if (again < 0) break;
                        joined = joined[..again];
                        if (joined.Length > MaxLineLength)
                            throw Error($"line of {joined.Length} characters is longer than the {MaxLineLength}-character cap", thisLine, _current?.Address);
                    }
                    if (joined.Length > MaxLineLength)
                        throw Error($"line of {joined.Length} characters is longer than the {MaxLineLength}-character cap", thisLine, _current?.Address);
                    line = joined;
                }
                _lastLineTerminated = terminated;
                _lastLineWasFact = false;
                HandleLine(line, thisLine);
            }

            FinishCurrent(atEnd: true);
            if (_devices.Count == 0)
            {
                if (_firstNonBlankLine == 0) throw InputException.At(_origin, "empty: no lspci device lines");
                throw Error("not lspci output: no device line such as `00:1f.3 SMBus [0c05]: ...` found", _firstNonBlankLine);
            }
            return Build();
        }

        /// <summary>The next line of the text without its line end; checks the line-length cap.</summary>
        private ReadOnlySpan<char> NextPhysicalLine(ref int pos, ref int lineNo, out bool terminated)
        {
            int nl = _text.IndexOf('\n', pos);
            int end = nl < 0 ? _text.Length : nl;
            var line = _text.AsSpan(pos, end - pos);
            terminated = nl >= 0;
            pos = nl < 0 ? _text.Length : nl + 1;
            lineNo++;
            if (line.Length > MaxLineLength)
                throw Error($"line of {line.Length} characters is longer than the {MaxLineLength}-character cap", lineNo, _current?.Address);
            if (line.Length > 0 && line[^1] == '\r') line = line[..^1];
            return line;
        }

        /// <summary>Where a stderr message of pcilib or lspci starts in <paramref name="line"/> at or after <paramref name="from"/>, or -1.</summary>
        private static int StderrMessageAt(ReadOnlySpan<char> line, int from)
        {
            var tail = line[from..];
            int a = tail.IndexOf("pcilib: ", StringComparison.Ordinal);
            int b = tail.IndexOf("lspci: ", StringComparison.Ordinal);
            int at = a < 0 ? b : b < 0 ? a : Math.Min(a, b);
            return at < 0 ? -1 : from + at;
        }

        private void HandleLine(ReadOnlySpan<char> line, int lineNo)
        {
            if (line.IsWhiteSpace())
            {
                if (_current is not null) _blankSinceHeader = true;
                // Only a finished blank line ends a record: "\t\t" at the very end is a cut, not a separator.
                _endsWithBlank = _lastLineTerminated;
                return;
            }
            _endsWithBlank = false;
            if (_firstNonBlankLine == 0) _firstNonBlankLine = lineNo;

            if (HasControlCharacters(line))
            {
                if (_current is not null && !_blankSinceHeader)
                {
                    Warn($"{_origin}:{lineNo}: {_current.Address}: line holds control characters (binary noise); skipped");
                    return;
                }
                throw Error("binary data, not lspci text", lineNo, _current?.Address);
            }

            bool column0 = !char.IsWhiteSpace(line[0]);
            if (column0 && TryParseDeviceLine(line, out var address, out var rest))
            {
                StartDevice(address, rest, lineNo);
                return;
            }
            if (column0 && _current is not null)
            {
                Span<byte> row = stackalloc byte[16];
                if (TryParseHexRow(line, row, out int offset, out int count))
                {
                    AddHex(offset, row[..count], lineNo);
                    return;
                }
                if (HexishRegex().IsMatch(line))
                {
                    if (!_blankSinceHeader)
                    {
                        Warn($"{_origin}:{lineNo}: {_current.Address}: malformed hex dump line; the device's hex dump is ignored");
                        _current.HexBroken = true;
                        _current.LastLine = lineNo;
                        return;
                    }
                    throw Error("malformed hex dump line outside a device record", lineNo, _current.Address);
                }
                if (_blankSinceHeader)
                    throw Error("expected a device line such as `00:1f.3 SMBus [0c05]: ...` after the blank line", lineNo, _current.Address);
                if (_current.IndentedLines > 0)
                {
                    // lspci indents every detail line; this record did so until here, so this is not lspci's.
                    Warn($"{_origin}:{lineNo}: {_current.Address}: unindented text inside the record is not an lspci line; skipped");
                    _current.LastLine = lineNo;
                    return;
                }
                // A body line whose indentation was lost in a paste (the whole record is flush left): read it as indented.
            }
            else if (_current is not null)
            {
                _current.IndentedLines++;
            }
            if (_current is null)
            {
                // Text before the first device: a shell prompt, an lspci warning. Tolerated, briefly.
                if (++_preamble > MaxPreambleLines)
                    throw Error($"not lspci output: no device line such as `00:1f.3 SMBus [0c05]: ...` in the first {MaxPreambleLines} lines", _firstNonBlankLine);
                _preambleWarnings.Add($"{_origin}:{lineNo}: text before the first device is not an lspci line; skipped");
                return;
            }
            _current.LastLine = lineNo;
            HandleBody(_current, line.Trim(), lineNo);
        }

        // Control characters other than tab, DEL, and U+FFFD (what undecodable bytes become): binary noise.
        private static readonly SearchValues<char> s_noise = SearchValues.Create(
            "\0\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\n\v\f\r\u000e\u000f\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f\u007f\uFFFD");

        private static bool HasControlCharacters(ReadOnlySpan<char> line) => line.IndexOfAny(s_noise) >= 0;

        private void StartDevice(PciAddress address, ReadOnlySpan<char> rest, int lineNo)
        {
            FinishCurrent(atEnd: false);
            if (_preambleWarnings.Count > 0)
            {
                foreach (var w in _preambleWarnings) Warn(w);
                _preambleWarnings.Clear();
            }
            if (!_seen.Add(address))
                throw Error("the same PCI function appears twice in the dump", lineNo, address);
            if (_seen.Count > MaxDevices)
                throw Error($"more than {MaxDevices} devices: refusing a dump that large", lineNo, address);
            var dev = new LspciDevice(address, lineNo, rest.Trim().ToString()) { LastLine = lineNo };
            ParseHeaderRest(dev, dev.Description);
            _current = dev;
            _blankSinceHeader = false;
            _lastLineWasFact = true;
        }

        private void ParseHeaderRest(LspciDevice dev, string rest)
        {
            var nn = ClassNnRegex().Match(rest);
            if (nn.Success)
            {
                dev.ClassBaseSub = Hex16(nn.Groups["cls"].ValueSpan);
                var ids = IdsNnRegex().Match(nn.Groups["name"].Value);
                if (ids.Success)
                {
                    SetIds(dev, ids.Groups["v"].ValueSpan, ids.Groups["d"].ValueSpan, ids.Groups["tail"].Value);
                    return;
                }
            }
            var n = IdsNRegex().Match(rest);
            if (n.Success)
            {
                dev.ClassBaseSub = Hex16(n.Groups["cls"].ValueSpan);
                SetIds(dev, n.Groups["v"].ValueSpan, n.Groups["d"].ValueSpan, n.Groups["tail"].Value);
                return;
            }
        }

        private static void SetIds(LspciDevice dev, ReadOnlySpan<char> v, ReadOnlySpan<char> d, string tail)
        {
            dev.IdsKnown = true;
            dev.VendorId = Hex16(v);
            dev.DeviceId = Hex16(d);
            // lspci prints "(rev %02x)" only when the revision is not 0 and "(prog-if %02x ...)" only when it is not 0
            // or has a name (pciutils lspci.c show_terse), so absent means 0.
            var rev = RevRegex().Match(tail);
            if (rev.Success) dev.Revision = Hex8(rev.Groups["rev"].ValueSpan);
            var pi = ProgIfRegex().Match(tail);
            if (pi.Success) dev.ProgIf = Hex8(pi.Groups["pi"].ValueSpan);
        }

        private void AddHex(int offset, ReadOnlySpan<byte> bytes, int lineNo)
        {
            var dev = _current!;
            dev.LastLine = lineNo;
            _lastLineWasFact = true;
            if (dev.HexBroken) return;
            if (offset != dev.HexLength || dev.HexPartialLine)
            {
                Warn($"{_origin}:{lineNo}: {dev.Address}: hex dump line at offset 0x{offset:x} does not follow offset 0x{dev.HexLength:x}; the device's hex dump is ignored");
                dev.HexBroken = true;
                return;
            }
            int count = bytes.Length;
            if (offset + count > ConfigSpace.ExtendedSize)
            {
                Warn($"{_origin}:{lineNo}: {dev.Address}: hex dump runs past the {ConfigSpace.ExtendedSize}-byte config space; the device's hex dump is ignored");
                dev.HexBroken = true;
                return;
            }
            dev.Hex ??= new byte[ConfigSpace.ExtendedSize];
            bytes.CopyTo(dev.Hex.AsSpan(offset));
            dev.HexLength = offset + count;
            if (count < 16) dev.HexPartialLine = true;
        }

        private void Malformed(LspciDevice dev, int lineNo, string what) =>
            Warn($"{_origin}:{lineNo}: {dev.Address}: cannot read the {what} line; skipped");

        private void HandleBody(LspciDevice dev, ReadOnlySpan<char> s, int lineNo)
        {
            dev.BodyLines++;
            if (s.StartsWith("Capabilities:", StringComparison.Ordinal))
            {
                _lastLineWasFact = true;
                HandleCapability(dev, s, lineNo);
                return;
            }
            if (s.StartsWith("Control:", StringComparison.Ordinal) && dev.Context == LspciCapContext.None)
            {
                dev.SawControl = true;
                return;
            }
            if (s.StartsWith("Flags:", StringComparison.Ordinal) && dev.Context == LspciCapContext.None)
            {
                dev.SawFlags = true;
                return;
            }
            if (s.StartsWith("Subsystem:", StringComparison.Ordinal))
            {
                _lastLineWasFact = true;
                var m = SubsystemRegex().Match(s["Subsystem:".Length..].Trim().ToString());
                if (!m.Success) { Malformed(dev, lineNo, "Subsystem:"); return; }
                dev.SubsystemVendorId = Hex16(m.Groups["v"].ValueSpan);
                dev.SubsystemDeviceId = Hex16(m.Groups["d"].ValueSpan);
                return;
            }
            if (s.StartsWith("Bus:", StringComparison.Ordinal))
            {
                _lastLineWasFact = true;
                var m = BusRegex().Match(s.ToString());
                if (!m.Success)
                {
                    if (dev.Context == LspciCapContext.None) Malformed(dev, lineNo, "Bus:");
                    return;
                }
                dev.BridgeBuses = (Hex8(m.Groups["p"].ValueSpan), Hex8(m.Groups["s"].ValueSpan), Hex8(m.Groups["u"].ValueSpan));
                return;
            }
            if (s.StartsWith("Kernel driver in use:", StringComparison.Ordinal))
            {
                _lastLineWasFact = true;
                var v = s["Kernel driver in use:".Length..].Trim();
                if (v.IsEmpty || v.ContainsAny(' ', '\t') || SourceText.DriverNameProblem(v.ToString()) is not null) { Malformed(dev, lineNo, "Kernel driver in use:"); return; }
                dev.Driver = v.ToString();
                return;
            }
            if (s.StartsWith("Kernel modules:", StringComparison.Ordinal))
            {
                // pciutils ls-kernel.c show_kernel: the modules whose aliases match, joined by ", ".
                _lastLineWasFact = true;
                var names = s["Kernel modules:".Length..].ToString().Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
                if (names.Length == 0 || names.Length > MaxKernelModules || names.Any(n => n.Contains(' ') || SourceText.DriverNameProblem(n) is not null))
                {
                    Malformed(dev, lineNo, "Kernel modules:");
                    return;
                }
                dev.KernelModules = [.. names];
                return;
            }
            if (s.StartsWith("IOMMU group:", StringComparison.Ordinal))
            {
                _lastLineWasFact = true;
                var v = s["IOMMU group:".Length..].Trim();
                if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int g)) { Malformed(dev, lineNo, "IOMMU group:"); return; }
                dev.KernelGroup = g;
                return;
            }
            if (s.StartsWith("Physical Slot:", StringComparison.Ordinal))
            {
                _lastLineWasFact = true;
                var v = s["Physical Slot:".Length..].Trim();
                if (v.IsEmpty) { Malformed(dev, lineNo, "Physical Slot:"); return; }
                dev.PhysicalSlot = v.ToString();
                return;
            }
            switch (dev.Context)
            {
                case LspciCapContext.Express:
                    HandleExpressDetail(dev, s);
                    break;
                case LspciCapContext.Acs:
                    bool isCap = s.StartsWith("ACSCap:", StringComparison.Ordinal);
                    if (isCap || s.StartsWith("ACSCtl:", StringComparison.Ordinal))
                    {
                        _lastLineWasFact = true;
                        if (!TryParseAcsFlags(s[7..], out var flags)) { Malformed(dev, lineNo, isCap ? "ACSCap:" : "ACSCtl:"); return; }
                        if (isCap) dev.AcsCap = flags; else dev.AcsCtl = flags;
                    }
                    break;
                case LspciCapContext.Ari:
                    if (s.StartsWith("ARICap:", StringComparison.Ordinal))
                    {
                        _lastLineWasFact = true;
                        var m = AriNextRegex().Match(s.ToString());
                        if (!m.Success || !byte.TryParse(m.Groups["n"].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out byte next))
                        {
                            Malformed(dev, lineNo, "ARICap:");
                            return;
                        }
                        dev.AriNext = next;
                    }
                    break;
                case LspciCapContext.Sriov:
                    HandleSriovDetail(dev, s, lineNo);
                    break;
            }
        }


        private void HandleCapability(LspciDevice dev, ReadOnlySpan<char> s, int lineNo)
        {
            dev.Context = LspciCapContext.Other;
            var rest = s["Capabilities:".Length..].Trim();
            if (rest.StartsWith("<access denied>", StringComparison.Ordinal))
            {
                // Non-root lspci: the kernel lets an unprivileged reader see only the 64-byte header.
                dev.AccessDenied = true;
                dev.Context = LspciCapContext.None;
                return;
            }
            // Extended capabilities live at 0x100 and above; -vv prints their version ("[148 v1]"), -v does not ("[148]").
            if (!TryParseCapabilityHead(rest, out int offset, out int ver, out var name) ||
                (ver >= 0 && offset < ConfigSpace.ConventionalSize) || offset < 0x40)
            {
                Malformed(dev, lineNo, "Capabilities:");
                return;
            }
            bool extended = offset >= ConfigSpace.ConventionalSize;
            byte version = ver >= 0 ? (byte)ver : (byte)0;
            if (LspciCapabilityNames.TryGetId(name, extended, out ushort id))
                dev.Capabilities.Add(new PciCapability(id, offset, extended, version));

            if (!extended && id == PciCapabilityIds.Pcie && name.StartsWith("Express", StringComparison.Ordinal))
            {
                if (dev.PcieType is not null) return; // only the first one counts, as in the kernel's pci_find_capability
                var e = ExpressRegex().Match(name.ToString());
                // The version (bits 3:0) and the type (bits 7:4) are 4-bit fields: "Express (v16)" or "Unknown type 99"
                // cannot come from lspci and would not survive an export.
                if (!e.Success
                    || e.Groups["ver"].Success && int.Parse(e.Groups["ver"].ValueSpan, CultureInfo.InvariantCulture) > 15
                    || e.Groups["num"].Success && int.Parse(e.Groups["num"].ValueSpan, CultureInfo.InvariantCulture) > 15)
                { Malformed(dev, lineNo, "Express capability"); return; }
                dev.PcieOffset = offset;
                dev.PcieVersion = e.Groups["ver"].Success ? int.Parse(e.Groups["ver"].ValueSpan, CultureInfo.InvariantCulture) : 0;
                dev.PcieType = e.Groups["num"].Success
                    ? (PcieType)int.Parse(e.Groups["num"].ValueSpan, CultureInfo.InvariantCulture)
                    : PcieTypeFromLspciName(e.Groups["type"].ValueSpan);
                dev.PcieSlot = e.Groups["slot"].Value == "+";
                dev.Context = LspciCapContext.Express;
                return;
            }
            if (!extended) return;
            switch (id)
            {
                case PciCapabilityIds.ExtAcs when dev.AcsOffset < 0:
                    dev.AcsOffset = offset;
                    dev.Context = LspciCapContext.Acs;
                    break;
                case PciCapabilityIds.ExtAri when dev.AriOffset < 0:
                    dev.AriOffset = offset;
                    dev.Context = LspciCapContext.Ari;
                    break;
                case PciCapabilityIds.ExtSriov when dev.SriovOffset < 0:
                    dev.SriovOffset = offset;
                    dev.Context = LspciCapContext.Sriov;
                    break;
            }
        }

        private static void HandleExpressDetail(LspciDevice dev, ReadOnlySpan<char> s)
        {
            if (s.StartsWith("DevCap:", StringComparison.Ordinal))
            {
                dev.PcieDevCapSeen = true;
            }
            else if (s.StartsWith("LnkCap:", StringComparison.Ordinal))
            {
                // Link Capabilities (PCIe r6.0 §7.5.3.6): max speed 3:0, max width 9:4, port number 31:24.
                var str = s.ToString();
                var l = LinkRegex().Match(str);
                var p = PortRegex().Match(str);
                uint v = 0;
                if (l.Success) v |= LinkSpeedCode(l.Groups["speed"].ValueSpan) | (uint.Parse(l.Groups["width"].ValueSpan, CultureInfo.InvariantCulture) & 0x3f) << 4;
                if (p.Success) v |= (uint.Parse(p.Groups["port"].ValueSpan, CultureInfo.InvariantCulture) & 0xff) << 24;
                dev.LinkCapabilities = v;
            }
            else if (s.StartsWith("LnkSta:", StringComparison.Ordinal))
            {
                // Link Status (PCIe r6.0 §7.5.3.8): current speed 3:0, negotiated width 9:4.
                var l = LinkRegex().Match(s.ToString());
                if (l.Success)
                    dev.LinkStatus = (ushort)(LinkSpeedCode(l.Groups["speed"].ValueSpan) | (uint.Parse(l.Groups["width"].ValueSpan, CultureInfo.InvariantCulture) & 0x3f) << 4);
            }
            else if (s.StartsWith("SltCap:", StringComparison.Ordinal))
            {
                // Slot Capabilities (PCIe r6.0 §7.5.3.9): Hot-Plug Capable is bit 6.
                if (s.Contains("HotPlug+", StringComparison.Ordinal)) dev.SlotCapabilities |= 0x40;
            }
            else if (s.StartsWith("Slot #", StringComparison.Ordinal))
            {
                // Physical Slot Number, bits 31:19.
                var m = SlotNumberRegex().Match(s.ToString());
                if (m.Success) dev.SlotCapabilities |= (uint.Parse(m.Groups["slot"].ValueSpan, CultureInfo.InvariantCulture) & 0x1fff) << 19;
            }
        }

        private void HandleSriovDetail(LspciDevice dev, ReadOnlySpan<char> s, int lineNo)
        {
            if (s.StartsWith("Initial VFs:", StringComparison.Ordinal))
            {
                _lastLineWasFact = true;
                var m = SriovCountsRegex().Match(s.ToString());
                if (!m.Success || !ushort.TryParse(m.Groups["t"].ValueSpan, CultureInfo.InvariantCulture, out var total) ||
                    !ushort.TryParse(m.Groups["n"].ValueSpan, CultureInfo.InvariantCulture, out var num))
                {
                    Malformed(dev, lineNo, "SR-IOV Initial VFs:");
                    return;
                }
                dev.SriovTotal = total;
                dev.SriovNum = num;
            }
            else if (s.StartsWith("VF offset:", StringComparison.Ordinal))
            {
                _lastLineWasFact = true;
                var m = SriovOffsetRegex().Match(s.ToString());
                if (!m.Success || !ushort.TryParse(m.Groups["o"].ValueSpan, CultureInfo.InvariantCulture, out var first) ||
                    !ushort.TryParse(m.Groups["s"].ValueSpan, CultureInfo.InvariantCulture, out var stride))
                {
                    Malformed(dev, lineNo, "SR-IOV VF offset:");
                    return;
                }
                dev.SriovFirst = first;
                dev.SriovStride = stride;
                dev.SriovVfDevice = Hex16(m.Groups["d"].ValueSpan);
            }
        }

        /// <summary>Closes the current record. The last one is checked for a cut: a dump that ends inside it.</summary>
        private void FinishCurrent(bool atEnd)
        {
            var dev = _current;
            if (dev is null) return;
            _current = null;
            if (atEnd && !_endsWithBlank && CutReason(dev) is { } why)
            {
                Warn($"{_origin}:{dev.LastLine}: {dev.Address}: the dump ends in the middle of this device (record from line {dev.HeaderLine}: {why}); device skipped");
                return;
            }
            if (dev.HexLength > 0 && !dev.HasUsableHex && !dev.HexBroken)
                Warn($"{_origin}:{dev.HeaderLine}: {dev.Address}: hex dump of {dev.HexLength} bytes is shorter than the 64-byte header; ignored");
            _devices.Add(dev);
        }

        /// <summary>Why the last record looks cut, or null when it looks whole.</summary>
        private string? CutReason(LspciDevice dev)
        {
            if (!_lastLineTerminated && _lastLineWasFact) return "its last line is cut";
            if (dev.HexLength > 0 && (dev.HexPartialLine || dev.HexLength < ExpectedHexLength()))
                return $"hex dump stops at offset 0x{dev.HexLength:x}";
            bool verbose = false; // the dump is -vv: other records print Control: lines
            foreach (var d in _devices)
            {
                if (d.SawControl) { verbose = true; break; }
            }
            if (!verbose) return null;
            if (dev.BodyLines == 0 && dev.HexLength == 0) return "only its header line is there";
            if (!dev.SawControl) return "its Control: line is missing";
            if (dev.ClassBaseSub == 0x0604 && dev.BridgeBuses is null && !dev.AccessDenied && dev.Capabilities.Count == 0)
                return "its Bus: line is missing";
            switch (dev.Context)
            {
                case LspciCapContext.Express when !dev.PcieDevCapSeen:
                    return "its PCI Express capability has no detail lines";
                case LspciCapContext.Acs when dev.AcsDetailMissing:
                    return "its ACS capability lacks ACSCap/ACSCtl";
                case LspciCapContext.Ari when dev.AriNext is null:
                    return "its ARI capability lacks ARICap";
                case LspciCapContext.Sriov when dev.SriovVfDevice is null:
                    return "its SR-IOV capability lacks the VF offset line";
            }
            return null;
        }

        private int ExpectedHexLength()
        {
            int max = 0;
            foreach (var d in _devices)
            {
                if (d.HexLength > max) max = d.HexLength;
            }
            return max;
        }

        /// <summary>
        /// Text does not show the header type, so the topology infers a function 0's multifunction bit from the other
        /// functions in its slot. SR-IOV virtual functions do not count: they are not found by pci_scan_slot but placed
        /// by pci_iov_add_virtfn at PF + offset + n * stride, and a PF whose slot holds only its VFs (or other PFs' VFs)
        /// reads its own header bit, which is clear. Bounded: at most <c>8 x devices + 65536</c> VF addresses computed.
        /// </summary>
        private static void MarkSlotsHoldingOnlyVirtualFunctions(List<PciDeviceFacts> facts)
        {
            var vfs = new HashSet<PciAddress>();
            long budget = 8L * facts.Count + 65536;
            foreach (var f in facts)
            {
                if (f.Sriov is not { NumVfs: > 0 } sriov || f.Sriov.VfStride == 0 && sriov.NumVfs > 1) continue;
                for (int n = 0; n < sriov.NumVfs && budget-- > 0; n++)
                {
                    if (sriov.VfAddress(f.Address, n) is { } vf) vfs.Add(vf);
                }
            }
            if (vfs.Count == 0) return;
            var present = new HashSet<PciAddress>(facts.Count);
            foreach (var f in facts) present.Add(f.Address);
            for (int i = 0; i < facts.Count; i++)
            {
                var f = facts[i];
                if (f.Address.Function != 0 || f.MultifunctionBit is not null || vfs.Contains(f.Address)) continue;
                bool siblings = false, onlyVfs = true;
                for (int fn = 1; fn < 8; fn++)
                {
                    var other = f.Address.WithFunction(fn);
                    if (!present.Contains(other)) continue;
                    siblings = true;
                    if (!vfs.Contains(other)) { onlyVfs = false; break; }
                }
                if (siblings && onlyVfs) facts[i] = f with { MultifunctionBit = false };
            }
        }

        private Machine Build()
        {
            var builder = new PciTopologyBuilder { Origin = _origin };
            var groups = new SortedDictionary<int, List<PciAddress>>();
            var slots = new Dictionary<string, string>(StringComparer.Ordinal);
            int denied = 0, bare = 0, acsDetail = 0, headerHex = 0, noIds = 0;
            bool dumpHasExtended = ExpectedHexLength() > ConfigSpace.ConventionalSize;
            var allFacts = new List<PciDeviceFacts>(_devices.Count);
            foreach (var dev in _devices) allFacts.Add(dev.ToFacts(_origin, Warn, dumpHasExtended));
            MarkSlotsHoldingOnlyVirtualFunctions(allFacts);
            for (int i = 0; i < _devices.Count; i++)
            {
                var dev = _devices[i];
                builder.Add(allFacts[i]);
                // "Physical Slot: N" is the sysfs slot name; sysfs slots/N/address holds domain:bus:device.
                if (dev.PhysicalSlot is { } slot)
                    slots.TryAdd(slot, SysfsReader.SlotAddress(dev.Address));
                if (dev.KernelGroup is { } g)
                {
                    if (!groups.TryGetValue(g, out var list)) groups[g] = list = new List<PciAddress>();
                    list.Add(dev.Address);
                }
                if (dev.HasUsableHex)
                {
                    if (dev.HexLength < ConfigSpace.ConventionalSize) headerHex++;
                }
                else
                {
                    if (!dev.IdsKnown) noIds++;
                    if (dev.AccessDenied) denied++;
                    else if (!dev.SawDetail) bare++;
                    else if (dev.AcsDetailMissing) acsDetail++;
                }
            }
            // One line per kind of missing fact, not one per device.
            if (denied > 0)
                _warnings.AddSummary($"{_origin}: no capabilities visible: run lspci as root (sudo lspci -vvnn); {denied} of {_devices.Count} devices show `Capabilities: <access denied>`, so their PCI Express type and ACS are unknown");
            if (headerHex > 0)
                _warnings.AddSummary($"{_origin}: {headerHex} of {_devices.Count} devices have a hex dump of the 64-byte header only (lspci -x, or not root): their capabilities, PCI Express type and ACS are unknown; use sudo lspci -xxxx");
            if (bare > 0)
                _warnings.AddSummary($"{_origin}: {bare} of {_devices.Count} devices have no detail lines (lspci without -v): bridges, PCI Express types and ACS are unknown; use sudo lspci -vvnn");
            if (acsDetail > 0)
                _warnings.AddSummary($"{_origin}: {acsDetail} devices show an ACS capability without its ACSCap/ACSCtl lines (lspci -v): ACS is unknown; use sudo lspci -vvnn");
            if (noIds > 0)
                _warnings.AddSummary($"{_origin}: {noIds} of {_devices.Count} device lines lack numeric ids ([8086:a110]) and have no hex dump: their vendor, device and class are unknown; use lspci -nn");

            PciTopology topology;
            try
            {
                topology = builder.Build();
            }
            catch (InputException e)
            {
                throw new InputException($"{_origin}: {e.Message}", e);
            }
            List<KernelGroup>? kernelGroups = null;
            if (groups.Count > 0)
            {
                kernelGroups = new List<KernelGroup>(groups.Count);
                foreach (var (id, members) in groups)
                {
                    members.Sort();
                    kernelGroups.Add(new KernelGroup(id, null, [], members));
                }
            }
            return new Machine
            {
                Provenance = MachineProvenance.Lspci,
                Topology = topology,
                Origin = _origin,
                KernelGroups = kernelGroups,
                Slots = slots,
                Warnings = _warnings.ToList(),
            };
        }
    }
}
