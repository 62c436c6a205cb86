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
    /// <summary>Columns of the terminal (at least 40; 80 when the terminal does not say); <see cref="int.MaxValue"/> when output is piped, which is never wrapped.</summary>
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

    /// <summary>Writes a warning line to stderr: <c>warning: …</c>.</summary>
    public void Warn(string message) => Error.WriteLine($"warning: {message}");
}
