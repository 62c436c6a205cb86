namespace IommuKit;

/// <summary>
/// The one error for bad input: a file, dump or machine description that breaks a rule. Its message is a single
/// line that names where (file, and line, byte offset or device when known) and which rule was broken, e.g.
/// <c>host.tar.gz: sys/devices/pci0000:00/0000:00:1c.0/config: offset 0x34: capability pointer 0x40 loops back to 0x40</c>.
/// Programming errors are never reported with this type. Input text embedded in the message is escaped with
/// <see cref="TextSafety.Escape"/> here, once for every message, so it is always one line and never carries a
/// terminal control sequence. <see cref="Sources.FileReadException"/> is the kind for a file that could not be read.
/// </summary>
public class InputException : Exception
{
    /// <summary>Bad input described by a one-line <paramref name="message"/> naming where and which rule (escaped).</summary>
    public InputException(string message) : base(TextSafety.Escape(message)) { }

    /// <summary>As <see cref="InputException(string)"/>, keeping the lower-level <paramref name="inner"/> cause.</summary>
    public InputException(string message, Exception inner) : base(TextSafety.Escape(message), inner) { }

    /// <summary>Builds the one-line message from its parts; null parts are left out.</summary>
    public static InputException At(string? file, string rule, int? line = null, long? offset = null, string? device = null)
    {
        var parts = new List<string>(4);
        if (!string.IsNullOrEmpty(file)) parts.Add(line is { } l ? $"{file}:{l}" : file);
        if (offset is { } o) parts.Add($"offset 0x{o:x}");
        if (!string.IsNullOrEmpty(device)) parts.Add(device);
        parts.Add(rule);
        return new InputException(string.Join(": ", parts));
    }
}
