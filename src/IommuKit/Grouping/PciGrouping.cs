using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>Why <see cref="PciGrouping.AcsEnabled"/> answered as it did.</summary>
public enum AcsReason
{
    /// <summary>A device-specific ACS quirk (<c>pci_dev_specific_acs_enabled</c>) decided.</summary>
    Quirk,
    /// <summary>Conventional PCI/PCI-X: not isolated.</summary>
    Conventional,
    /// <summary>A PCIe-to-PCI, PCI-to-PCIe bridge or event collector: never isolates.</summary>
    BridgeNeverIsolates,
    /// <summary>The ACS capability has every requested flag enabled.</summary>
    FlagsEnabled,
    /// <summary>The ACS capability lacks some requested flags (see <see cref="AcsDecision.Missing"/>).</summary>
    FlagsMissing,
    /// <summary>A root/downstream port or multifunction device has no ACS capability.</summary>
    NoAcsCapability,
    /// <summary>A single-function endpoint, upstream port or RC integrated endpoint: isolated without ACS.</summary>
    SingleFunction,
    /// <summary>Another single-function PCIe type: nothing applies, treated as isolated.</summary>
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
    internal static int QuirkAcsEnabled(PciDevice dev, AcsFlags flags, GroupingContext ctx, out AcsQuirkHook? hook)
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
    /// <c>pci_for_each_dma_alias(pdev, fn)</c> (spec 2.2): visits every (device, requester ID) that DMA from
    /// <paramref name="pdev"/> may carry at the IOMMU, in the kernel's order: the real DMA device itself, its alias-quirk
    /// devfns, then each bridge up the tree that takes ownership of the requests (PCIe-to-PCI and PCI-to-PCIe bridges,
    /// conventional bridges), stopping at a BRIDGE_XLATE_ROOT bridge. Stops at the first non-zero return of the
    /// visitor and returns it. This is the one alias walk: grouping (<see cref="DeviceGroup{TGroup}"/>) and the
    /// hardware contexts both use it, as Linux's <c>pci_device_group</c> and the drivers reuse it.
    /// </summary>
    public static int ForEachDmaAlias<TVisitor>(PciDevice pdev, GroupingContext ctx, ref TVisitor visitor) where TVisitor : IDmaAliasVisitor
    {
        pdev = ctx.RealDmaDevice(pdev);
        int ret = visitor.Visit(pdev, pdev.Address.RequesterId, DmaAliasVia.Self);
        if (ret != 0) return ret;
        if (ctx.AliasInfo(pdev)?.Mask is { } mask)
        {
            for (int devfn = 0; devfn < 256; devfn++)
            {
                if ((mask[devfn >> 6] & (1UL << (devfn & 63))) == 0) continue;
                ret = visitor.Visit(pdev, (ushort)((pdev.Address.Bus << 8) | devfn), DmaAliasVia.AliasQuirk);
                if (ret != 0) return ret;
            }
        }
        for (var bus = pdev.Bus; !bus.IsRoot; bus = bus.Parent!)
        {
            var tmp = bus.Self;
            if (tmp is null) continue; // virtual bus
            if (ctx.AliasInfo(tmp)?.XlateRoot == true)
            {
                visitor.TranslationRoot(tmp);
                return ret;
            }
            DmaAliasVia via;
            ushort rid;
            if (tmp.IsPcie)
            {
                // PCIe-to-PCI bridges own requests with the secondary bus number and devfn 0 (PCI-X "bridge
                // ownership", PCIe-to-PCI/PCI-X Bridge spec 2.3); PCI-to-PCIe bridges with their own ID; other PCIe
                // functions forward requests unchanged.
                if (tmp.PcieType == PcieType.PciBridge) { via = DmaAliasVia.PciBridge; rid = (ushort)(SubordinateNumber(tmp) << 8); }
                else if (tmp.PcieType == PcieType.PcieBridge) { via = DmaAliasVia.PcieBridge; rid = tmp.Address.RequesterId; }
                else continue;
            }
            else if (ctx.AliasInfo(tmp)?.PcieBridgeAlias == true) { via = DmaAliasVia.HiddenPcieBridge; rid = (ushort)(SubordinateNumber(tmp) << 8); }
            else { via = DmaAliasVia.ConventionalBridge; rid = tmp.Address.RequesterId; }
            ret = visitor.Visit(tmp, rid, via);
            if (ret != 0) return ret;
        }
        return ret;
    }

