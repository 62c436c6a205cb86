using System.Globalization;

namespace IommuKit.Sources;

/// <summary>
/// The pci.ids database (https://pci-ids.ucw.cz) as pciutils reads it: vendor, device and class names. Optional:
/// every caller must work without it (names are then null and output falls back to numbers, as lspci does).
/// </summary>
/// <remarks>
/// Format (pciutils <c>lib/names-parse.c</c>): <c>vvvv  Vendor</c>, <c>\tdddd  Device</c>,
/// <c>\t\tssss ssss  Subsystem</c>; <c>C cc  Class</c>, <c>\tss  Subclass</c>, <c>\t\tpp  Prog-if</c>; <c>#</c> comments.
/// Lines of other sections (<c>X</c>, <c>L</c>…) are skipped. Subsystem and prog-if names are not kept.
/// </remarks>
public sealed class PciIds
{
    /// <summary>Where distributions install the database, in the order pciutils and hwdata use them.</summary>
    public static readonly IReadOnlyList<string> DefaultPaths =
        ["/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"];

    /// <summary>Largest file accepted (the real database is about 1.5 MB).</summary>
    public const long MaxBytes = 64L * 1024 * 1024;

    private readonly Dictionary<ushort, string> _vendors = new();
    private readonly Dictionary<uint, string> _devices = new();      // vendor << 16 | device
    private readonly Dictionary<byte, string> _classes = new();
    private readonly Dictionary<ushort, string> _subclasses = new(); // class << 8 | subclass

    /// <summary>An empty database: every lookup returns null.</summary>
    public static PciIds Empty { get; } = new();

    /// <summary>Where the database was read from, or null for <see cref="Empty"/> and parsed text.</summary>
    public string? Path { get; private init; }

    /// <summary>Number of vendor names loaded.</summary>
    public int VendorCount => _vendors.Count;
    /// <summary>Number of device names loaded.</summary>
    public int DeviceCount => _devices.Count;

    /// <summary>The first installed database of <see cref="DefaultPaths"/>, or null when none is installed or readable.</summary>
    public static PciIds? LoadInstalled()
    {
        foreach (var p in DefaultPaths)
        {
            var ids = TryLoad(p);
            if (ids is not null) return ids;
        }
        return null;
    }

    /// <summary>
    /// Reads a database file; null when it does not exist or cannot be read (never throws for I/O). Only a regular file
    /// is read, and at most <see cref="MaxBytes"/>: a FIFO or <c>/dev/zero</c> is refused at once.
    /// </summary>
    public static PciIds? TryLoad(string path) => TryLoad(path, out _);

    /// <summary>As <see cref="TryLoad(string)"/>, with why it could not be read (null when it does not exist).</summary>
    public static PciIds? TryLoad(string path, out string? problem)
    {
        problem = null;
        try
        {
            var bytes = RegularFile.ReadAllCapped(path, path, MaxBytes);
            var ids = Parse(new System.Text.UTF8Encoding(false, false).GetString(bytes));
            return new PciIds(ids) { Path = path };
        }
        catch (FileNotFoundException) { return null; }
        catch (FileReadException ex) { problem = ex.Reason; return null; }
    }

    private PciIds() { }

    private PciIds(PciIds parsed)
    {
        _vendors = parsed._vendors; _devices = parsed._devices; _classes = parsed._classes; _subclasses = parsed._subclasses;
    }

    /// <summary>Parses database text. Malformed lines are skipped, as pciutils does for unknown sections.</summary>
    public static PciIds Parse(string text)
    {
        var ids = new PciIds();
        int? vendor = null;   // current vendor section
        int? cls = null;      // current class section
        foreach (var raw in text.AsSpan().EnumerateLines())
        {
            var line = raw.TrimEnd();
            if (line.IsEmpty || line[0] == '#') continue;
            int tabs = 0;
            while (tabs < line.Length && line[tabs] == '\t') tabs++;
            var body = line[tabs..];
            if (tabs == 0)
            {
                vendor = null; cls = null;
                if (body.StartsWith("C ") && TryIdName(body[2..], 2, out int c, out var cname))
                {
                    cls = c; ids._classes[(byte)c] = cname;
                }
                else if (TryIdName(body, 4, out int v, out var vname))
                {
                    vendor = v; ids._vendors[(ushort)v] = vname;
                }
            }
            else if (tabs == 1)
            {
                if (vendor is int v && TryIdName(body, 4, out int d, out var dname)) ids._devices[((uint)v << 16) | (uint)d] = dname;
                else if (cls is int c && TryIdName(body, 2, out int s, out var sname)) ids._subclasses[(ushort)((c << 8) | s)] = sname;
            }
            // tabs == 2: subsystems and prog-ifs, not kept.
        }
        return ids;
    }

    private static bool TryIdName(ReadOnlySpan<char> s, int digits, out int id, out string name)
    {
        id = 0; name = "";
        if (s.Length < digits + 2 || s[digits] != ' ') return false;
        if (!int.TryParse(s[..digits], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out id)) return false;
        name = s[(digits + 1)..].Trim().ToString();
        return name.Length > 0;
    }

    /// <summary>The vendor's name, or null when the database does not have it.</summary>
    public string? Vendor(ushort vendor) => _vendors.GetValueOrDefault(vendor);

    /// <summary>The device's name under <paramref name="vendor"/>, or null when the database does not have it.</summary>
    public string? Device(ushort vendor, ushort device) => _devices.GetValueOrDefault(((uint)vendor << 16) | device);

    /// <summary>The subclass name of a 24-bit class code, else its base-class name (pciutils' lookup order), else null.</summary>
    public string? Class(uint classCode)
    {
        var sub = (ushort)((classCode >> 8) & 0xffff);
        return _subclasses.GetValueOrDefault(sub) ?? _classes.GetValueOrDefault((byte)(classCode >> 16));
    }

    /// <summary>"Vendor Device" when both are known, else what is known, else null.</summary>
    public string? Name(ushort vendor, ushort device)
    {
        var v = Vendor(vendor);
        var d = Device(vendor, device);
        if (v is not null && d is not null) return $"{v} {d}";
        return v is not null ? $"{v} Device" : null;
    }
}
