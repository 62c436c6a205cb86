using System.CommandLine;
using IommuKit.Passthrough;

namespace IommuKit.Cli.Commands;

/// <summary>
/// The ls-iommu style options of <c>groups</c> and <c>devices</c>, declared once: one class option per row of
/// <see cref="PciClasses.Filters"/>, <c>--id</c>, <c>--pciaddr</c> and <c>-k</c>. What they keep is library policy
/// (<see cref="DeviceFilter"/>).
/// </summary>
internal sealed class FilterOptions
{
    // ls-iommu's short forms for the classes it has; -s stays --source (docs/cli.md says why).
    private static readonly Dictionary<string, string[]> Aliases = new()
    {
        ["gpu"] = ["-g"],
        ["usb"] = ["-u"],
        ["network"] = ["--net", "-n"],
    };

    private readonly List<(PciClassFilter Filter, Option<bool> Option)> _classes = [];
    private readonly Option<string[]> _ids = new("--id")
    {
        Description = "Only devices with these vendor:device ids (comma-separated or repeated), as lspci -d: --id 10de:2484,10de:228b.",
        HelpName = "VENDOR:DEVICE[,..]",
    };
    private readonly Option<string[]> _addresses = new("--pciaddr")
    {
        Description = "Only these devices: addresses or slots (all functions), comma-separated or repeated: --pciaddr 03:00,00:1f.3.",
        HelpName = "ADDR[,..]",
    };

    /// <summary>The <c>-k</c> option: show the kernel driver in use and the kernel modules, as <c>lspci -k</c>.</summary>
    public Option<bool> Kernel { get; } = new("--kernel", "-k")
    {
        Description = "Show each device's kernel driver in use and kernel modules, as lspci -k (modules when the source lists them: lspci -k text, a JSON machine).",
    };

    /// <summary>Declares the options on <paramref name="command"/>.</summary>
    /// <param name="what">"groups holding" or "devices that are": how the class help begins.</param>
    public FilterOptions(Command command, string what)
    {
        foreach (var f in PciClasses.Filters)
        {
            var option = new Option<bool>("--" + f.Name, Aliases.GetValueOrDefault(f.Name) ?? []) { Description = $"Only {what} {f.Description}." };
            _classes.Add((f, option));
            command.Options.Add(option);
        }
        command.Options.Add(_ids);
        command.Options.Add(_addresses);
        command.Options.Add(Kernel);
    }

    /// <summary>The filter the command line asks for (bad input, exit 3, for a malformed id or address).</summary>
    public DeviceFilter Filter(ParseResult parse) => DeviceFilter.Parse(
        _classes.Where(c => parse.GetValue(c.Option)).Select(c => c.Filter.Name),
        parse.GetValue(_ids) ?? [],
        parse.GetValue(_addresses) ?? []);
}
