using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>Why <see cref="PciGrouping.AcsEnabled"/> answered as it did.</summary>
public enum AcsReason
{
    Quirk,
    Conventional,
    BridgeNeverIsolates,
    FlagsEnabled,
    FlagsMissing,
    NoAcsCapability,
    SingleFunction,
    OtherType,
}

/// <summary>The answer of <see cref="PciGrouping.Evaluate"/>: enabled or not, why, which quirk, which bits were missing.</summary>
public readonly record struct AcsDecision(bool Enabled, AcsReason Reason, AcsQuirkHook? Hook = null, AcsFlags Missing = AcsFlags.None);

/// <summary>
/// The kernel's PCI grouping functions, shaped like the kernel (spec 2.2-2.6): <c>pci_acs_enabled</c>,
/// <c>pci_acs_path_enabled</c>, <c>pci_for_each_dma_alias</c> and <c>pci_device_group</c>. Groups are whatever the
/// caller keeps: <see cref="DeviceGroup{TGroup}"/> looks them up through a callback, so the core's VT-d driver can call
/// it with its own group objects.
/// </summary>
public static class PciGrouping
{
    /// <summary>The kernel's <c>REQ_ACS_FLAGS</c> (drivers/iommu/iommu.c).</summary>
    public const AcsFlags ReqAcsFlags = AcsFlags.Required;

    /// <summary><c>pci_acs_enabled(pdev, flags)</c> (spec 2.5).</summary>
    public static bool AcsEnabled(PciDevice dev, AcsFlags flags, GroupingContext ctx)
    {
        if (flags == ReqAcsFlags && ctx.MemoAcsRequired(dev, out bool memo))
        {
            ctx.NoteUnknown(dev);
            return memo;
        }
        bool r = Evaluate(dev, flags, ctx).Enabled;
        if (flags == ReqAcsFlags) ctx.StoreAcsRequired(dev, r);
        return r;
    }

    /// <summary><c>pci_acs_enabled</c> with the reason (for explanations).</summary>
    public static AcsDecision Evaluate(PciDevice dev, AcsFlags flags, GroupingContext ctx)
    {
        ctx.NoteUnknown(dev);
        // 1. Device-specific quirks first (pci_dev_specific_acs_enabled): the first hook returning >= 0 decides.
        int q = QuirkAcsEnabled(dev, flags, ctx, out var hook);
        if (q >= 0) return new AcsDecision(q > 0, AcsReason.Quirk, hook);
        // 2. Conventional PCI/PCI-X: a shared bus can always snoop (PCIe r3.0 6.12).
        if (!dev.IsPcie) return new AcsDecision(false, AcsReason.Conventional);
        switch (dev.PcieType)
        {
            // PCI/X-to-PCIe bridges, PCIe-to-PCI bridges and event collectors never isolate (PCIe r3.0 6.12.1).
            case PcieType.PcieBridge:
            case PcieType.PciBridge:
            case PcieType.RcEc:
                return new AcsDecision(false, AcsReason.BridgeNeverIsolates);
            // Root and downstream ports must implement ACS (PCIe r3.0 6.12.1.1), single- or multi-function.
            case PcieType.Downstream:
            case PcieType.RootPort:
                return FlagsEnabled(dev, flags, ctx);
            // Other types only as part of a multifunction device (PCIe r3.0 6.12.1.2).
            case PcieType.Endpoint:
            case PcieType.Upstream:
            case PcieType.LegacyEndpoint:
            case PcieType.RcEnd:
                if (!dev.IsMultifunction) return new AcsDecision(true, AcsReason.SingleFunction);
                return FlagsEnabled(dev, flags, ctx);
        }
        // PCIe r3.0 6.12.1.3: nothing applies to other single-function types.
        return new AcsDecision(true, AcsReason.OtherType);
    }

    /// <summary><c>pci_acs_flags_enabled</c>: missing capability bits count as hard-wired on, except Egress Control.</summary>
    private static AcsDecision FlagsEnabled(PciDevice dev, AcsFlags flags, GroupingContext ctx)
    {
        var acs = ctx.Acs;
        int i = dev.ProbeIndex;
        if (!acs.HasAcs[i]) return new AcsDecision(false, AcsReason.NoAcsCapability, Missing: flags);
        AcsFlags need = flags & (acs.Cap[i] | AcsFlags.EC);
        AcsFlags missing = need & ~acs.Ctrl[i];
        return missing == 0 ? new AcsDecision(true, AcsReason.FlagsEnabled) : new AcsDecision(false, AcsReason.FlagsMissing, Missing: missing);
    }

