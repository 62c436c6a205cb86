using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary>The Host layer's view of the root-confined sysfs writer (<see cref="SysfsWriter"/>, shared with set-type --apply).</summary>
internal sealed class SysfsAccess(SysfsWriter sysfs) : ISysfsAccess
{
    public bool Live => sysfs.Live;
    public void Write(string path, string text) => sysfs.Write(path, text);
    public string? Read(string path) => sysfs.Read(path);
    public string? DriverOf(PciAddress device) => sysfs.DriverOf(device);
}
