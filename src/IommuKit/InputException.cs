namespace IommuKit;

/// <summary>
/// The one error for bad input: a file, dump or machine description that breaks a rule. Its message is a single
/// line that names where (file, and line, byte offset or device when known) and which rule was broken, e.g.
/// <c>host.tar.gz: sys/devices/pci0000:00/0000:00:1c.0/config: offset 0x34: capability pointer 0x40 loops back to 0x40</c>.
/// Programming errors are never reported with this type.
/// </summary>
public sealed class InputException : Exception
{
    /// <summary>Bad input described by a one-line <paramref name="message"/> naming where and which rule.</summary>
    public InputException(string message) : base(message) { }

    /// <summary>As <see cref="InputException(string)"/>, keeping the lower-level <paramref name="inner"/> cause.</summary>
    public InputException(string message, Exception inner) : base(message, inner) { }

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
