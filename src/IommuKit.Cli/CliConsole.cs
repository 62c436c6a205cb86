using Spectre.Console;

namespace IommuKit.Cli;

/// <summary>
/// Where the command writes: standard output and error, whether colour is wanted, and the terminal width.
/// Tests pass <see cref="StringWriter"/>s and assert exact lines.
/// </summary>
public sealed class CliConsole
{
    public CliConsole(TextWriter output, TextWriter error, bool color, int width)
    {
        Out = output;
        Error = error;
        Color = color;
        Width = width;
    }

    public TextWriter Out { get; }
    public TextWriter Error { get; }
    /// <summary>Colour only on a terminal, and never when <c>NO_COLOR</c> is set (https://no-color.org).</summary>
    public bool Color { get; }
    /// <summary>Columns available; 80 when not a terminal is not assumed: piped output is not wrapped (int.MaxValue).</summary>
    public int Width { get; }

    /// <summary>The process console, with colour decided from the terminal and <c>NO_COLOR</c>.</summary>
    public static CliConsole FromProcess()
    {
        bool tty = !Console.IsOutputRedirected;
        bool noColor = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR"));
        int width = int.MaxValue;
        if (tty)
        {
            try { width = Math.Max(40, Console.WindowWidth); } catch (IOException) { width = 80; }
        }
        return new CliConsole(Console.Out, Console.Error, tty && !noColor, width);
    }

    /// <summary>A Spectre console over <see cref="Out"/> honouring <see cref="Color"/> and <see cref="Width"/>.</summary>
    public IAnsiConsole CreateAnsi()
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = Color ? AnsiSupport.Yes : AnsiSupport.No,
            ColorSystem = Color ? ColorSystemSupport.Standard : ColorSystemSupport.NoColors,
            Out = new AnsiConsoleOutput(Out),
            Interactive = InteractionSupport.No,
        });
        console.Profile.Width = Width == int.MaxValue ? 400 : Width;
        return console;
    }

    /// <summary>Writes a warning line to stderr: <c>warning: …</c>.</summary>
    public void Warn(string message) => Error.WriteLine($"warning: {message}");
}
