namespace IommuKit.Cli;

/// <summary>
/// Where the command writes: standard output and error, and whether colour is wanted.
/// Tests pass <see cref="StringWriter"/>s and assert exact lines.
/// </summary>
public sealed class CliConsole
{
    public CliConsole(TextWriter output, TextWriter error, bool color)
    {
        Out = output;
        Error = error;
        Color = color;
    }

    public TextWriter Out { get; }
    public TextWriter Error { get; }
    /// <summary>Colour only on a terminal, and never when <c>NO_COLOR</c> is set (https://no-color.org).</summary>
    public bool Color { get; }
    /// <summary>The process console, with colour decided from the terminal and <c>NO_COLOR</c>.</summary>
    public static CliConsole FromProcess()
    {
        bool tty = !Console.IsOutputRedirected;
        bool noColor = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR"));
        return new CliConsole(Console.Out, Console.Error, tty && !noColor);
    }

    /// <summary>Writes a warning line to stderr: <c>warning: …</c>.</summary>
    public void Warn(string message) => Error.WriteLine($"warning: {message}");
}
