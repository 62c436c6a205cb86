using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace IommuKit.Pci;

/// <summary>
/// A PCI function address: segment (domain), bus, device (slot) and function, as Linux prints it
/// (<c>0000:00:1f.3</c>). Domains above 0xffff occur (Intel VMD uses <c>10000:</c>), so the domain is 32 bits.
/// </summary>
/// <remarks>Ordering is domain, bus, device, function: the order of <c>/sys/bus/pci/devices</c>.</remarks>
public readonly record struct PciAddress(int Domain, byte Bus, byte Device, byte Function) : IComparable<PciAddress>
{
    /// <summary>Device number and function packed as the 8-bit devfn: <c>(device &lt;&lt; 3) | function</c>.</summary>
    public byte Devfn => (byte)((Device << 3) | Function);

    /// <summary>The 16-bit requester ID <c>(bus &lt;&lt; 8) | devfn</c> the IOMMU sees.</summary>
    public ushort RequesterId => (ushort)((Bus << 8) | Devfn);

    /// <summary>The address of function <c>devfn &amp; 7</c> of device <c>devfn &gt;&gt; 3</c> on <paramref name="bus"/>.</summary>
    public static PciAddress FromDevfn(int domain, byte bus, byte devfn) => new(domain, bus, (byte)(devfn >> 3), (byte)(devfn & 7));

    /// <summary>The same slot (domain, bus, device) with another function number.</summary>
    public PciAddress WithFunction(int function) => this with { Function = (byte)function };

    /// <summary>Full form, the kernel's <c>pci_name()</c>: <c>0000:00:1f.3</c> (at least four domain digits).</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Domain:x4}:{Bus:x2}:{Device:x2}.{Function:x}");

    /// <summary>Short form lspci prints when every device is in domain 0: <c>00:1f.3</c>.</summary>
    public string ToShortString() => Domain == 0
        ? string.Create(CultureInfo.InvariantCulture, $"{Bus:x2}:{Device:x2}.{Function:x}")
        : ToString();

    /// <summary>Orders by domain, bus, then devfn.</summary>
    public int CompareTo(PciAddress other)
    {
        int c = Domain.CompareTo(other.Domain);
        if (c != 0) return c;
        c = Bus.CompareTo(other.Bus);
        return c != 0 ? c : Devfn.CompareTo(other.Devfn);
    }

    /// <summary>Address order: domain, bus, devfn.</summary>
    public static bool operator <(PciAddress a, PciAddress b) => a.CompareTo(b) < 0;
    /// <summary>Address order: domain, bus, devfn.</summary>
    public static bool operator >(PciAddress a, PciAddress b) => a.CompareTo(b) > 0;
    /// <summary>Address order: domain, bus, devfn.</summary>
    public static bool operator <=(PciAddress a, PciAddress b) => a.CompareTo(b) <= 0;
    /// <summary>Address order: domain, bus, devfn.</summary>
    public static bool operator >=(PciAddress a, PciAddress b) => a.CompareTo(b) >= 0;

    /// <summary>Parses <c>[domain:]bus:device.function</c> in hex (<c>00:1f.3</c>, <c>0000:00:1f.3</c>, <c>10000:e1:00.0</c>).</summary>
    /// <exception cref="FormatException">The text is not an address; the message quotes it.</exception>
    public static PciAddress Parse(string text) =>
        TryParse(text, out var a) ? a : throw new FormatException($"'{text}' is not a PCI address (expected [dddd:]bb:dd.f in hex, e.g. 0000:00:1f.3)");

    /// <summary>Like <see cref="Parse"/>, without throwing; false for null or malformed text.</summary>
    public static bool TryParse([NotNullWhen(true)] string? text, out PciAddress address) =>
        TryParse(text.AsSpan(), out address);

    /// <summary>Parses <c>[domain:]bus:device.function</c> in hex, ignoring surrounding white space.</summary>
    /// <returns>False (and <paramref name="address"/> default) when the text is not an address.</returns>
    public static bool TryParse(ReadOnlySpan<char> s, out PciAddress address)
    {
        address = default;
        s = s.Trim();
        int dot = s.LastIndexOf('.');
        if (dot < 0 || dot != s.Length - 2) return false;
        if (!TryHex(s[(dot + 1)..], 1, out uint fn) || fn > 7) return false;
        var head = s[..dot];
        int c2 = head.LastIndexOf(':');
        if (c2 < 0) return false;
        if (!TryHex(head[(c2 + 1)..], 2, out uint dev) || dev > 31) return false;
        var rest = head[..c2];
        uint domain = 0;
        int c1 = rest.LastIndexOf(':');
        ReadOnlySpan<char> busText = rest;
        if (c1 >= 0)
        {
            var dom = rest[..c1];
            if (dom.Length is 0 or > 8 || !uint.TryParse(dom, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out domain) || domain > int.MaxValue)
                return false;
            busText = rest[(c1 + 1)..];
        }
        if (busText.Length is 0 or > 2 || !uint.TryParse(busText, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint bus))
            return false;
        address = new PciAddress((int)domain, (byte)bus, (byte)dev, (byte)fn);
        return true;
    }

    private static bool TryHex(ReadOnlySpan<char> s, int maxLen, out uint value)
    {
        value = 0;
        return s.Length >= 1 && s.Length <= maxLen &&
               uint.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}
