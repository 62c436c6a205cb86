using System.CommandLine;
using IommuKit.Cli.Rendering;
using IommuKit.Host;
using IommuKit.Passthrough;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu devices</c>: the PCI topology as a tree (root buses, bridges and ports, endpoints) with each function's
/// ids, class, PCIe type, ACS capability/control and driver; or JSON with one object per function. The ls-iommu
/// filters (<see cref="FilterOptions"/>) keep matching devices and, in the tree, the bridges above them.
/// </summary>
internal static class DevicesCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var json = CommonOptions.Json();
        var pciIds = CommonOptions.PciIds();
        var command = new Command("devices",
            "Show the PCI topology as a tree: bridges, ports and endpoints with their PCIe type, ACS state " +
            "(capability and control bits; \"ACS unknown\" when the config space was not visible) and driver.\n" +
            "Examples: iommu devices    iommu devices --nvme -k    iommu devices --pciaddr 03:00 --json\n" +
            ExitCodeHelp.Line((ExitCode.Ok, "ok")) + "\n" + SourceLimits.HelpText)
        {
            source, json, pciIds,
        };
        var filters = new FilterOptions(command, "devices that are");
        command.SetAction(parse => Run(console, parse.GetValue(source), parse.GetValue(json), parse.GetValue(pciIds), filters.Filter(parse), parse.GetValue(filters.Kernel)));
        return command;
    }

    internal static int Run(CliConsole console, string? source, bool json, string? pciIdsPath, DeviceFilter? filter = null, bool kernel = false)
    {
        filter ??= DeviceFilter.None;
        var ids = Inputs.LoadPciIds(pciIdsPath);
        var machine = SourceResolver.Resolve(source, console, loud: !json);
        if (json) WriteJson(console, machine, ids, filter);
        else DeviceTree.Write(console, machine, filter, kernel);
        return (int)ExitCode.Ok;
    }

    // ------------------------------------------------------------------ JSON

    /// <summary>
    /// <c>devices --json</c>: the machine's keys as every report names them (<c>source</c>, <c>kernel</c>), then one
    /// object per function from the one device writer (<see cref="DeviceJson"/>) with its topology facts.
    /// </summary>
    /// <remarks>With a filter, only the devices it keeps.</remarks>
    internal static void WriteJson(CliConsole console, Machine machine, PciIds ids, DeviceFilter filter) => JsonOut.Write(console, w =>
    {
        w.WriteStartObject();
        w.WriteString("source", machine.Origin);
        JsonOut.NullableString(w, "kernel", machine.KernelRelease);
        w.WriteStartArray("devices");
        foreach (var d in machine.Topology.Devices.Where(filter.Keeps)) DeviceJson.Write(w, d, ids, topology: true, PciSlots.NameOf(machine, d));
        w.WriteEndArray();
        w.WriteEndObject();
    });
}