    /// <summary>
    /// <c>pci_dev_specific_acs_enabled</c>: walks <see cref="AcsQuirks.Table"/> in order (plus the override catch-all when
    /// active). Returns -1 when no hook claims the device (-ENOTTY), else 0 or 1.
    /// </summary>
    public static int QuirkAcsEnabled(PciDevice dev, AcsFlags flags, GroupingContext ctx, out AcsQuirkHook? hook)
    {
        var table = AcsQuirks.Table;
        foreach (int idx in AcsQuirks.EntriesFor(dev.VendorId))
        {
            var e = table[idx];
            if (e.Device != AcsQuirks.Any && e.Device != dev.DeviceId) continue;
            int r = RunHook(e.Hook, dev, flags, ctx);
            if (r >= 0) { hook = e.Hook; return r; }
        }
        var ov = ctx.Acs.Override;
        if (ov.Active)
        {
            int r = OverrideHook(dev, ov, ctx);
            if (r >= 0) { hook = AcsQuirkHook.Override; return r; }
        }
        hook = null;
        return -1;
    }

    private static int RunHook(AcsQuirkHook h, PciDevice dev, AcsFlags flags, GroupingContext ctx)
    {
        const AcsFlags grant = AcsQuirks.PortGrant;
        switch (h)
        {
            case AcsQuirkHook.AmdSouthbridge:
                // pci_quirk_amd_sb_acs: multifunction on a root bus, and only with an IVRS table.
                if (!dev.IsMultifunction || !dev.IsOnRootBus || !ctx.HasIvrs) return -1;
                flags &= AcsFlags.RR | AcsFlags.CR | AcsFlags.EC | AcsFlags.DT;
                return AcsQuirks.CtrlEnabled(flags, AcsFlags.RR | AcsFlags.CR);
            case AcsQuirkHook.MfEndpoint:
                return AcsQuirks.CtrlEnabled(flags, AcsQuirks.MfEndpointGrant);
            case AcsQuirkHook.IntelRciep:
                if (dev.PcieType != PcieType.RcEnd) return -1;
                return AcsQuirks.CtrlEnabled(flags, grant);
            case AcsQuirkHook.QcomRootPort:
            case AcsQuirkHook.XGene:
            case AcsQuirkHook.Broadcom:
            case AcsQuirkHook.Loongson:
            case AcsQuirkHook.NxpRootPort:
                return AcsQuirks.CtrlEnabled(flags, grant);
            case AcsQuirkHook.IntelPch:
                if (!AcsPolicy.IsPch(dev)) return -1;
                return AcsQuirks.CtrlEnabled(flags, ctx.Acs.PchEnabled[dev.ProbeIndex] ? grant : AcsFlags.None);
            case AcsQuirkHook.IntelSptPch:
            {
                if (!AcsPolicy.IsSpt(dev) || !ctx.Acs.HasAcs[dev.ProbeIndex]) return -1;
                uint cap = ctx.Acs.SptCap[dev.ProbeIndex], ctl = ctx.Acs.SptCtrl[dev.ProbeIndex];
                uint f = (uint)flags & (cap | (uint)AcsFlags.EC);
                return (f & ctl) == f ? 1 : 0;
            }
            case AcsQuirkHook.Cavium:
                if (dev.PcieType != PcieType.RootPort || !AcsQuirks.IsCaviumRootPortId(dev.DeviceId)) return -1;
                return AcsQuirks.CtrlEnabled(flags, grant);
            case AcsQuirkHook.AmazonAl:
                if (dev.PcieType != PcieType.RootPort) return -1;
                return (flags & ~grant) != 0 ? 0 : 1;
            case AcsQuirkHook.ZhaoxinPorts:
                if (!dev.IsPcie || dev.PcieType is not (PcieType.RootPort or PcieType.Downstream)) return -1;
                return AcsQuirks.IsZhaoxinIsolatedPortId(dev.DeviceId) ? AcsQuirks.CtrlEnabled(flags, grant) : 0;
            case AcsQuirkHook.WangxunNic:
                return AcsQuirks.IsWangxunIsolatedId(dev.DeviceId) ? AcsQuirks.CtrlEnabled(flags, grant) : 0;
            default:
                return -1;
        }
    }

