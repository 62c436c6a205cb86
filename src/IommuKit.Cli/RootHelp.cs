using System.CommandLine;
using IommuKit.Sources;

namespace IommuKit.Cli;

/// <summary>
/// <c>iommu</c> alone, <c>iommu --help</c>: what the tool is for, one line per command (its first line: the examples,
/// exit codes and input caps of each command are in <c>iommu COMMAND --help</c>, so nothing is said twice), task-shaped
/// examples, and the exit codes and input caps once.
/// </summary>
internal static class RootHelp
{
    /// <summary>The command lines users come for, with what each answers.</summary>
    public static readonly (string Command, string What)[] Examples =
    [
        ("iommu groups", "this host's IOMMU groups"),
        ("iommu groups --gpu --audio -k", "groups holding a GPU or an audio function, with drivers and modules"),
        ("iommu explain 01:00", "why each function of the card in slot 01:00 is in its group"),
        ("iommu vfio-check 10de:2484", "can that card go to a VM, and what must I do?"),
        ("iommu bind 01:00.0", "what giving it to vfio-pci would write (--apply does it)"),
        ("lspci -vvnn | iommu groups --source -", "another machine's groups, from its lspci text"),
        ("sudo iommu snapshot -o - | ssh helper iommu groups --source -", "this host's groups, read elsewhere"),
    ];

    /// <summary>True for the command lines that ask for the root help: none, or only a help option.</summary>
    public static bool Asked(string[] args) => args.Length == 0 || (args.Length == 1 && args[0] is "--help" or "-h" or "-?" or "help");

    public static int Write(CliConsole console, RootCommand root)
    {
        var o = console.Out;
        o.WriteLine(root.Description!.Split('\n')[0]);
        o.WriteLine();
        o.WriteLine("Usage: iommu COMMAND [options]    (iommu COMMAND --help: the command's options, examples and exit codes)");
        o.WriteLine();
        o.WriteLine("Commands:");
        var names = root.Subcommands.Select(c => c.Name + string.Concat(c.Arguments.Select(a => $" <{a.Name}>"))).ToList();
        int width = names.Max(n => n.Length) + 2;
        int i = 0;
        foreach (var c in root.Subcommands)
            o.WriteLine($"  {names[i++].PadRight(width)}{c.Description?.Split('\n')[0]}");
        o.WriteLine();
        o.WriteLine("Examples:");
        int ew = Examples.Max(e => e.Command.Length) + 2;
        foreach (var (command, what) in Examples) o.WriteLine($"  {command.PadRight(ew)}{what}");
        o.WriteLine();
        o.WriteLine(ExitCodeHelp.All());
        o.WriteLine(SourceLimits.HelpText);
        o.WriteLine("Options: -h, --help (this text; with a command, that command's), --version. Docs: docs/cli.md, docs/json.md.");
        return (int)ExitCode.Ok;
    }
}
