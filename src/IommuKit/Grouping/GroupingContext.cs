using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>
/// Everything <see cref="PciGrouping"/> needs about a machine, precomputed once: effective ACS (<see cref="AcsPolicy"/>),
/// DMA alias quirks, the VMD real-DMA-device map, per-bus alias flags, and memoized ACS answers for
/// <see cref="AcsFlags.Required"/>. Build with <c>Create</c>; immutable afterwards except for the memo tables.
/// Not thread-safe (the memo tables are filled lazily).
/// </summary>
public sealed class GroupingContext
{
    /// <summary>The topology being grouped.</summary>
    public PciTopology Topology { get; }
    /// <summary>The effective ACS state of every device.</summary>
    public AcsPolicy Acs { get; }
    /// <summary>An ACPI IVRS table is present (AMD IOMMU firmware), which <c>pci_quirk_amd_sb_acs</c> requires.</summary>
    public bool HasIvrs { get; }

    internal readonly DmaAliasInfo?[] Alias;
    internal readonly int[] RealDma;       // probe index of pci_real_dma_dev, or -1 for the device itself
    internal readonly int[] BusPos;        // position of the device in its bus's Devices list
    internal readonly bool[] PlacementUnknown; // the source does not say where this device sits (bridge bus ranges missing)
    internal readonly HashSet<PciBus> BusesWithAliases = new();
    // Memo for REQ_ACS_FLAGS: 0 = not computed, 1 = false, 2 = true.
    private readonly byte[] _acsReq;
    private readonly byte[] _pathReq;
    // Set when a decision consulted a device whose facts are incomplete; cleared by the caller per device.
    internal bool TouchedUnknown;
    internal readonly List<PciDevice> UnknownTouched = new();

    private GroupingContext(PciTopology topology, AcsPolicy acs, bool hasIvrs)
    {
        Topology = topology;
        Acs = acs;
        HasIvrs = hasIvrs;
        int n = topology.Count;
        Alias = new DmaAliasInfo?[n];
        RealDma = new int[n];
        BusPos = new int[n];
        _acsReq = new byte[n];
        _pathReq = new byte[n];
        PlacementUnknown = new bool[n];
        PciDevice? vmd = FindSingleVmd(topology);
        var devices = topology.Devices;
        for (int i = 0; i < n; i++)
        {
            var d = devices[i];
            var info = DmaAliasQuirks.For(d);
            Alias[i] = info;
            if (info?.Mask is not null) BusesWithAliases.Add(d.Bus);
            RealDma[i] = vmd is not null && d.Address.Domain >= 0x10000 ? vmd.ProbeIndex : -1;
        }
        foreach (var d in devices)
        {
            var list = d.Bus.Devices;
            // Devices of a bus are consecutive in devfn order; record each one's position once per bus.
            if (list.Count > 0 && ReferenceEquals(list[0], d))
                for (int k = 0; k < list.Count; k++) BusPos[list[k].ProbeIndex] = k;
        }
        MarkUnknownPlacement();
    }

    /// <summary>
    /// When a source shows bridges without their bus ranges (lspci -nnk, lspci without -v), the tree below them is
    /// unknown: those bridges, and every device on a root bus other than its domain's first, may be misplaced.
    /// </summary>
    private void MarkUnknownPlacement()
    {
        bool anyUnknownBridge = false;
        foreach (var d in Topology.Devices)
        {
            if (d.IsBridge && d.Subordinate is null && d.Facts.BridgeBuses is null)
            {
                PlacementUnknown[d.ProbeIndex] = true;
                anyUnknownBridge = true;
            }
        }
        if (!anyUnknownBridge) return;
        var firstRoot = new Dictionary<int, byte>();
        foreach (var root in Topology.RootBuses)
            if (!firstRoot.ContainsKey(root.Domain)) firstRoot[root.Domain] = root.Number;
        foreach (var d in Topology.Devices)
            if (d.Bus.IsRoot && firstRoot[d.Bus.Domain] != d.Bus.Number) PlacementUnknown[d.ProbeIndex] = true;
    }

    /// <summary>Builds the context for a machine under a command line with the IOMMU active or not.</summary>
    public static GroupingContext Create(Machine machine, KernelCommandLine cmd, bool iommuActive, GroupingOptions? options = null)
    {
        options ??= new GroupingOptions();
        var acs = AcsPolicy.Create(machine, cmd, iommuActive, options);
        bool ivrs = options.HasIvrs ?? (machine.Firmware.Ivrs is not null || DecideIvrs(machine, iommuActive));
        var ctx = new GroupingContext(machine.Topology, acs, ivrs);
        if (machine.Firmware.Ivrs is { } table) ctx.AddIvrsAliases(table);
        return ctx;
    }