    /// <summary>The out-of-tree <c>pcie_acs_overrides</c> hook (spec 2.7): never for conventional devices or devices with ACS.</summary>
    private static int OverrideHook(PciDevice dev, AcsOverridePolicy ov, GroupingContext ctx)
    {
        if (!dev.IsPcie || dev.Acs is not null) return -1;
        foreach (var (v, d) in ov.Ids)
        {
            if (v == dev.VendorId && d == dev.DeviceId) return 1;
        }
        switch (dev.PcieType)
        {
            case PcieType.Downstream:
            case PcieType.RootPort:
                if (ov.Downstream) return 1;
                break;
            case PcieType.Endpoint:
            case PcieType.Upstream:
            case PcieType.LegacyEndpoint:
            case PcieType.RcEnd:
                if (ov.Multifunction && dev.IsMultifunction) return 1;
                break;
        }
        return -1;
    }

    /// <summary>
    /// <c>pci_acs_path_enabled(start, end, flags)</c> (spec 2.6): every device from <paramref name="start"/> up to
    /// <paramref name="end"/> (or the root, when end is null) passes <see cref="AcsEnabled"/>. With end null and
    /// <see cref="ReqAcsFlags"/>, answers are memoized per device so a deep tree stays linear.
    /// </summary>
    public static bool AcsPathEnabled(PciDevice start, PciDevice? end, AcsFlags flags, GroupingContext ctx)
    {
        if (end is null && flags == ReqAcsFlags) return PathRequired(start, ctx);
        PciDevice? parent = start;
        PciDevice pdev;
        do
        {
            pdev = parent!;
            if (!AcsEnabled(pdev, flags, ctx)) return false;
            if (pdev.IsOnRootBus) return end is null;
            parent = pdev.Bus.Self;
            if (parent is null) return end is null; // virtual bus: nothing above to check
        } while (pdev != end);
        return true;
    }

    private static bool PathRequired(PciDevice start, GroupingContext ctx)
    {
        if (ctx.MemoPathRequired(start, out bool v)) { NoteUnknownPath(start, ctx); return v; }
        bool r;
        if (!AcsEnabled(start, ReqAcsFlags, ctx)) r = false;
        else if (start.IsOnRootBus || start.Bus.Self is null) r = true;
        else r = PathRequired(start.Bus.Self, ctx);
        ctx.StorePathRequired(start, r);
        return r;
    }

    private static void NoteUnknownPath(PciDevice start, GroupingContext ctx)
    {
        // Re-mark unknown facts along a memoized path so every group that relied on them is flagged (bounded by depth).
        int guard = 0;
        for (PciDevice? p = start; p is not null && guard++ < 256; p = p.IsOnRootBus ? null : p.Bus.Self)
        {
            ctx.NoteUnknown(p);
            if (ctx.MemoAcsRequired(p, out bool ok) && !ok) break;
        }
    }

    /// <summary>
    /// <c>pci_for_each_dma_alias(pdev, fn)</c> (spec 2.2): calls <paramref name="fn"/> with every (device, requester ID)
    /// that DMA from <paramref name="pdev"/> may carry at the IOMMU; stops at the first non-zero return and returns it.
    /// </summary>
    public static int ForEachDmaAlias(PciDevice pdev, GroupingContext ctx, Func<PciDevice, ushort, int> fn)
    {
        pdev = ctx.RealDmaDevice(pdev);
        int ret = fn(pdev, pdev.Address.RequesterId);
        if (ret != 0) return ret;
        if (ctx.AliasInfo(pdev)?.Mask is { } mask)
        {
            for (int devfn = 0; devfn < 256; devfn++)
            {
                if ((mask[devfn >> 6] & (1UL << (devfn & 63))) == 0) continue;
                ret = fn(pdev, (ushort)((pdev.Address.Bus << 8) | devfn));
                if (ret != 0) return ret;
            }
        }
        for (var bus = pdev.Bus; !bus.IsRoot; bus = bus.Parent!)
        {
            var tmp = bus.Self;
            if (tmp is null) continue; // virtual bus
            if (ctx.AliasInfo(tmp)?.XlateRoot == true) return ret;
            if (tmp.IsPcie)
            {
                switch (tmp.PcieType)
                {
                    case PcieType.PciBridge:
                        ret = fn(tmp, (ushort)(SubordinateNumber(tmp) << 8));
                        if (ret != 0) return ret;
                        continue;
                    case PcieType.PcieBridge:
                        ret = fn(tmp, tmp.Address.RequesterId);
                        if (ret != 0) return ret;
                        continue;
                    default:
                        continue;
                }
            }
            ret = ctx.AliasInfo(tmp)?.PcieBridgeAlias == true
                ? fn(tmp, (ushort)(SubordinateNumber(tmp) << 8))
                : fn(tmp, tmp.Address.RequesterId);
            if (ret != 0) return ret;
        }
        return ret;
    }

