
namespace IommuKit.Pci;

/// <summary>A group's identity independent of its number: which devices, by address and vendor:device id.</summary>
public static class GroupFingerprint
{
    /// <summary>
    /// A stable fingerprint of a set of devices: the first 12 hex digits of SHA-256 over the sorted lines
    /// <c>dddd:bb:dd.f vvvv:dddd</c>. It does not depend on group numbers or member order.
    /// </summary>
    [System.Runtime.CompilerServices.SkipLocalsInit] // buf is read only as far as it was written; the hash is written whole
    public static string Of(IEnumerable<PciDevice> devices)
    {
        var list = devices as IReadOnlyList<PciDevice> ?? devices.ToList();
        PciDevice[] sorted = new PciDevice[list.Count];
        for (int i = 0; i < sorted.Length; i++) sorted[i] = list[i];
        if (sorted.Length > 1) Array.Sort(sorted, static (a, b) => a.Address.CompareTo(b.Address));
        // Each line: "dddd:bb:dd.f vvvv:dddd" (domain printed with at least 4 hex digits), joined by '\n'.
        const int MaxLine = 8 + 1 + 2 + 1 + 2 + 1 + 1 + 1 + 4 + 1 + 4 + 1;
        int cap = checked(sorted.Length * MaxLine);
        byte[]? rented = cap > 1024 ? System.Buffers.ArrayPool<byte>.Shared.Rent(cap) : null;
        Span<byte> buf = rented ?? stackalloc byte[1024];
        int n = 0;
        for (int i = 0; i < sorted.Length; i++)
        {
            var d = sorted[i];
            if (i > 0) buf[n++] = (byte)'\n';
            var a = d.Address;
            n += Hex(buf[n..], (uint)a.Domain, 4);
            buf[n++] = (byte)':'; n += Hex(buf[n..], a.Bus, 2);
            buf[n++] = (byte)':'; n += Hex(buf[n..], a.Device, 2);
            buf[n++] = (byte)'.'; n += Hex(buf[n..], a.Function, 1);
            buf[n++] = (byte)' '; n += Hex(buf[n..], d.VendorId, 4);
            buf[n++] = (byte)':'; n += Hex(buf[n..], d.DeviceId, 4);
        }
        Span<byte> hash = stackalloc byte[32];
        Sha256.HashData(buf[..n], hash); // managed: no OpenSSL in the native binary (issue 11)
        if (rented is not null) System.Buffers.ArrayPool<byte>.Shared.Return(rented);
        return Convert.ToHexStringLower(hash[..6]);
    }

    private static int Hex(Span<byte> dst, uint v, int digits)
    {
        // Like printf "%0Nx": at least N digits, more when the value needs them.
        int need = 1;
        for (uint t = v >> 4; t != 0; t >>= 4) need++;
        int len = Math.Max(digits, need);
        for (int i = len - 1; i >= 0; i--, v >>= 4) dst[i] = (byte)"0123456789abcdef"[(int)(v & 0xf)];
        return len;
    }

}
