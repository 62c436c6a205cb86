using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>
/// Large made-up machines for benchmarks and scale tests (internal: the bench and the tests use it). Each PCI domain
/// holds 31 multifunction root-port slots x 8 ports; every port leads to a bus with one of: an 8-function endpoint
/// without ACS, an ACS switch with endpoints, or a PCIe-to-PCI bridge with conventional devices. Every fourth port
/// lacks ACS. About 2,500 functions per domain; domains are added until the count is reached.
/// </summary>
internal static class SyntheticMachines
{
    public static Machine Build(int targetDevices)
    {
        var b = new PciTopologyBuilder();
        int count = 0;
        var acsOn = new AcsInfo(0x148, AcsFlags.SV | AcsFlags.TB | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF | AcsFlags.DT, AcsFlags.None);
        for (int domain = 0; count < targetDevices; domain++)
        {
            int nextBus = 1;
            for (int slot = 1; slot < 32 && count < targetDevices; slot++)
            {
                for (int fn = 0; fn < 8 && count < targetDevices && nextBus < 250; fn++)
                {
                    int port = slot * 8 + fn;
                    byte sec = (byte)nextBus++;
                    int kind = port % 3;
                    byte sub = kind == 1 ? (byte)(sec + 2) : kind == 2 ? (byte)(sec + 1) : sec;
                    nextBus = sub + 1;
                    Add(b, ref count, new PciAddress(domain, 0, (byte)slot, (byte)fn), 0x1b36, 0x000c, PcieType.RootPort,
                        port % 4 == 0 ? null : acsOn, (0, sec, sub), mf: fn == 0);
                    switch (kind)
                    {
                        case 0: // 8-function endpoint without ACS
                            for (int f = 0; f < 8; f++)
                                Add(b, ref count, new PciAddress(domain, sec, 0, (byte)f), 0x8086, 0x10d3, PcieType.Endpoint, null, null, mf: f == 0);
                            break;
                        case 1: // switch: upstream, two downstream ports with ACS, an endpoint below each
                            Add(b, ref count, new PciAddress(domain, sec, 0, 0), 0x104c, 0x8232, PcieType.Upstream, null, (sec, (byte)(sec + 1), sub));
                            Add(b, ref count, new PciAddress(domain, (byte)(sec + 1), 0, 0), 0x104c, 0x8233, PcieType.Downstream, acsOn, ((byte)(sec + 1), (byte)(sec + 2), (byte)(sec + 2)));
                            Add(b, ref count, new PciAddress(domain, (byte)(sec + 2), 0, 0), 0x8086, 0x10d3, PcieType.Endpoint, null, null);
                            Add(b, ref count, new PciAddress(domain, (byte)(sec + 2), 1, 0), 0x8086, 0x10d3, PcieType.Endpoint, null, null);
                            break;
                        default: // PCIe-to-PCI bridge with four conventional devices
                            Add(b, ref count, new PciAddress(domain, sec, 0, 0), 0x1b36, 0x000e, PcieType.PciBridge, null, (sec, (byte)(sec + 1), (byte)(sec + 1)));
                            for (int d = 1; d <= 4; d++)
                                Add(b, ref count, new PciAddress(domain, (byte)(sec + 1), (byte)d, 0), 0x10ec, 0x8139, PcieType.None, null, null);
                            break;
                    }
                }
            }
        }
        return new Machine
        {
            Topology = b.Build(),
            Origin = $"synthetic {targetDevices}",
            KernelRelease = "6.12.95+deb12-amd64",
            CommandLine = "intel_iommu=on",
            IommuUnits = [new IommuUnit("dmar0", IommuKind.Intel, [], new Dictionary<string, string>())],
        };
    }

    private static void Add(PciTopologyBuilder b, ref int count, PciAddress a, ushort v, ushort d, PcieType type, AcsInfo? acs,
        (byte, byte, byte)? buses, bool mf = false)
    {
        b.Add(new PciDeviceFacts
        {
            Address = a,
            VendorId = v,
            DeviceId = d,
            ClassCode = buses is null ? 0x020000u : 0x060400u,
            HeaderLayout = buses is null ? 0 : 1,
            MultifunctionBit = mf,
            BridgeBuses = buses,
            Pcie = type == PcieType.None ? null : new PcieInfo(0x40, 2, type, false),
            Acs = acs,
            ParentHint = null,
            IommuUnit = "dmar0",
        });
        count++;
    }
}