    private static int SubordinateNumber(PciDevice bridge) =>
        bridge.Subordinate?.Number ?? bridge.Facts.BridgeBuses?.Secondary ?? 0;

    /// <summary>
    /// <c>pci_device_group(dev)</c> (spec 2.4): the existing group <paramref name="dev"/> must join, found through
    /// <paramref name="groupOf"/>, or a new one from <paramref name="allocate"/>. Decisions go to <paramref name="trace"/>.
    /// </summary>
    /// <typeparam name="TGroup">The caller's group type.</typeparam>
    /// <param name="groupOf">The group a device already belongs to, or null (the kernel's <c>iommu_group_get</c>).</param>
    /// <param name="allocate">Allocates a new group (the kernel's <c>iommu_group_alloc</c>).</param>
    public static TGroup DeviceGroup<TGroup>(PciDevice dev, GroupingContext ctx, Func<PciDevice, TGroup?> groupOf,
        Func<TGroup> allocate, GroupTrace? trace = null) where TGroup : class
    {
        // 1. Alias walk (get_pci_alias_or_group over pci_for_each_dma_alias): first visited device with a group wins.
        TGroup? g;
        if (ctx.PlacementUnknown[dev.ProbeIndex])
        {
            ctx.NoteUnknown(dev);
            trace?.Add(GroupStepKind.UnknownFacts, dev, dev.IsBridge
                ? $"{GroupTrace.A(dev)} is a bridge whose bus range the source does not show: what sits below it is unknown"
                : $"{GroupTrace.A(dev)} is on bus {dev.Bus} which no bridge in the source claims: where it really sits is unknown");
        }
        PciDevice pdev = ctx.RealDmaDevice(dev);
        if (pdev != dev)
            trace?.Add(GroupStepKind.RealDmaDevice, dev, $"{GroupTrace.A(dev)} sits behind the VMD controller {GroupTrace.A(pdev)}, whose requester ID its DMA carries");
        PciDevice last = pdev;
        g = groupOf(pdev);
        if (g is not null)
        {
            trace?.Add(GroupStepKind.JoinExistingGroup, pdev, $"{GroupTrace.A(pdev)} already has a group: {GroupTrace.A(dev)} joins it");
            return g;
        }
        var info = ctx.AliasInfo(pdev);
        if (info?.Quirk is { } qname && trace is not null)
            trace.Add(info.FactsMissing ? GroupStepKind.UnknownFacts : GroupStepKind.AliasQuirk, pdev, $"{GroupTrace.A(pdev)}: {qname}");
        if (info?.FactsMissing == true) ctx.TouchedUnknown = true;
        for (var bus = pdev.Bus; !bus.IsRoot; bus = bus.Parent!)
        {
            var tmp = bus.Self;
            if (tmp is null) continue;
            var tinfo = ctx.AliasInfo(tmp);
            if (tinfo?.XlateRoot == true)
            {
                trace?.Add(GroupStepKind.XlateRoot, tmp, $"{GroupTrace.A(tmp)} is a translation root (BRIDGE_XLATE_ROOT): the alias walk stops there");
                break;
            }
            ushort rid;
            string what;
            if (tmp.IsPcie)
            {
                if (tmp.PcieType == PcieType.PciBridge) { rid = (ushort)(SubordinateNumber(tmp) << 8); what = "PCIe-to-PCI bridge"; }
                else if (tmp.PcieType == PcieType.PcieBridge) { rid = tmp.Address.RequesterId; what = "PCI-to-PCIe bridge"; }
                else continue;
            }
            else if (tinfo?.PcieBridgeAlias == true) { rid = (ushort)(SubordinateNumber(tmp) << 8); what = "PCI bridge hiding a PCIe capability (PCIE_BRIDGE_ALIAS)"; }
            else { rid = tmp.Address.RequesterId; what = "conventional PCI bridge"; }
            ctx.NoteUnknown(tmp);
            last = tmp;
            trace?.Add(GroupStepKind.BridgeAlias, tmp, $"{GroupTrace.A(dev)} is behind {what} {GroupTrace.A(tmp)}, whose requests carry {GroupTrace.Rid(rid)}: it groups with that bridge");
            g = groupOf(tmp);
            if (g is not null)
            {
                trace?.Add(GroupStepKind.JoinExistingGroup, tmp, $"{GroupTrace.A(tmp)} already has a group: {GroupTrace.A(dev)} joins it");
                return g;
            }
        }
        pdev = last;

        // 2-3. ACS climb from the topmost alias: stop where the path to the root is isolated.
        if (pdev.IsOnRootBus && trace is not null && pdev == dev)
            trace.Add(GroupStepKind.RootBus, dev, $"{GroupTrace.A(dev)} sits on the root bus: root-complex-internal isolation is assumed, only aliases and same-slot functions can share its group");
        for (var bus = pdev.Bus; !bus.IsRoot; bus = bus.Parent!)
        {
            var self = bus.Self;
            if (self is null) continue;
            if (AcsPathEnabled(self, null, ReqAcsFlags, ctx))
            {
                trace?.Add(GroupStepKind.AcsIsolated, self, $"{GroupTrace.A(self)} {DescribeIsolated(self, ctx)}, and the path above it to the root is isolated: the climb stops there");
                break;
            }
            if (trace is not null)
            {
                var failing = FirstFailing(self, ctx);
                string text = failing == self
                    ? $"{GroupTrace.A(self)} {DescribeNotIsolated(self, ctx)}, so everything below it shares its group"
                    : $"{GroupTrace.A(failing)} above {GroupTrace.A(self)} {DescribeNotIsolated(failing, ctx)}, so the path to the root is not isolated and everything below {GroupTrace.A(self)} shares its group";
                trace.Add(GroupStepKind.AcsNotIsolated, failing, text);
            }
            pdev = self;
            g = groupOf(pdev);
            if (g is not null)
            {
                trace?.Add(GroupStepKind.JoinExistingGroup, pdev, $"{GroupTrace.A(pdev)} already has a group: {GroupTrace.A(dev)} joins it");
                return g;
            }
        }

        if (trace is not null && pdev.IsMultifunction)
        {
            var dec = Evaluate(pdev, ReqAcsFlags, ctx);
            if (dec.Reason == AcsReason.Quirk && dec.Enabled)
                trace.Add(GroupStepKind.AcsQuirk, pdev, $"ACS quirk for {pdev.VendorId:x4}:{pdev.DeviceId:x4} applies, the {AcsQuirks.Describe(dec.Hook!.Value)}: the functions of {GroupTrace.A(pdev)} are isolated from each other");
            else if (dec.Enabled)
                trace.Add(GroupStepKind.AcsIsolated, pdev, $"{GroupTrace.A(pdev)} is a {Noun(pdev)} with ACS {(ctx.Acs.EffectiveControl(pdev) ?? AcsFlags.None).ToShortString()} enabled: its functions are isolated from each other");
        }

        // 4-5. Alias search and same-slot function search, sharing one visited-devfn bitmap.
        Span<ulong> visited = stackalloc ulong[4];
        g = GetPciAliasGroup(pdev, visited, ctx, groupOf, trace, dev);
        if (g is not null) return g;
        g = GetPciFunctionAliasGroup(pdev, visited, ctx, groupOf, trace, dev);
        if (g is not null) return g;

        trace?.Add(GroupStepKind.NewGroup, pdev, pdev == dev
            ? $"nothing else shares {GroupTrace.A(dev)}'s requester IDs or isolation domain: it gets a new group"
            : $"{GroupTrace.A(pdev)} is the isolation point and has no group yet: a new group is allocated for it");
        return allocate();
    }

