namespace IommuKit.Sources;

/// <summary>
/// The warnings one load (<see cref="Machine.Warnings"/>) or one snapshot capture collects, shared by every reader and
/// the snapshot writer so each caps them the same way: per-item warnings (a skipped device, line or entry) beyond <see cref="SourceLimits.MaxWarnings"/> are counted in
/// one line, so an input with thousands of bad entries prints a screenful, not thousands of lines; summaries (one line
/// per kind of missing fact, e.g. "12 of 12 devices show only the 64-byte config header") are always kept, after them.
/// Each is one line: input text in it (a member name) is escaped with <see cref="TextSafety.Escape"/>.
/// </summary>
internal sealed class LoadWarnings(string? origin = null)
{
    private readonly List<string> _items = new();
    private readonly List<string> _summaries = new();
    private int _dropped;

    /// <summary>A warning about one item; beyond the cap it is only counted.</summary>
    public void Add(string message)
    {
        if (_items.Count < SourceLimits.MaxWarnings) _items.Add(TextSafety.Escape(message));
        else _dropped++;
    }

    /// <summary>A warning that sums up one kind of missing fact over the whole input; never dropped.</summary>
    public void AddSummary(string message) => _summaries.Add(TextSafety.Escape(message));

    /// <summary>The warnings in order: items, the count of the dropped ones (if any), summaries.</summary>
    public List<string> ToList()
    {
        var all = new List<string>(_items.Count + _summaries.Count + 1);
        all.AddRange(_items);
        if (_dropped > 0) all.Add(origin is null ? $"{_dropped} more warnings not shown" : $"{origin}: {_dropped} more warnings not shown");
        all.AddRange(_summaries);
        return all;
    }
}
