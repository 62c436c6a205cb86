using System.Text;

namespace IommuKit;

/// <summary>
/// The one escaping function for text that came from input (a tar member name, <c>osrelease</c>, a JSON driver name)
/// before it is printed: control characters become visible <c>\xNN</c> / <c>\uNNNN</c> escapes, so a hostile input
/// cannot move the cursor, retitle the terminal or forge extra output lines.
/// </summary>
/// <remarks>
/// Escaped: C0 controls (U+0000-U+001F), DEL, C1 controls (U+0080-U+009F), the line and paragraph separators
/// (U+2028, U+2029) and the bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069) that can make a
/// terminal show text in another order than it is. The backslash itself is not escaped: the result is for reading,
/// not for parsing back. Escaping is idempotent (an escaped string has nothing left to escape), so a machine whose
/// fields were escaped when it was loaded exports and loads back unchanged.
/// Used by <see cref="InputException"/> (every message, which must be one line), by the readers for fields that must
/// be one line (kernel release, command line, names), and by the CLI's console writer for everything it prints.
/// </remarks>
public static class TextSafety
{
    /// <summary>True when <paramref name="c"/> is escaped by <see cref="Escape"/>.</summary>
    public static bool IsUnsafe(char c) =>
        c < 0x20 || c is >= '\u007f' and <= '\u009f' || c is '\u2028' or '\u2029' || c is >= '\u202a' and <= '\u202e' || c is >= '\u2066' and <= '\u2069';

    /// <summary>
    /// <paramref name="text"/> with every unsafe character (newline and tab included) escaped; for text that must stay
    /// on one line. Null stays null.
    /// </summary>
    public static string Escape(string text) => EscapeCore(text, keepLines: false);

    /// <inheritdoc cref="Escape(string)"/>
    public static string? EscapeOrNull(string? text) => text is null ? null : EscapeCore(text, keepLines: false);

    /// <summary>As <see cref="Escape"/> but newline and tab are kept: for whole output written to a terminal.</summary>
    public static string EscapeKeepingLines(string text) => EscapeCore(text, keepLines: true);

    private static string EscapeCore(string text, bool keepLines)
    {
        int first = -1;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (IsUnsafe(c) && !(keepLines && c is '\n' or '\t'))
            {
                first = i;
                break;
            }
        }
        if (first < 0) return text;
        var sb = new StringBuilder(text.Length + 16);
        sb.Append(text, 0, first);
        for (int i = first; i < text.Length; i++)
        {
            char c = text[i];
            if (!IsUnsafe(c) || (keepLines && c is '\n' or '\t')) sb.Append(c);
            else if (c <= '\u00ff') sb.Append("\\x").Append(((int)c).ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
            else sb.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }
}
