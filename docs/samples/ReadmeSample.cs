using IommuKit;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;

namespace IommuKit.Samples;

/// <summary>The first example of docs/library.md, the package's README: a machine's IOMMU groups as the kernel makes them.</summary>
public static class ReadmeSample
{
    public static void PrintGroups(string path, TextWriter output)
    {
        Machine machine = MachineSource.Load(path);   // a snapshot, an lspci dump, machine JSON; LoadHost() reads this host
        GroupingResult result = ModelGrouping.Compute(machine);
        foreach (ModelGroup group in result.Groups)
        {
            output.WriteLine($"group {group.Id} fingerprint {group.Fingerprint}");
            foreach (PciDevice device in group.Devices)
                output.WriteLine($"  {device.Address} {device.VendorId:x4}:{device.DeviceId:x4}");
        }
    }
}