    /// <summary>
    /// The IVRS alias entries (0x42 select, 0x43 range) as DMA aliases: AMD-Vi's <c>setup_aliases</c> adds the alias
    /// with <c>pci_add_dma_alias</c> when it sits on the device's own bus, so the alias walk (spec 2.2) and with it
    /// <c>pci_device_group</c> see it like a quirk's alias. Aliases to another bus are the IOMMU's business only.
    /// </summary>
    private void AddIvrsAliases(IvrsTable ivrs)
    {
        foreach (var block in ivrs.EffectiveBlocks)
            foreach (var e in block.Devices)
            {
                if (e.Alias is not { } alias) continue;
                foreach (var d in Topology.Devices)
                {
                    ushort rid = d.Address.RequesterId;
                    if (d.Address.Domain != block.Segment || rid < e.First || rid > e.Last) continue;
                    if (alias >> 8 != d.Address.Bus || (alias & 0xff) == d.Address.Devfn) continue;
                    var old = Alias[d.ProbeIndex];
                    var mask = old?.Mask is { } m ? (ulong[])m.Clone() : new ulong[4];
                    mask[(alias & 0xff) >> 6] |= 1UL << (alias & 63);
                    Alias[d.ProbeIndex] = old is null ? new DmaAliasInfo(mask, false, false, "IVRS alias (setup_aliases)") : old with { Mask = mask };
                    BusesWithAliases.Add(d.Bus);
                }
            }
    }

    /// <summary>Builds a context from an existing <see cref="AcsPolicy"/> (the core's VT-d driver reuses one per host).</summary>
    public static GroupingContext Create(PciTopology topology, AcsPolicy acs, bool hasIvrs) => new(topology, acs, hasIvrs);

    private static bool DecideIvrs(Machine machine, bool iommuActive)
    {
        if (machine.IommuKind == IommuKind.Amd) return true;
        if (!iommuActive || machine.IommuKind != IommuKind.Unknown) return false;
        // No unit information (an lspci dump): an AMD host bridge with an IOMMU implies IVRS.
        foreach (var root in machine.Topology.RootBuses)
        {
            foreach (var d in root.Devices)
            {
                if (d.VendorId == AcsQuirks.VendorAmd && d.ClassCode >> 8 == 0x0600) return true;
            }
        }
        return false;
    }

    /// <summary>Intel VMD controllers (<c>pci_real_dma_dev</c>): devices in domains at or above 0x10000 DMA as the VMD endpoint.</summary>
    private static PciDevice? FindSingleVmd(PciTopology t)
    {
        PciDevice? found = null;
        bool any = false;
        foreach (var d in t.Devices)
        {
            if (d.Address.Domain >= 0x10000) { any = true; continue; }
            if (d.VendorId == 0x8086 && d.DeviceId is 0x201d or 0x28c0 or 0x467f or 0x4c3d or 0x7d0b or 0x9a0b or 0xa77f or 0xad0b or 0xb60b or 0xb06f)
            {
                if (found is not null) return null; // several VMDs: which domain belongs to which is not in the facts
                found = d;
            }
        }
        return any ? found : null;
    }

    /// <summary>What the DMA alias quirks did to <paramref name="d"/>, or null when none applied.</summary>
    internal DmaAliasInfo? AliasInfo(PciDevice d) => Alias[d.ProbeIndex];

    /// <summary><c>pci_real_dma_dev</c>.</summary>
    public PciDevice RealDmaDevice(PciDevice d) => RealDma[d.ProbeIndex] is int r and >= 0 ? Topology.Devices[r] : d;

    internal bool MemoAcsRequired(PciDevice d, out bool value)
    {
        byte b = _acsReq[d.ProbeIndex];
        value = b == 2;
        return b != 0;
    }

    internal void StoreAcsRequired(PciDevice d, bool value) => _acsReq[d.ProbeIndex] = value ? (byte)2 : (byte)1;

    internal bool MemoPathRequired(PciDevice d, out bool value)
    {
        byte b = _pathReq[d.ProbeIndex];
        value = b == 2;
        return b != 0;
    }

    internal void StorePathRequired(PciDevice d, bool value) => _pathReq[d.ProbeIndex] = value ? (byte)2 : (byte)1;

    /// <summary>A decision consulted a fact of <paramref name="d"/> that the source does not show (e.g. a Switchtec alias table in a BAR).</summary>
    internal void MarkUnknown(PciDevice d)
    {
        TouchedUnknown = true;
        if (!UnknownTouched.Contains(d)) UnknownTouched.Add(d);
    }

    internal void NoteUnknown(PciDevice d)
    {
        if (Acs.Unknown[d.ProbeIndex] || PlacementUnknown[d.ProbeIndex])
        {
            TouchedUnknown = true;
            if (!UnknownTouched.Contains(d)) UnknownTouched.Add(d);
        }
    }
}