    /// <summary><c>get_pci_alias_group</c>: the group of <paramref name="pdev"/> or of any device on its bus that it aliases or that aliases it.</summary>
    private static TGroup? GetPciAliasGroup<TGroup>(PciDevice pdev, Span<ulong> visited, GroupingContext ctx,
        Func<PciDevice, TGroup?> groupOf, GroupTrace? trace, PciDevice origin) where TGroup : class
    {
        int devfn = pdev.Address.Devfn;
        if ((visited[devfn >> 6] & (1UL << (devfn & 63))) != 0) return null; // test_and_set_bit
        visited[devfn >> 6] |= 1UL << (devfn & 63);
        var g = groupOf(pdev);
        if (g is not null)
        {
            if (pdev != origin)
                trace?.Add(GroupStepKind.JoinExistingGroup, pdev, $"{GroupTrace.A(pdev)} already has a group: {GroupTrace.A(origin)} joins it");
            return g;
        }
        // Only buses where some device carries an alias mask can hold DMA aliases (pci_devs_are_dma_aliases).
        if (!ctx.BusesWithAliases.Contains(pdev.Bus)) return null;
        var list = pdev.Bus.Devices;
        for (int k = 0; k < list.Count; k++)
        {
            var tmp = list[k];
            if (tmp == pdev) continue;
            if (!AreDmaAliases(pdev, tmp, ctx)) continue;
            trace?.Add(GroupStepKind.DmaAliasOfDevice, tmp, $"{GroupTrace.A(tmp)} and {GroupTrace.A(pdev)} are DMA aliases of each other: they share a group");
            g = GetPciAliasGroup(tmp, visited, ctx, groupOf, trace, origin);
            if (g is not null) return g;
            g = GetPciFunctionAliasGroup(tmp, visited, ctx, groupOf, trace, origin);
            if (g is not null) return g;
        }
        return null;
    }