    /// <summary><see cref="ForEachDmaAlias{TVisitor}"/> with a delegate: <paramref name="fn"/> gets each (device, requester ID).</summary>
    public static int ForEachDmaAlias(PciDevice pdev, GroupingContext ctx, Func<PciDevice, ushort, int> fn)
    {
        var v = new DelegateAliasVisitor(fn);
        return ForEachDmaAlias(pdev, ctx, ref v);
    }

    private readonly struct DelegateAliasVisitor(Func<PciDevice, ushort, int> fn) : IDmaAliasVisitor
    {
        public int Visit(PciDevice device, ushort requesterId, DmaAliasVia via) => fn(device, requesterId);
        public void TranslationRoot(PciDevice bridge) { }
    }

    private static int SubordinateNumber(PciDevice bridge) =>
        bridge.Subordinate?.Number ?? bridge.Facts.BridgeBuses?.Secondary ?? 0;

    /// <summary>
    /// <c>get_pci_alias_or_group</c> as a visitor of the alias walk: remembers the last device visited and stops at the
    /// first one that already has a group; records the bridges it passes in the trace.
    /// </summary>
    private struct AliasOrGroup<TGroup>(PciDevice origin, GroupingContext ctx, Func<PciDevice, TGroup?> groupOf, GroupTrace? trace) : IDmaAliasVisitor
        where TGroup : class
    {
        private readonly PciDevice dev = origin;
        public PciDevice Last = origin;
        public TGroup? Group;

        public int Visit(PciDevice device, ushort requesterId, DmaAliasVia via)
        {
            if (via is DmaAliasVia.AliasQuirk) return 0; // same device: its group was asked for at DmaAliasVia.Self
            if (via is not DmaAliasVia.Self)
            {
                ctx.NoteUnknown(device);
                trace?.Add(new GroupStep(GroupStepKind.BridgeAlias, device.Address) { Origin = dev.Address, RequesterId = requesterId, Via = via });
            }
            Last = device;
            Group = groupOf(device);
            if (Group is null) return 0;
            trace?.Add(new GroupStep(GroupStepKind.JoinExistingGroup, device.Address) { Origin = dev.Address });
            return 1;
        }

        public readonly void TranslationRoot(PciDevice bridge) => trace?.Add(new GroupStep(GroupStepKind.XlateRoot, bridge.Address));
    }

