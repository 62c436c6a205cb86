using System.Globalization;

namespace IommuKit.Pci;

/// <summary>What a <see cref="DeviceSelector"/> names.</summary>
public enum DeviceSelectorKind
{
    /// <summary>One function: <c>[dddd:]bb:dd.f</c>.</summary>
    Address,
    /// <summary>Every function of a slot (a card): <c>[dddd:]bb:dd</c>, as <c>lspci -s 03:00</c>.</summary>
    Slot,
    /// <summary>Every function with this vendor:device id: <c>vvvv:dddd</c>, as <c>lspci -d 10de:2484</c>.</summary>
    Id,
}

/// <summary>
/// The one way a user names devices on a command line (<c>explain</c>, <c>vfio-check</c>, <c>bind</c>, the
/// <c>--id</c> and <c>--pciaddr</c> filters of <c>groups</c> and <c>devices</c>): a function's address
/// (<c>03:00.0</c>), a slot (<c>03:00</c>: all its functions) or a vendor:device id (<c>10de:2484</c>). The forms
/// cannot be confused: a slot's bus has at most two hex digits, an id's vendor exactly four.
/// </summary>
public sealed record DeviceSelector(DeviceSelectorKind Kind, PciAddress Address, ushort VendorId = 0, ushort DeviceId = 0)
{
    /// <summary>The forms, for messages and help.</summary>
    public const string Forms = "an address (0000:03:00.0 or 03:00.0), a slot (03:00: all its functions) or a vendor:device id (10de:2484)";

    /// <summary>Candidates listed in a no-match or ambiguity message; the rest are counted.</summary>
    public const int MaxListed = 8;

    /// <summary>Parses one selector; false when the text is none of the three forms.</summary>
    public static bool TryParse(string? text, out DeviceSelector selector)
    {
        selector = null!;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var s = text.AsSpan().Trim();
        if (PciAddress.TryParse(s, out var a))
        {
            selector = new DeviceSelector(DeviceSelectorKind.Address, a);
            return true;
        }
        var parts = s.ToString().Split(':');
        if (parts.Length == 2 && parts[0].Length == 4 && parts[1].Length == 4
            && TryHex(parts[0], 4, out uint v) && TryHex(parts[1], 4, out uint d))
        {
            selector = new DeviceSelector(DeviceSelectorKind.Id, default, (ushort)v, (ushort)d);
            return true;
        }
        // A slot is an address without its function: reuse the address grammar with ".0" appended.
        if (parts.Length is 2 or 3 && parts[^2].Length <= 2 && !s.Contains('.') && PciAddress.TryParse(s.ToString() + ".0", out var slot))
        {
            selector = new DeviceSelector(DeviceSelectorKind.Slot, slot);
            return true;
        }
        return false;
    }

    /// <summary>Parses one selector.</summary>
    /// <param name="what">How messages name the argument (<c>ADDRESS</c>, <c>--id</c>).</param>
    /// <exception cref="InputException">The text is none of the forms; the message quotes it and lists them.</exception>
    public static DeviceSelector Parse(string text, string what = "device")
    {
        if (TryParse(text, out var s)) return s;
        throw new InputException($"{what} '{text}' is not a device: expected {Forms}");
    }

    /// <summary>Parses a comma-separated list (<c>--id 10de:2484,10de:228b</c>); every item must parse.</summary>
    /// <exception cref="InputException">An item (or the whole list) is empty or malformed.</exception>
    public static IReadOnlyList<DeviceSelector> ParseList(IEnumerable<string> texts, string what)
    {
        var list = new List<DeviceSelector>();
        foreach (var text in texts)
            foreach (var item in text.Split(','))
                list.Add(Parse(item, what));
        return list;
    }

    /// <summary>Whether <paramref name="device"/> is one this selector names.</summary>
    public bool Matches(PciDevice device) => Kind switch
    {
        DeviceSelectorKind.Address => device.Address == Address,
        DeviceSelectorKind.Slot => device.Address with { Function = 0 } == Address,
        _ => device.VendorId == VendorId && device.DeviceId == DeviceId,
    };

    /// <summary>Every device of <paramref name="topology"/> this selector names, in address order.</summary>
    /// <exception cref="InputException">None: the message names the selector and <paramref name="origin"/> and lists what is near (the bus's functions, or the vendor's devices).</exception>
    public IReadOnlyList<PciDevice> Select(PciTopology topology, string origin)
    {
        ArgumentNullException.ThrowIfNull(topology);
        var found = topology.Devices.Where(Matches).OrderBy(d => d.Address).ToList();
        if (found.Count > 0) return found;
        var near = Kind == DeviceSelectorKind.Id
            ? topology.Devices.Where(d => d.VendorId == VendorId).Select(d => $"{d.Address.ToShortString()} [{Id(d)}]")
            : topology.Devices.Where(d => d.Address.Domain == Address.Domain && d.Address.Bus == Address.Bus).Select(d => d.Address.ToShortString());
        string list = Listed(near.ToList());
        string hint = list.Length == 0
            ? (Kind == DeviceSelectorKind.Id ? $"; no device of vendor {VendorId:x4} either" : $"; nothing on bus {Address.Bus:x2} either")
            : (Kind == DeviceSelectorKind.Id ? $"; devices of vendor {VendorId:x4}: {list}" : $"; on bus {Address.Bus:x2}: {list}");
        throw new InputException($"{this}: no such device in {origin}{hint}");
    }

    /// <summary>
    /// The one device a command that acts on a card asks for: an address's function, a slot's lowest function (the
    /// others are the same card), or the only device with an id.
    /// </summary>
    /// <exception cref="InputException">No match (see <see cref="Select"/>), or an id that several cards share: the message lists them to choose from.</exception>
    public PciDevice SelectOne(PciTopology topology, string origin)
    {
        var found = Select(topology, origin);
        if (found.Select(d => d.Address with { Function = 0 }).Distinct().Count() > 1)
            throw new InputException($"{this} matches {found.Count} devices in {origin}: {Listed(found.Select(d => d.Address.ToShortString()).ToList())}; give one address");
        return found[0];
    }

    /// <summary>The selector as the user would type it: <c>03:00.0</c>, <c>03:00</c>, <c>10de:2484</c>.</summary>
    public override string ToString() => Kind switch
    {
        DeviceSelectorKind.Address => Address.ToShortString(),
        DeviceSelectorKind.Slot => Address.ToShortString()[..^2],
        _ => string.Create(CultureInfo.InvariantCulture, $"{VendorId:x4}:{DeviceId:x4}"),
    };

    private static string Id(PciDevice d) => string.Create(CultureInfo.InvariantCulture, $"{d.VendorId:x4}:{d.DeviceId:x4}");

    private static string Listed(List<string> items) =>
        items.Count <= MaxListed ? string.Join(", ", items) : string.Join(", ", items.Take(MaxListed)) + $" and {items.Count - MaxListed} more";

    private static bool TryHex(string s, int len, out uint value)
    {
        value = 0;
        return s.Length == len && uint.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}
