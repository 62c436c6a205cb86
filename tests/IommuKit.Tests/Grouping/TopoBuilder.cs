using IommuKit.Host;
using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Tests.Grouping;

/// <summary>
/// Tiny fixture builder for hand-made topologies: one tuple-ish call per function.
/// <c>T.Dev("00:1c.0", 0x8086, 0xa110, PcieType.RootPort, acs: (cap, ctl), sec: 1)</c>.
/// </summary>
internal sealed class T
{
    private readonly List<PciDeviceFacts> _facts = new();
    public string? Cmdline { get; set; } = "intel_iommu=on";
    public string? Release { get; set; } = "6.12.95+deb12-amd64";
    public List<IommuUnit> Units { get; } = new() { new IommuUnit("dmar0", IommuKind.Intel, [], new Dictionary<string, string>()) };

    public static T New() => new();

    /// <param name="acs">ACS capability and control (null: no ACS capability).</param>
    /// <param name="sec">Secondary bus for bridges (subordinate = secondary unless given).</param>
    /// <param name="mf">Header multifunction bit (function 0); other functions are multifunction anyway.</param>
    public T Dev(string addr, ushort vendor, ushort device, PcieType type, (AcsFlags Cap, AcsFlags Ctl)? acs = null,
        int? sec = null, int? sub = null, bool mf = false, ConfigVisibility vis = ConfigVisibility.Full, uint cls = 0x020000,
        ushort subVendor = 0, ushort subDevice = 0, string? parent = null, bool external = false, ConfigSpace? config = null, string? unit = "dmar0")
    {
        var a = PciAddress.Parse(addr);
        bool bridge = sec is not null;
        _facts.Add(new PciDeviceFacts
        {
            Address = a,
            VendorId = vendor,
            DeviceId = device,
            SubsystemVendorId = subVendor,
            SubsystemDeviceId = subDevice,
            ClassCode = bridge && cls == 0x020000 ? 0x060400 : cls,
            HeaderLayout = bridge ? 1 : 0,
            MultifunctionBit = mf,
            BridgeBuses = bridge ? (a.Bus, (byte)sec!.Value, (byte)(sub ?? sec.Value)) : null,
            Pcie = type == PcieType.None ? null : new PcieInfo(0x40, 2, type, false),
            Acs = acs is { } x ? new AcsInfo(0x100, x.Cap, x.Ctl) : null,
            Visibility = vis,
            ParentHint = parent is null ? null : PciAddress.Parse(parent),
            ExternalFacing = external,
            Config = config,
            IommuUnit = unit,
        });
        return this;
    }

    // Shorthands.
    public const ushort Intel = 0x8086, Qemu = 0x1b36, Other = 0x1234;
    public static readonly (AcsFlags, AcsFlags) AcsOn = (AcsFlags.SV | AcsFlags.TB | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF | AcsFlags.DT, AcsFlags.Required);
    /// <summary>ACS capability present, control as firmware left it (all off): the kernel enables it with an IOMMU.</summary>
    public static readonly (AcsFlags, AcsFlags) AcsCapOnly = (AcsFlags.SV | AcsFlags.TB | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF | AcsFlags.DT, AcsFlags.None);

    public T RootPort(string addr, int sec, (AcsFlags, AcsFlags)? acs = null, ushort vendor = Qemu, ushort device = 0x000c, bool mf = false, int? sub = null, ConfigSpace? config = null) =>
        Dev(addr, vendor, device, PcieType.RootPort, acs, sec: sec, sub: sub, mf: mf, config: config);

    public T Endpoint(string addr, ushort vendor = Other, ushort device = 0x0001, bool mf = false, (AcsFlags, AcsFlags)? acs = null, PcieType type = PcieType.Endpoint) =>
        Dev(addr, vendor, device, type, acs, mf: mf);

    public T Conventional(string addr, ushort vendor = Other, ushort device = 0x0002, bool mf = false) =>
        Dev(addr, vendor, device, PcieType.None, mf: mf);

    public Machine Build(bool withKernelGroups = false)
    {
        var b = new PciTopologyBuilder();
        foreach (var f in _facts) b.Add(f);
        return new Machine
        {
            Topology = b.Build(),
            Origin = "hand-built",
            KernelRelease = Release,
            CommandLine = Cmdline,
            IommuUnits = Units,
            KernelGroups = withKernelGroups ? [] : null,
        };
    }

    public GroupingResult Group(string? cmdline = null, GroupingOptions? options = null)
    {
        var m = Build();
        options ??= new GroupingOptions();
        if (cmdline is not null) options = options with { CommandLine = KernelCommandLine.Parse(cmdline) };
        return ModelGrouping.Compute(m, options);
    }
}

internal static class GroupingAssert
{
    /// <summary>The partition as "a b | c | d e" (addresses short, groups in id order).</summary>
    public static string Parts(this GroupingResult r) =>
        string.Join(" | ", r.Groups.Select(g => string.Join(" ", g.Devices.Select(d => d.Address.ToShortString()))));

    public static bool Together(this GroupingResult r, string a, string b) =>
        r.GroupOf(PciAddress.Parse(a)) is { } ga && ga == r.GroupOf(PciAddress.Parse(b));
}