    /// <summary>
    /// <c>pci_device_group(dev)</c> (spec 2.4): the existing group <paramref name="dev"/> must join, found through
    /// <paramref name="groupOf"/>, or a new one from <paramref name="allocate"/>. Decisions go to <paramref name="trace"/>
    /// as typed steps.
    /// </summary>
    /// <typeparam name="TGroup">The caller's group type.</typeparam>
    /// <param name="groupOf">The group a device already belongs to, or null (the kernel's <c>iommu_group_get</c>).</param>
    /// <param name="allocate">Allocates a new group (the kernel's <c>iommu_group_alloc</c>).</param>
    public static TGroup DeviceGroup<TGroup>(PciDevice dev, GroupingContext ctx, Func<PciDevice, TGroup?> groupOf,
        Func<TGroup> allocate, GroupTrace? trace = null) where TGroup : class
    {
        if (ctx.PlacementUnknown[dev.ProbeIndex])
        {
            ctx.NoteUnknown(dev);
            trace?.Add(new GroupStep(GroupStepKind.UnknownFacts, dev.Address)
            {
                Placement = dev.IsBridge ? PlacementUnknown.BridgeRangeUnknown : PlacementUnknown.BusUnclaimed,
            });
        }
        PciDevice real = ctx.RealDmaDevice(dev);
        if (real != dev) trace?.Add(new GroupStep(GroupStepKind.RealDmaDevice, dev.Address) { Origin = real.Address });
        if (ctx.AliasInfo(real) is { } info && (info.Quirk is not null || info.FactsMissing) && groupOf(real) is null)
        {
            if (info.Quirk is { } qname)
                trace?.Add(new GroupStep(info.FactsMissing ? GroupStepKind.UnknownFacts : GroupStepKind.AliasQuirk, real.Address) { Detail = qname });
            if (info.FactsMissing) ctx.MarkUnknown(real);
        }

        // 1. The alias walk (get_pci_alias_or_group over pci_for_each_dma_alias): the first visited device with a
        //    group wins; otherwise the topmost alias is where the isolation search starts.
        var walk = new AliasOrGroup<TGroup>(dev, ctx, groupOf, trace);
        if (ForEachDmaAlias(dev, ctx, ref walk) != 0) return walk.Group!;
        PciDevice pdev = walk.Last;

        // 2-3. ACS climb from the topmost alias: stop where the path to the root is isolated.
        if (pdev.IsOnRootBus && trace is not null && pdev == dev)
            trace.Add(new GroupStep(GroupStepKind.RootBus, dev.Address));
        for (var bus = pdev.Bus; !bus.IsRoot; bus = bus.Parent!)
        {
            var self = bus.Self;
            if (self is null) continue;
            if (AcsPathEnabled(self, null, ReqAcsFlags, ctx))
            {
                trace?.Add(new GroupStep(GroupStepKind.AcsIsolated, self.Address));
                break;
            }
            if (trace is not null)
            {
                var failing = FirstFailing(self, ctx);
                trace.Add(new GroupStep(GroupStepKind.AcsNotIsolated, failing.Address) { Below = failing == self ? null : self.Address });
            }
            pdev = self;
            var g = groupOf(pdev);
            if (g is not null)
            {
                trace?.Add(new GroupStep(GroupStepKind.JoinExistingGroup, pdev.Address) { Origin = dev.Address });
                return g;
            }
        }

        if (trace is not null && pdev.IsMultifunction)
        {
            var dec = Evaluate(pdev, ReqAcsFlags, ctx);
            if (dec.Enabled)
                trace.Add(new GroupStep(dec.Reason == AcsReason.Quirk ? GroupStepKind.AcsQuirk : GroupStepKind.AcsIsolated, pdev.Address) { Functions = true });
        }

        // 4-5. Alias search and same-slot function search, sharing one visited-devfn bitmap.
        Span<ulong> visited = stackalloc ulong[4];
        var found = GetPciAliasGroup(pdev, visited, ctx, groupOf, trace, dev);
        if (found is not null) return found;
        found = GetPciFunctionAliasGroup(pdev, visited, ctx, groupOf, trace, dev);
        if (found is not null) return found;

        trace?.Add(new GroupStep(GroupStepKind.NewGroup, pdev.Address) { Origin = dev.Address });
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
            if (pdev != origin) trace?.Add(new GroupStep(GroupStepKind.JoinExistingGroup, pdev.Address) { Origin = origin.Address });
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
            trace?.Add(new GroupStep(GroupStepKind.DmaAliasOfDevice, tmp.Address) { Origin = pdev.Address });
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
                trace?.Add(new GroupStep(GroupStepKind.SameSlotFunction, tmp.Address) { Origin = pdev.Address });
                trace?.Add(new GroupStep(GroupStepKind.JoinExistingGroup, tmp.Address) { Origin = origin.Address });
                return g;
            }
        }
        return null;
    }

    /// <summary>The first device from <paramref name="start"/> up to the root that does not pass <see cref="AcsEnabled"/>.</summary>
    public static PciDevice FirstFailing(PciDevice start, GroupingContext ctx)
    {
        for (PciDevice? p = start; p is not null; p = p.IsOnRootBus ? null : p.Bus.Self)
        {
            if (!AcsEnabled(p, ReqAcsFlags, ctx)) return p;
        }
        return start;
    }
}

/// <summary>How a requester ID visited by <see cref="PciGrouping.ForEachDmaAlias{TVisitor}"/> arises.</summary>
public enum DmaAliasVia
{
    /// <summary>The device's own requester ID.</summary>
    Self,
    /// <summary>A DMA alias quirk's extra devfn on the device's bus (spec 2.8).</summary>
    AliasQuirk,
    /// <summary>A PCIe-to-PCI bridge: secondary bus, devfn 0.</summary>
    PciBridge,
    /// <summary>A PCI-to-PCIe bridge: its own ID.</summary>
    PcieBridge,
    /// <summary>A conventional PCI bridge hiding its PCIe capability (PCI_DEV_FLAGS_PCIE_BRIDGE_ALIAS): secondary bus, devfn 0.</summary>
    HiddenPcieBridge,
    /// <summary>A conventional PCI bridge: its own ID.</summary>
    ConventionalBridge,
}

/// <summary>The callback of <see cref="PciGrouping.ForEachDmaAlias{TVisitor}"/> (a struct, so the walk does not allocate).</summary>
public interface IDmaAliasVisitor
{
    /// <summary>One (device, requester ID); a non-zero return stops the walk and is returned by it.</summary>
    int Visit(PciDevice device, ushort requesterId, DmaAliasVia via);

    /// <summary>The walk stops at <paramref name="bridge"/>, a BRIDGE_XLATE_ROOT bridge.</summary>
    void TranslationRoot(PciDevice bridge);
}
