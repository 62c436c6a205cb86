using System.CommandLine;

namespace IommuKit.Cli.Commands;

/// <summary>Every subcommand of <c>iommu</c>, in the order <c>--help</c> lists them. One factory per command file.</summary>
internal static class CommandRegistry
{
    public static IEnumerable<Command> All(CliConsole console)
    {
        yield return GroupsCommand.Create(console);
        yield return ExplainCommand.Create(console);
        yield return VfioCheckCommand.Create(console);
        yield return BindCommand.Create(console, bind: true);
        yield return BindCommand.Create(console, bind: false);
        yield return WhatIfCommand.Create(console);
        yield return SlotsCommand.Create(console);
        yield return DiffCommand.Create(console);
        yield return DevicesCommand.Create(console);
        yield return ExportCommand.Create(console);
        yield return SnapshotCommand.Create(console);
        yield return SetTypeCommand.Create(console);
        yield return SysfsCommand.Create(console);
        yield return ReportCommand.Create(console);
        yield return FleetCommand.Create(console);
    }
}
