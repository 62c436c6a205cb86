namespace IommuKit.Cli.Rendering;

/// <summary>
/// ANSI styling for text output: a no-op unless <see cref="CliConsole.Color"/> (a terminal without <c>NO_COLOR</c>), so
/// piped output and golden tests see plain text.
/// </summary>
internal readonly struct Style(bool color)
{
    public static Style For(CliConsole console) => new(console.Color);

    public string Bold(string s) => Wrap("1", s);
    public string Dim(string s) => Wrap("2", s);
    public string Good(string s) => Wrap("32", s);
    public string Bad(string s) => Wrap("31", s);
    public string Warn(string s) => Wrap("33", s);
    public string Accent(string s) => Wrap("36", s);

    private string Wrap(string code, string s) => color && s.Length > 0 ? $"\u001b[{code}m{s}\u001b[0m" : s;
}
