namespace IommuKit;

/// <summary>
/// A kernel command line split into parameters the way the kernel's <c>parse_args</c> does: whitespace separates
/// parameters, double quotes group, <c>name=value</c> or a bare <c>name</c>. Dashes and underscores in the name are
/// equivalent (<c>parameq</c>). The typed meaning of each option lives with the code that uses it (grouping reads the
/// <c>pci=</c> ACS options, the core reads <c>iommu.*</c>).
/// </summary>
public sealed class KernelCommandLine
{
    /// <summary>Longest command line accepted (the x86 <c>COMMAND_LINE_SIZE</c> is 2048; we allow headroom).</summary>
    public const int MaxLength = 64 * 1024;

    private readonly List<(string Name, string? Value)> _params;

    private KernelCommandLine(string text, List<(string Name, string? Value)> parameters)
    {
        Text = text;
        _params = parameters;
    }

    /// <summary>An empty command line: no parameters.</summary>
    public static KernelCommandLine Empty { get; } = new("", new());

    /// <summary>The text as given (trimmed).</summary>
    public string Text { get; }

    /// <summary>Parameters in order: name (as written) and value (null for a bare flag).</summary>
    public IReadOnlyList<(string Name, string? Value)> Parameters => _params;

    /// <exception cref="InputException">The line is longer than <see cref="MaxLength"/>.</exception>
    public static KernelCommandLine Parse(string? text)
    {
        text = (text ?? "").Trim();
        if (text.Length > MaxLength)
            throw new InputException($"kernel command line of {text.Length} characters is longer than {MaxLength}");
        var list = new List<(string Name, string? Value)>();
        int i = 0;
        while (i < text.Length)
        {
            while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
            if (i >= text.Length) break;
            var sb = new System.Text.StringBuilder();
            bool quoted = false;
            while (i < text.Length && (quoted || !char.IsWhiteSpace(text[i])))
            {
                if (text[i] == '"') quoted = !quoted;
                else sb.Append(text[i]);
                i++;
            }
            string token = sb.ToString();
            int eq = token.IndexOf('=');
            list.Add(eq < 0 ? (token, null) : (token[..eq], token[(eq + 1)..]));
        }
        return new KernelCommandLine(text, list);
    }

    /// <summary>True when the names are equal with '-' and '_' treated alike (the kernel's <c>parameq</c>).</summary>
    public static bool NameEquals(string a, string b)
    {
        if (a.Length != b.Length) return false;
        for (int i = 0; i < a.Length; i++)
        {
            char x = a[i] == '-' ? '_' : a[i], y = b[i] == '-' ? '_' : b[i];
            if (x != y) return false;
        }
        return true;
    }

    /// <summary>Every value given for <paramref name="name"/>, in order (the kernel sees each occurrence; usually the last wins).</summary>
    public IEnumerable<string?> ValuesOf(string name)
    {
        foreach (var (n, v) in _params)
        {
            if (NameEquals(n, name)) yield return v;
        }
    }

    /// <summary>The last value of <paramref name="name"/>, or null when absent or a bare flag.</summary>
    public string? LastValue(string name)
    {
        string? last = null;
        foreach (var v in ValuesOf(name)) last = v;
        return last;
    }

    /// <summary>True when <paramref name="name"/> occurs at least once, bare or with a value.</summary>
    public bool Has(string name) => ValuesOf(name).Any();

    /// <summary>
    /// The kernel's <c>kstrtobool</c>: 1/y/Y/t/T/on → true, 0/n/N/f/F/off → false, anything else → null (rejected).
    /// A bare flag (null) counts as true for <c>bool</c> module parameters.
    /// </summary>
    public static bool? ParseBool(string? value)
    {
        if (value is null) return true;
        if (value.Length == 0) return null;
        switch (value[0])
        {
            case '1': case 'y': case 'Y': case 't': case 'T': return true;
            case '0': case 'n': case 'N': case 'f': case 'F': return false;
            case 'o': case 'O':
                if (value.Length > 1 && (value[1] is 'n' or 'N')) return true;
                if (value.Length > 1 && (value[1] is 'f' or 'F')) return false;
                return null;
            default: return null;
        }
    }

    /// <summary>
    /// Comma-separated options of a parameter such as <c>iommu=pt,nopt</c> or <c>intel_iommu=on,sm_on</c>, over every
    /// occurrence, in order.
    /// </summary>
    public IEnumerable<string> Options(string name)
    {
        foreach (var v in ValuesOf(name))
        {
            if (v is null) continue;
            foreach (var o in v.Split(',', StringSplitOptions.RemoveEmptyEntries)) yield return o;
        }
    }

    /// <summary>A copy with <paramref name="name"/> removed and, when <paramref name="value"/> is not null, set to it at the end.</summary>
    public KernelCommandLine With(string name, string? value, bool remove = true)
    {
        var list = remove ? _params.Where(p => !NameEquals(p.Name, name)).ToList() : new List<(string Name, string? Value)>(_params);
        if (value is not null) list.Add((name, value));
        return new KernelCommandLine(string.Join(' ', list.Select(FormatParameter)), list);
    }

    /// <summary>
    /// One parameter as <see cref="Parse"/> reads it back: <c>name</c>, <c>name=value</c>, the value quoted when it holds
    /// a blank (space or tab).
    /// </summary>
    public static string FormatParameter((string Name, string? Value) p) =>
        p.Value is null ? p.Name
        : p.Value.AsSpan().IndexOfAny(' ', '\t') >= 0 ? $"{p.Name}=\"{p.Value}\""
        : $"{p.Name}={p.Value}";

    /// <summary>The text as given (<see cref="Text"/>).</summary>
    public override string ToString() => Text;
}
