using System.CommandLine;
using IommuKit.Sources;

namespace IommuKit.Cli;

/// <summary>
/// <c>iommu</c> alone, <c>iommu --help</c>: what the tool is for, task-shaped examples, the exit codes and input caps
/// once, and one line per command (its first line: each command's examples, exit codes and caps are in
/// <c>iommu COMMAND --help</c>, so nothing is said twice).
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

    /// <summary>
    /// Writes the root help in System.CommandLine's section layout (<c>Description:</c>, <c>Usage:</c>,
    /// <c>Options:</c>, <c>Commands:</c> last), which tools/ship/manpage.sh turns into iommu(1).
    /// </summary>
    public static int Write(CliConsole console, RootCommand root)
    {
        var o = console.Out;
        o.WriteLine("Description:");
        o.WriteLine("  " + root.Description!.Split('\n')[0]);
        o.WriteLine("  ");
        o.WriteLine("  Examples:");
        int ew = Examples.Max(e => e.Command.Length) + 2;
        foreach (var (command, what) in Examples) o.WriteLine($"    {command.PadRight(ew)}{what}");
        o.WriteLine("  ");
        o.WriteLine("  " + ExitCodeHelp.All());
        o.WriteLine("  " + SourceLimits.HelpText);
        o.WriteLine();
        o.WriteLine("Usage:");
        o.WriteLine("  iommu [command] [options]");
        o.WriteLine();
        o.WriteLine("Options:");
        o.WriteLine("  -?, -h, --help  Show help and usage information (iommu COMMAND --help: its options, examples and exit codes)");
        o.WriteLine("  --version       Show version information");
        o.WriteLine();
        o.WriteLine("Commands:");
        var names = root.Subcommands.Select(c => c.Name + string.Concat(c.Arguments.Select(a => $" <{a.Name}>"))).ToList();
        int width = names.Max(n => n.Length) + 2;
        int i = 0;
        foreach (var c in root.Subcommands)
            o.WriteLine($"  {names[i++].PadRight(width)}{c.Description?.Split('\n')[0]}");
        return (int)ExitCode.Ok;
    }
}
