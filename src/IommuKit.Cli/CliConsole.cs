namespace IommuKit.Cli;

/// <summary>
/// Where the command writes: standard output and error, and whether colour is wanted.
/// Tests pass <see cref="StringWriter"/>s and assert exact lines.
/// </summary>
/// <remarks>
/// Both writers are wrapped in <see cref="EscapingWriter"/>: every string written has its control characters other than
/// newline and tab escaped with <see cref="TextSafety.EscapeKeepingLines"/>, so no text from an input (a device name
/// from an lspci dump, a driver name from a JSON machine) can reach the terminal as a control sequence, whichever
/// command prints it. Fields that must stay on one line (kernel release, names) are escaped when they are loaded,
/// and <see cref="InputException"/> messages when they are made. With colour on, the SGR sequences this program
/// writes (<c>ESC [ digits ; … m</c>) pass; any other escape sequence is shown escaped.
/// </remarks>
public sealed class CliConsole
{
    public CliConsole(TextWriter output, TextWriter error, bool color, Func<Stream>? input = null, Stream? binaryOut = null)
    {
        Out = new EscapingWriter(output, color);
        // Whatever went to Out before a message reaches stderr goes first, so a terminal shows both in program order.
        Error = new EscapingWriter(error, color, before: output);
        Color = color;
        _input = input;
        _binaryOut = binaryOut;
        _rawOut = output;
    }

    private readonly Func<Stream>? _input;
    private readonly Stream? _binaryOut;
    private readonly TextWriter _rawOut;
    private bool _inputTaken;

    /// <summary>Standard input is a terminal (nobody piped a machine in): <c>--source -</c> would wait on the keyboard.</summary>
    public bool InputIsTerminal { get; init; }

    /// <summary>Standard output is a terminal: <c>snapshot -o -</c> would print gzip bytes on the screen.</summary>
    public bool OutputIsTerminal { get; init; }

    /// <summary>
    /// Standard input as bytes, for <c>--source -</c> (through <see cref="IommuKit.Sources.MachineSource.Load(string, Func{Stream})"/>).
    /// It can be read once per command line: a second <c>-</c> (as in <c>diff - -</c>) is a usage error.
    /// </summary>
    public Stream OpenInput()
    {
        if (_inputTaken) throw new CliException("standard input can be read only once: give '-' as at most one source");
        if (InputIsTerminal)
            throw new CliException("--source -: standard input is a terminal; pipe a machine into it (e.g. lspci -vvnn | iommu groups --source -)");
        _inputTaken = true;
        return _input?.Invoke() ?? Stream.Null;
    }

    /// <summary>
    /// Standard output as bytes, for <c>snapshot -o -</c>; the text writer is flushed first so the two never interleave.
    /// Null when this console has no byte stream (then the command refuses <c>-</c>).
    /// </summary>
    public Stream? OpenBinaryOutput()
    {
        _rawOut.Flush();
        return _binaryOut;
    }

    public TextWriter Out { get; }
    public TextWriter Error { get; }
    /// <summary>Colour only on a terminal, and never when <c>NO_COLOR</c> is set (https://no-color.org).</summary>
    public bool Color { get; }
    /// <summary>Whether these are the process's own standard streams (<see cref="FromProcess"/>), not writers a test handed in.</summary>
    public bool IsProcessConsole { get; private init; }
    /// <summary>The process console, with colour decided from the terminal and <c>NO_COLOR</c>.</summary>
    public static CliConsole FromProcess()
    {
        bool tty = !Console.IsOutputRedirected;
        bool noColor = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR"));
        // Console.Out flushes every write: a report of 100 devices was ~470 write(2) calls. Standard output is
        // buffered instead and flushed before anything goes to stderr, before a question (bind's Ask), before the
        // byte stream of `snapshot -o -` and at exit (Program.Main); the console's encoding has no preamble.
        var stdout = Console.OpenStandardOutput();
        var output = new StreamWriter(stdout, Console.OutputEncoding, 16 * 1024) { AutoFlush = false };
        return new CliConsole(output, Console.Error, tty && !noColor, Console.OpenStandardInput, stdout)
        {
            InputIsTerminal = !Console.IsInputRedirected,
            OutputIsTerminal = tty,
            IsProcessConsole = true,
        };
    }

    /// <summary>Writes a warning line to stderr: <c>warning: …</c>.</summary>
    public void Warn(string message) => Error.WriteLine($"warning: {message}");
}

/// <summary>A <see cref="TextWriter"/> that escapes control characters (newline and tab kept) in what passes through it.</summary>
internal sealed class EscapingWriter(TextWriter inner, bool allowSgr, TextWriter? before = null) : TextWriter
{
    public override System.Text.Encoding Encoding => inner.Encoding;
    public override IFormatProvider FormatProvider => inner.FormatProvider;
    [System.Diagnostics.CodeAnalysis.AllowNull]
    public override string NewLine { get => inner.NewLine; set => inner.NewLine = value; }

    public override void Write(char value)
    {
        before?.Flush();
        if (TextSafety.IsUnsafe(value) && value is not ('\n' or '\t' or '\r')) inner.Write(TextSafety.Escape(value.ToString()));
        else inner.Write(value);
    }

    public override void Write(char[] buffer, int index, int count) => Write(new string(buffer, index, count));

    public override void Write(string? value)
    {
        if (value is null) return;
        before?.Flush();
        inner.Write(Clean(value));
    }

    public override void WriteLine(string? value)
    {
        before?.Flush();
        inner.WriteLine(value is null ? null : Clean(value));
    }

    public override void Flush() => inner.Flush();

    private string Clean(string value)
    {
        if (!allowSgr || value.IndexOf('\u001b') < 0) return TextSafety.EscapeKeepingLines(value);
        // Colour on: keep whole SGR sequences (ESC [ digits/semicolons m), escape everything else.
        var sb = new System.Text.StringBuilder(value.Length);
        int start = 0;
        for (int i = 0; i < value.Length; i++)
        {
            if (value[i] != '\u001b') continue;
            int j = i + 1;
            if (j < value.Length && value[j] == '[')
            {
                j++;
                while (j < value.Length && (char.IsAsciiDigit(value[j]) || value[j] == ';')) j++;
                if (j < value.Length && value[j] == 'm')
                {
                    sb.Append(TextSafety.EscapeKeepingLines(value[start..i])).Append(value, i, j + 1 - i);
                    start = j + 1;
                    i = j;
                }
            }
        }
        sb.Append(TextSafety.EscapeKeepingLines(value[start..]));
        return sb.ToString();
    }
}
