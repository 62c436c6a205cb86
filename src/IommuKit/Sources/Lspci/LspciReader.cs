using IommuKit.Pci;

namespace IommuKit.Sources.Lspci;

/// <summary>
/// Reads what <c>lspci</c> prints: <c>-vvnn</c> text (with or without <c>-k</c>, <c>-D</c>, <c>-vvv</c>), <c>-xxx</c>/<c>-xxxx</c>
/// hex dumps, or both in one dump, into a <see cref="Machine"/>.
/// </summary>
public static class LspciReader
{
    /// <summary>True when the text looks like lspci output (text, hex or both): its first non-blank line is a device header.</summary>
    public static bool LooksLikeLspci(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        foreach (var raw in text.Split('\n', 64))
        {
            var line = raw.TrimEnd('\r');
            if (line.Trim().Length == 0) continue;
            int sp = line.IndexOf(' ');
            return sp > 0 && PciAddress.TryParse(line.AsSpan(0, sp), out _);
        }
        return false;
    }

    /// <summary>Parses a dump into a machine whose <see cref="Machine.Origin"/> is <paramref name="origin"/>.</summary>
    /// <exception cref="InputException">The text is not lspci output, or breaks a cap; the message names file, line and device.</exception>
    public static Machine Read(string text, string origin)
    {
        ArgumentNullException.ThrowIfNull(text);
        var builder = new PciTopologyBuilder();
        int lineNo = 0;
        foreach (var raw in text.Split('\n'))
        {
            lineNo++;
            var line = raw.TrimEnd('\r');
            if (line.Length == 0 || char.IsWhiteSpace(line[0])) continue;
            int sp = line.IndexOf(' ');
            if (sp <= 0 || !PciAddress.TryParse(line.AsSpan(0, sp), out var addr))
                throw InputException.At(origin, "not an lspci device line", lineNo);
            builder.Add(new PciDeviceFacts { Address = addr, Description = line[(sp + 1)..] });
        }
        return new Machine { Topology = builder.Build(), Origin = origin };
    }
}