    /// <summary><c>pci_devs_are_dma_aliases</c> for two devices on the same bus.</summary>
    public static bool AreDmaAliases(PciDevice a, PciDevice b, GroupingContext ctx)
    {
        if (ctx.AliasInfo(a) is { } ia && ia.HasAlias(b.Address.Devfn)) return true;
        if (ctx.AliasInfo(b) is { } ib && ib.HasAlias(a.Address.Devfn)) return true;
        return ctx.RealDmaDevice(a) == b || ctx.RealDmaDevice(b) == a;
    }

    /// <summary><c>get_pci_function_alias_group</c>: other functions of the slot that also lack ACS, when <paramref name="pdev"/> lacks it.</summary>
    private static TGroup? GetPciFunctionAliasGroup<TGroup>(PciDevice pdev, Span<ulong> visited, GroupingContext ctx,
        Func<PciDevice, TGroup?> groupOf, GroupTrace? trace, PciDevice origin) where TGroup : class
    {
        if (!pdev.IsMultifunction || AcsEnabled(pdev, ReqAcsFlags, ctx)) return null;
        var list = pdev.Bus.Devices;
        int pos = ctx.BusPos[pdev.ProbeIndex];
        int slot = pdev.Address.Device;
        // The slot's functions are consecutive in devfn order: walk back to the first, then forward.
        int start = pos;
        while (start > 0 && list[start - 1].Address.Device == slot) start--;
        for (int k = start; k < list.Count && list[k].Address.Device == slot; k++)
        {
            var tmp = list[k];
            if (tmp == pdev || AcsEnabled(tmp, ReqAcsFlags, ctx)) continue;
            var g = GetPciAliasGroup(tmp, visited, ctx, groupOf, trace: null, origin);
            if (g is not null)
            {
                if (trace is not null)
                {
                    trace.Add(GroupStepKind.SameSlotFunction, tmp, $"{GroupTrace.A(tmp)} is another function of the multifunction device {GroupTrace.A(pdev)}, and neither isolates its functions with ACS ({DescribeShort(pdev, ctx)})");
                    trace.Add(GroupStepKind.JoinExistingGroup, tmp, $"{GroupTrace.A(tmp)} already has a group: {GroupTrace.A(origin)} joins it");
                }
                return g;
            }
        }
        return null;
    }

    private static PciDevice FirstFailing(PciDevice start, GroupingContext ctx)
    {
        for (PciDevice? p = start; p is not null; p = p.IsOnRootBus ? null : p.Bus.Self)
        {
            if (!AcsEnabled(p, ReqAcsFlags, ctx)) return p;
        }
        return start;
    }

