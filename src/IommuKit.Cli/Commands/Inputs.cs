using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>Loading what the commands read: the machine, the command line, the pci.ids database, addresses.</summary>
internal static class Inputs
{
    /// <summary>
    /// The machine of <c>--source</c> (or this host, or the bundled example when this host has no PCI sysfs), through
    /// <see cref="SourceResolver.Resolve"/>, which also prints the machine's load warnings.
    /// </summary>
    /// <remarks>A live host's config files are read only as far as the model needs (<see cref="ConfigRead.Needed"/>) unless <paramref name="config"/> asks for them whole.</remarks>
    public static Machine LoadMachine(string? source, CliConsole console, bool json = false, ConfigRead config = ConfigRead.Needed) =>
        SourceResolver.Resolve(source, console, loud: !json, config: config);

    /// <summary>The database of <see cref="CommonOptions.PciIds"/>: the installed one, none, or the file given (bad input when unreadable).</summary>
    public static PciIds LoadPciIds(string? option)
    {
        if (option is null) return PciIds.LoadInstalled() ?? PciIds.Empty;
        if (option == "none") return PciIds.Empty;
        return PciIds.TryLoad(option) ?? throw new CliException($"--pci-ids {option}: cannot read that file", ExitCode.InputError);
    }

    /// <summary>
    /// Refuses to <paramref name="verb"/> on the bundled example machine (shown only because this host has no PCI sysfs):
    /// a verdict or an action about a machine that is not this one would mislead.
    /// </summary>
    public static void RefuseExample(Machine machine, string verb)
    {
        if (machine.Origin == SourceResolver.ExampleOrigin)
            throw new CliException($"this host has no PCI sysfs: refusing to {verb} on the bundled example machine; give --source PATH (a snapshot, lspci dump or directory root)",
                ExitCode.Unsupported);
    }

    public static KernelCommandLine CommandLine(Machine machine, string? overrideText) =>
        KernelCommandLine.Parse(overrideText ?? machine.CommandLine);

    /// <summary>Parses a PCI address argument; a malformed one is bad input (exit 3) naming the text.</summary>
    public static PciAddress Address(string text, string what = "address")
    {
        if (!PciAddress.TryParse(text, out var a))
            throw new CliException($"{what} '{text}' is not a PCI address (expected 0000:01:00.0 or 01:00.0)", ExitCode.InputError);
        return a;
    }

    /// <summary>The device at an address of the machine, or a bad-input error naming it.</summary>
    public static PciDevice Device(Machine machine, PciAddress a) =>
        machine.Topology.Find(a) ?? throw new CliException($"{a}: no such device in {machine.Origin}", ExitCode.InputError);
}
