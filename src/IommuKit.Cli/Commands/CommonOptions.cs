using System.CommandLine;

namespace IommuKit.Cli.Commands;

/// <summary>Options shared by several commands, declared once with their help.</summary>
internal static class CommonOptions
{
    public static Option<string?> Source() => new("--source", "-s")
    {
        Description = "The machine to read: a directory root (like /), a snapshot tarball (.tar.gz), lspci -vvnn text, " +
                      "lspci -xxx hex, or an IommuKit JSON machine. Omitted: this host (or the bundled example machine " +
                      "when this host has no PCI sysfs).",
        HelpName = "PATH",
    };

    public static Option<bool> Json() => new("--json")
    {
        Description = "Print JSON instead of text (schema in docs/json.md).",
    };

    public static Option<string?> Cmdline() => new("--cmdline")
    {
        Description = "Use this kernel command line instead of the source's (e.g. \"intel_iommu=on pcie_acs_override=downstream\").",
        HelpName = "TEXT",
    };

    /// <summary><c>--pci-ids PATH|none</c>: which pci.ids names devices (read by <see cref="Inputs.LoadPciIds"/>).</summary>
    public static Option<string?> PciIds() => new("--pci-ids")
    {
        Description = "pci.ids database for vendor/device/class names: a path, or 'none' for numbers only. " +
                      "Default: the first of /usr/share/misc/pci.ids, /usr/share/hwdata/pci.ids, /usr/share/pci.ids.",
        HelpName = "PATH|none",
    };
}
