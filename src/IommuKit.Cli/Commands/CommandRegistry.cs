using System.CommandLine;

namespace IommuKit.Cli.Commands;

/// <summary>Every subcommand of <c>iommu</c>, in the order <c>--help</c> lists them. One factory per command file.</summary>
internal static class CommandRegistry
{
    /// <summary>Each command's name (as its factory names it: CliHabitsTests checks they agree) and its factory.</summary>
    private static readonly (string Name, Func<CliConsole, Command> Create)[] s_commands =
    [
        ("groups", GroupsCommand.Create),
        ("explain", ExplainCommand.Create),
        ("vfio-check", VfioCheckCommand.Create),
        ("bind", c => BindCommand.Create(c, bind: true)),
        ("unbind", c => BindCommand.Create(c, bind: false)),
        ("whatif", WhatIfCommand.Create),
        ("slots", SlotsCommand.Create),
        ("diff", DiffCommand.Create),
        ("devices", DevicesCommand.Create),
        ("export", ExportCommand.Create),
        ("snapshot", SnapshotCommand.Create),
        ("set-type", SetTypeCommand.Create),
        ("sysfs", SysfsCommand.Create),
        ("report", ReportCommand.Create),
        ("fleet", FleetCommand.Create),
    ];

    /// <summary>The names of every command, in <c>--help</c> order.</summary>
    public static IEnumerable<string> Names => s_commands.Select(c => c.Name);

    public static IEnumerable<Command> All(CliConsole console)
    {
        foreach (var (_, create) in s_commands) yield return create(console);
    }

    /// <summary>
    /// The commands a command line needs: only the one it names first when it names one (a command is a short process,
    /// and the fourteen others, their options and help text would be built for nothing: <c>Program.BuildRoot</c> went
    /// from 1.10 M to 0.87 M instructions for <c>iommu groups</c>; issue 11), else all of them (root help,
    /// <c>--version</c>, a mistyped name that the parser answers with the names it knows).
    /// </summary>
    public static IEnumerable<Command> For(IReadOnlyList<string> args, CliConsole console)
    {
        if (args.Count > 0)
            foreach (var (name, create) in s_commands)
                if (name == args[0]) return [create(console)];
        return All(console);
    }
}