    /// <summary>Kernel-ish noun for a device's role: "root port", "switch downstream port", "multifunction endpoint"…</summary>
    public static string Noun(PciDevice d) => d.PcieType switch
    {
        PcieType.None => d.IsBridge ? "conventional PCI bridge" : "conventional PCI device",
        PcieType.RootPort => "root port",
        PcieType.Downstream => "switch downstream port",
        PcieType.Upstream => "switch upstream port",
        PcieType.PciBridge => "PCIe-to-PCI bridge",
        PcieType.PcieBridge => "PCI-to-PCIe bridge",
        PcieType.RcEnd => d.IsMultifunction ? "multifunction root-complex integrated endpoint" : "root-complex integrated endpoint",
        PcieType.RcEc => "root-complex event collector",
        PcieType.Endpoint => d.IsMultifunction ? "multifunction endpoint" : "endpoint",
        PcieType.LegacyEndpoint => d.IsMultifunction ? "multifunction legacy endpoint" : "legacy endpoint",
        _ => "device",
    };

    private static string FlagName(AcsFlags f) => f switch
    {
        AcsFlags.SV => "Source Validation",
        AcsFlags.TB => "Translation Blocking",
        AcsFlags.RR => "P2P Request Redirect",
        AcsFlags.CR => "P2P Completion Redirect",
        AcsFlags.UF => "Upstream Forwarding",
        AcsFlags.EC => "P2P Egress Control",
        AcsFlags.DT => "Direct Translated P2P",
        _ => f.ToString(),
    };

    private static string FlagNames(AcsFlags flags)
    {
        var parts = new List<string>(4);
        foreach (AcsFlags f in new[] { AcsFlags.SV, AcsFlags.TB, AcsFlags.RR, AcsFlags.CR, AcsFlags.UF, AcsFlags.EC, AcsFlags.DT })
        {
            if ((flags & f) != 0) parts.Add(FlagName(f));
        }
        return parts.Count switch { 0 => "none", 1 => parts[0], _ => string.Join(", ", parts[..^1]) + " and " + parts[^1] };
    }

    /// <summary>"is a root port without ACS P2P Request Redirect" style reason why a device does not isolate.</summary>
    public static string DescribeNotIsolated(PciDevice d, GroupingContext ctx)
    {
        var dec = Evaluate(d, ReqAcsFlags, ctx);
        string noun = Noun(d);
        string unknown = ctx.Acs.Unknown[d.ProbeIndex] ? " (its extended capabilities are not in the source, so this is a guess)" : "";
        return dec.Reason switch
        {
            AcsReason.Quirk when dec.Hook == AcsQuirkHook.IntelPch => $"is an Intel PCH {noun} ({d.VendorId:x4}:{d.DeviceId:x4}) whose ACS enable quirk did not take effect",
            AcsReason.Quirk => $"is a {noun} ({d.VendorId:x4}:{d.DeviceId:x4}) that the {AcsQuirks.Describe(dec.Hook!.Value)} declares not isolated",
            AcsReason.Conventional => $"is a {noun}: a shared PCI bus cannot isolate peer-to-peer traffic",
            AcsReason.BridgeNeverIsolates => $"is a {noun}: ACS never applies to it",
            AcsReason.NoAcsCapability => $"is a {noun} without an ACS capability{unknown}",
            AcsReason.FlagsMissing => $"is a {noun} without ACS {FlagNames(dec.Missing)} enabled{unknown}",
            _ => $"is a {noun} that does not isolate",
        };
    }

    private static string DescribeIsolated(PciDevice d, GroupingContext ctx)
    {
        var dec = Evaluate(d, ReqAcsFlags, ctx);
        return dec.Reason switch
        {
            AcsReason.Quirk => $"is a {Noun(d)} isolated by the {AcsQuirks.Describe(dec.Hook!.Value)} for {d.VendorId:x4}:{d.DeviceId:x4}",
            AcsReason.FlagsEnabled => $"is a {Noun(d)} with ACS {(ctx.Acs.EffectiveControl(d) ?? AcsFlags.None).ToShortString()} enabled",
            _ => $"is a {Noun(d)} that needs no ACS",
        };
    }

    private static string DescribeShort(PciDevice d, GroupingContext ctx)
    {
        var dec = Evaluate(d, ReqAcsFlags, ctx);
        return dec.Reason switch
        {
            AcsReason.Conventional => "conventional PCI",
            AcsReason.NoAcsCapability => "no ACS capability",
            AcsReason.FlagsMissing => $"missing {dec.Missing.ToShortString()}",
            AcsReason.Quirk => AcsQuirks.Describe(dec.Hook!.Value) + " says no",
            _ => "not isolated",
        };
    }
}
