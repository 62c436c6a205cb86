using System.CommandLine;
using System.Text;
using IommuKit.Host;
using IommuKit.Cli.Rendering;
using IommuKit.Core;
using IommuKit.Pci;

namespace IommuKit.Cli.Commands;

/// <summary>
/// <c>iommu sysfs</c>: the IOMMU core's view of the machine rendered as the kernel's <c>/sys/kernel/iommu_groups</c>
/// tree: per group the <c>devices/</c> links, <c>reserved_regions</c>, <c>type</c> and (when the driver names groups)
/// <c>name</c>, with each file's content below it. Exit 0; 2 when the machine has no active IOMMU.
/// </summary>
internal static class SysfsCommand
{
    public static Command Create(CliConsole console)
    {
        var source = CommonOptions.Source();
        var json = CommonOptions.Json();
        var cmdline = CommonOptions.Cmdline();
        var command = new Command("sysfs",
            "Show /sys/kernel/iommu_groups as the IOMMU core model predicts it for the source's kernel, command line and IOMMU " +
            "(devices, reserved_regions, type, name), file by file.\nExit codes: 0 ok, 2 no IOMMU, 3 bad input.")
        {
            source, cmdline, json,
        };
        command.SetAction(parse => Run(console, parse.GetValue(source), parse.GetValue(cmdline), parse.GetValue(json)));
        return command;
    }

    internal static int Run(CliConsole console, string? sourcePath, string? cmdlineText, bool json)
    {
        var machine = Inputs.LoadMachine(sourcePath, console, json);
        var model = HostModel.FromMachine(machine, Inputs.CommandLine(machine, cmdlineText));
        var core = model.Core;
        var groups = core.Groups.Where(g => g.Devices.Count > 0).ToList();
        if (json)
        {
            JsonOut.Write(console, w =>
            {
                w.WriteStartObject();
                w.WriteString("kernel", core.Kernel.ToString());
                w.WriteString("default_type", core.DefaultDomainType.SysfsName());
                w.WriteStartArray("groups");
                foreach (var g in groups)
                {
                    w.WriteStartObject();
                    w.WriteNumber("id", g.Id);
                    if (g.Name is { } n) w.WriteString("name", n);
                    w.WriteString("type", core.ReadType(g));
                    JsonOut.StringArray(w, "reserved_regions", core.ReadReservedRegions(g));
                    w.WriteStartObject("devices");
                    foreach (var d in g.Devices) w.WriteString(d.Name, DeviceLink(d));
                    w.WriteEndObject();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                JsonOut.StringArray(w, "notes", model.Notes);
                w.WriteEndObject();
            });
        }
        else
        {
            var o = console.Out;
            o.WriteLine("/sys/kernel/iommu_groups/");
            foreach (var g in groups)
            {
                string dir = $"/sys/kernel/iommu_groups/{g.Id}";
                o.WriteLine($"{dir}/devices/");
                foreach (var d in g.Devices.OrderBy(d => d.Name, StringComparer.Ordinal))
                    o.WriteLine($"{dir}/devices/{d.Name} -> {DeviceLink(d)}");
                if (g.Name is { } name)
                {
                    o.WriteLine($"{dir}/name");
                    o.WriteLine($"    {name}");
                }
                o.WriteLine($"{dir}/reserved_regions");
                foreach (var line in core.ReadReservedRegions(g)) o.WriteLine($"    {line}");
                o.WriteLine($"{dir}/type");
                o.WriteLine($"    {core.ReadType(g)}");
            }
            foreach (var n in model.Notes) console.Warn(n);
        }
        return groups.Count == 0 ? (int)ExitCode.NoIommu : (int)ExitCode.Ok;
    }

    /// <summary>The relative link sysfs puts in <c>devices/</c>: <c>../../../../devices/pci0000:00/&lt;bridges&gt;/&lt;bdf&gt;</c>.</summary>
    internal static string DeviceLink(IommuDevice d)
    {
        if (d.Pci is not { } p) return $"../../../../devices/platform/{d.Name}";
        var chain = new List<PciDevice>();
        for (var up = p.Parent; up is not null; up = up.Parent) chain.Add(up);
        var root = chain.Count > 0 ? chain[^1].Bus : p.Bus;
        var sb = new StringBuilder($"../../../../devices/pci{root.Domain:x4}:{root.Number:x2}/");
        for (int i = chain.Count - 1; i >= 0; i--) sb.Append(chain[i].Address).Append('/');
        sb.Append(p.Address);
        return sb.ToString();
    }
}
