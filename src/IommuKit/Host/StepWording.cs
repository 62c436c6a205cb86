using IommuKit.Grouping;
using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>One step of an explanation: the mechanism's typed fact and its sentence.</summary>
/// <param name="Kind">The rule.</param>
/// <param name="Device">The device the step is about.</param>
/// <param name="Text">The sentence (<see cref="Wording.Step"/>).</param>
/// <param name="Fact">The typed step the grouping mechanism emitted.</param>
public sealed record ExplainStep(GroupStepKind Kind, PciAddress Device, string Text, GroupStep Fact);

public static partial class Wording
{
    /// <summary>Short address for sentences: <c>00:1c.4</c> in domain 0, the full form elsewhere.</summary>
    private static string A(PciAddress a) => a.ToShortString();

    /// <summary>A requester ID as <c>bb:dd.f</c>.</summary>
    private static string Rid(ushort rid) => $"{rid >> 8:x2}:{(rid >> 3) & 0x1f:x2}.{rid & 7:x}";

    /// <summary>The sentence for one grouping step over the context it was computed in.</summary>
    /// <param name="topology">The topology the step's addresses belong to.</param>
    /// <param name="context">The grouping context the step was computed in (null only for <see cref="GroupStepKind.NoGroup"/>).</param>
    /// <param name="activation">The activation decision (for <see cref="NoGroupReason.IommuOff"/>).</param>
    public static string Step(GroupStep s, PciTopology topology, GroupingContext? context, IommuActivation activation)
    {
        var topo = topology;
        GroupingContext ctx = context!;
        PciDevice D(PciAddress a) => topo[a];
        string who = A(s.Device);
        string origin = s.Origin is { } o ? A(o) : who;
        switch (s.Kind)
        {
            case GroupStepKind.NoGroup:
                return s.NoGroupWhy == NoGroupReason.IommuOff
                    ? $"no IOMMU is active: {activation.Reason}"
                    : s.Detail is { } firmware ? $"{who}: {firmware}" // the firmware rule that leaves it out (issue 9)
                    : $"{who} is not managed by any IOMMU unit (no iommu link, absent from every unit's device list): the kernel gives it no group";
            case GroupStepKind.UnknownFacts when s.Placement == PlacementUnknown.BridgeRangeUnknown:
                return $"{who} is a bridge whose bus range the source does not show: what sits below it is unknown";
            case GroupStepKind.UnknownFacts when s.Placement == PlacementUnknown.BusUnclaimed:
                return $"{who} is on bus {D(s.Device).Bus} which no bridge in the source claims: where it really sits is unknown";
            case GroupStepKind.UnknownFacts when s.Others is { } others:
                return $"facts are missing for {string.Join(", ", others.Select(A))} (capabilities or bridge bus ranges not in the source, e.g. lspci run without root or without -v): this placement is a guess";
            case GroupStepKind.UnknownFacts:
            case GroupStepKind.AliasQuirk:
                return $"{who}: {s.Detail}";
            case GroupStepKind.AcsSetting:
                return $"{who}: {s.Detail}";
            case GroupStepKind.RealDmaDevice:
                return $"{who} sits behind the VMD controller {origin}, whose requester ID its DMA carries";
            case GroupStepKind.XlateRoot:
                return $"{who} is a translation root (BRIDGE_XLATE_ROOT): the alias walk stops there";
            case GroupStepKind.BridgeAlias:
                return $"{origin} is behind {BridgeWhat(s.Via)} {who}, whose requests carry {Rid(s.RequesterId ?? 0)}: it groups with that bridge";
            case GroupStepKind.RootBus:
                return $"{who} sits on the root bus: root-complex-internal isolation is assumed, only aliases and same-slot functions can share its group";
            case GroupStepKind.AcsIsolated when s.Functions:
            {
                var d = D(s.Device);
                return $"{who} is a {Noun(d)} with ACS {(ctx.Acs.EffectiveControl(d) ?? AcsFlags.None).ToShortString()} enabled: its functions are isolated from each other";
            }
            case GroupStepKind.AcsQuirk:
            {
                var d = D(s.Device);
                var dec = PciGrouping.Evaluate(d, PciGrouping.ReqAcsFlags, ctx);
                return $"ACS quirk for {d.VendorId:x4}:{d.DeviceId:x4} applies, the {AcsQuirks.Describe(dec.Hook!.Value)}: the functions of {who} are isolated from each other";
            }
            case GroupStepKind.AcsIsolated:
                return $"{who} {Isolated(D(s.Device), ctx)}, and the path above it to the root is isolated: the climb stops there";
            case GroupStepKind.AcsNotIsolated:
                return s.Below is { } below
                    ? $"{who} above {A(below)} {NotIsolated(D(s.Device), ctx)}, so the path to the root is not isolated and everything below {A(below)} shares its group"
                    : $"{who} {NotIsolated(D(s.Device), ctx)}, so everything below it shares its group";
            case GroupStepKind.DmaAliasOfDevice:
                return $"{who} and {origin} are DMA aliases of each other: they share a group";
            case GroupStepKind.SameSlotFunction:
                return $"{who} is another function of the multifunction device {origin}, and neither isolates its functions with ACS ({ShortWhy(D(s.Origin!.Value), ctx)})";
            case GroupStepKind.JoinExistingGroup when s.Group is { } gid:
                return $"{who} is in group {gid}";
            case GroupStepKind.JoinExistingGroup:
                return $"{who} already has a group: {origin} joins it";
            case GroupStepKind.NewGroup when s.Group is { } nid:
                return $"{who} is the first member of group {nid}";
            case GroupStepKind.NewGroup:
                return s.Device == s.Origin || s.Origin is null
                    ? $"nothing else shares {who}'s requester IDs or isolation domain: it gets a new group"
                    : $"{who} is the isolation point and has no group yet: a new group is allocated for it";
            default:
                return $"{who}: {s.Kind}";
        }
    }

    private static string BridgeWhat(DmaAliasVia via) => via switch
    {
        DmaAliasVia.PciBridge => "PCIe-to-PCI bridge",
        DmaAliasVia.PcieBridge => "PCI-to-PCIe bridge",
        DmaAliasVia.HiddenPcieBridge => "PCI bridge hiding a PCIe capability (PCIE_BRIDGE_ALIAS)",
        _ => "conventional PCI bridge",
    };

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
    public static string NotIsolated(PciDevice d, GroupingContext ctx)
    {
        var dec = PciGrouping.Evaluate(d, PciGrouping.ReqAcsFlags, ctx);
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

    private static string Isolated(PciDevice d, GroupingContext ctx)
    {
        var dec = PciGrouping.Evaluate(d, PciGrouping.ReqAcsFlags, ctx);
        return dec.Reason switch
        {
            AcsReason.Quirk => $"is a {Noun(d)} isolated by the {AcsQuirks.Describe(dec.Hook!.Value)} for {d.VendorId:x4}:{d.DeviceId:x4}",
            AcsReason.FlagsEnabled => $"is a {Noun(d)} with ACS {(ctx.Acs.EffectiveControl(d) ?? AcsFlags.None).ToShortString()} enabled",
            _ => $"is a {Noun(d)} that needs no ACS",
        };
    }

    private static string ShortWhy(PciDevice d, GroupingContext ctx)
    {
        var dec = PciGrouping.Evaluate(d, PciGrouping.ReqAcsFlags, ctx);
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
