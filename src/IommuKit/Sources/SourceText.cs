namespace IommuKit.Sources;

/// <summary>Rules every source applies to text fields before they enter a <see cref="Machine"/>.</summary>
internal static class SourceText
{
    /// <summary>Longest driver name accepted: a directory name under <c>/sys/bus/pci/drivers</c> (NAME_MAX).</summary>
    public const int MaxDriverNameLength = 255;

    /// <summary>
    /// Why <paramref name="name"/> cannot be a driver name, or null when it can. A driver is named by its directory
    /// under <c>/sys/bus/pci/drivers</c> (drivers/base/bus.c <c>bus_add_driver</c>): one non-empty path component,
    /// not <c>.</c> or <c>..</c>, without <c>/</c>, NUL or control characters. Checked where a source reads the name,
    /// so the model never sees a name it could not bind (<c>IommuCore.BindDriver</c> requires one).
    /// </summary>
    public static string? DriverNameProblem(string name)
    {
        if (name.Length == 0) return "a driver name must not be empty";
        if (name is "." or "..") return $"'{name}' is not a driver name (a driver name is one path component)";
        if (name.Length > MaxDriverNameLength) return $"a driver name of {name.Length} characters is longer than {MaxDriverNameLength}";
        foreach (char c in name)
        {
            if (c == '/') return $"'{name}' is not a driver name: it contains '/' (a driver name is one path component)";
            if (TextSafety.IsUnsafe(c)) return $"'{name}' is not a driver name: it contains a control character";
        }
        return null;
    }
}
