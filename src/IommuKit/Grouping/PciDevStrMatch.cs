using System.Globalization;
using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>
/// The kernel's <c>pci_dev_str_match</c> (drivers/pci/pci.c, spec 2.7 "Device specifier formats"): matches one
/// device against the specifier at the start of a parameter string and reports where the specifier ended.
/// </summary>
public static class PciDevStrMatch
{
    /// <summary>
    /// Matches <paramref name="dev"/> against the specifier starting at <paramref name="pos"/> of <paramref name="p"/>.
    /// Returns 1 for a match, 0 for no match, negative (-EINVAL) when the specifier does not parse. <paramref name="end"/>
    /// is where the specifier stopped: after the IDs for <c>pci:</c> forms, at the next ';' for path forms.
    /// </summary>
    public static int Match(PciDevice dev, string p, int pos, out int end)
    {
        if (string.CompareOrdinal(p, pos, "pci:", 0, 4) == 0)
        {
            // pci:<vendor>:<device>[:<subvendor>:<subdevice>]; 0 is a wildcard (sscanf "%x:%x:%x:%x%n").
            int i = pos + 4;
            var vals = new uint[4];
            int n = 0;
            int after2 = -1;
            while (n < 4)
            {
                if (!TryHex(p, ref i, out vals[n])) break;
                n++;
                if (n == 2) after2 = i;
                if (n < 4)
                {
                    if (i < p.Length && p[i] == ':') i++;
                    else break;
                }
            }
            if (n < 2) { end = pos; return -(int)Errno.EINVAL; }
            uint sv = 0, sd = 0;
            if (n == 4) { sv = vals[2]; sd = vals[3]; end = i; }
            else end = after2;
            bool m = (vals[0] == 0 || vals[0] == dev.VendorId) && (vals[1] == 0 || vals[1] == dev.DeviceId)
                && (sv == 0 || sv == dev.Facts.SubsystemVendorId) && (sd == 0 || sd == dev.Facts.SubsystemDeviceId);
            return m ? 1 : 0;
        }
        return MatchPath(dev, p, pos, out end);
    }

    /// <summary>Longest path specifier accepted: 256 levels of "/dd.f" after the first address.</summary>
    public const int MaxPathChars = 16 + 256 * 5;

    /// <summary><c>pci_dev_str_match_path</c>: <c>[dddd:]bb:dd.f[/dd.f]*</c> up to the next ';', matched from the device upward.</summary>
    private static int MatchPath(PciDevice dev, string p, int pos, out int end)
    {
        int semi = p.IndexOf(';', pos);
        end = semi < 0 ? p.Length : semi;
        string wpath = p[pos..end];
        // A bridge chain is at most 256 buses deep; a longer path cannot match and would only cost time.
        if (wpath.Length > MaxPathChars) return -(int)Errno.EINVAL;
        PciDevice? d = dev;
        while (true)
        {
            int slash = wpath.LastIndexOf('/');
            if (slash < 0) break;
            string part = wpath[(slash + 1)..];
            if (!TryParseDevFn(part, out int slot, out int func)) return -(int)Errno.EINVAL;
            if (d!.Address.Devfn != ((slot << 3) | func)) return 0;
            d = d.Parent; // pci_upstream_bridge
            if (d is null) return 0;
            wpath = wpath[..slash];
        }
        // "%x:%x:%x.%x%c" must give exactly 4 fields, otherwise "%x:%x.%x%c" exactly 3.
        string[] colon = wpath.Split(':');
        uint seg = 0, bus;
        string devfn;
        if (colon.Length == 3 && TryHexAll(colon[0], out seg) && TryHexAll(colon[1], out bus)) devfn = colon[2];
        else if (colon.Length == 2 && TryHexAll(colon[0], out bus)) { seg = 0; devfn = colon[1]; }
        else return -(int)Errno.EINVAL;
        if (!TryParseDevFn(devfn, out int s2, out int f2)) return -(int)Errno.EINVAL;
        return seg == (uint)d!.Address.Domain && bus == d.Address.Bus && d.Address.Devfn == ((s2 << 3) | f2) ? 1 : 0;
    }

    private static bool TryParseDevFn(string s, out int slot, out int func)
    {
        slot = func = 0;
        int dot = s.IndexOf('.');
        if (dot < 0) return false;
        if (!TryHexAll(s[..dot], out uint a) || !TryHexAll(s[(dot + 1)..], out uint b)) return false;
        // PCI_DEVFN masks slot to 5 bits and function to 3 bits.
        slot = (int)(a & 0x1f);
        func = (int)(b & 7);
        return true;
    }

    private static bool TryHexAll(string s, out uint v)
    {
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) s = s[2..];
        return uint.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out v) && s.Length <= 8;
    }

    private static bool TryHex(string s, ref int i, out uint v)
    {
        v = 0;
        int start = i;
        if (i + 1 < s.Length && s[i] == '0' && (s[i + 1] is 'x' or 'X') && i + 2 < s.Length && Uri.IsHexDigit(s[i + 2])) i += 2;
        int digits = 0;
        while (i < s.Length && Uri.IsHexDigit(s[i]) && digits < 8)
        {
            v = (v << 4) | (uint)Convert.ToInt32(s[i].ToString(), 16);
            i++; digits++;
        }
        if (digits == 0) { i = start; return false; }
        return true;
    }
}
