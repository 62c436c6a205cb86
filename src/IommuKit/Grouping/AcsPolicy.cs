using IommuKit.Pci;

namespace IommuKit.Grouping;

/// <summary>The parsed out-of-tree <c>pcie_acs_override=</c> parameter (spec 2.7) and whether the kernel honours it.</summary>
public sealed class AcsOverridePolicy
{
    /// <summary>The patch keeps 16 slots but reports "full" at 15.</summary>
    public const int MaxIds = 15;

    /// <summary>The <c>downstream</c> token: every downstream port is treated as having ACS.</summary>
    public bool Downstream { get; private init; }
    /// <summary>The <c>multifunction</c> token: every multifunction device is treated as having ACS.</summary>
    public bool Multifunction { get; private init; }
    /// <summary>The <c>id:vvvv:dddd</c> tokens (vendor, device), at most <see cref="MaxIds"/>.</summary>
    public IReadOnlyList<(ushort Vendor, ushort Device)> Ids { get; private init; } = [];
    /// <summary>The parameter was given with at least one usable token.</summary>
    public bool Given => Downstream || Multifunction || Ids.Count > 0;
    /// <summary>The modelled kernel carries the patch, so the table gets its catch-all entry.</summary>
    public bool Honoured { get; private init; }
    /// <summary>Parse warnings and the "ignored by this kernel" note, one line each.</summary>
    public IReadOnlyList<string> Messages { get; private init; } = [];

    /// <summary>True when the override catch-all entry is in the quirk table.</summary>
    public bool Active => Given && Honoured;

    /// <summary>Parses every <c>pcie_acs_override=</c> occurrence (the patch's <c>pcie_acs_override_setup</c>: tokens matched by prefix).</summary>
    public static AcsOverridePolicy Parse(KernelCommandLine cmd, bool? kernelCarries, string? kernelRelease)
    {
        bool down = false, mf = false;
        var ids = new List<(ushort, ushort)>();
        var msgs = new List<string>();
        foreach (var tok in cmd.Options("pcie_acs_override"))
        {
            if (tok.StartsWith("downstream", StringComparison.Ordinal)) down = true;
            else if (tok.StartsWith("multifunction", StringComparison.Ordinal)) mf = true;
            else if (tok.StartsWith("id:", StringComparison.Ordinal))
            {
                var parts = tok[3..].Split(':');
                if (ids.Count >= MaxIds) { msgs.Add($"pcie_acs_override: too many ids, {tok} ignored"); continue; }
                if (parts.Length >= 2 && parts[0].Length is > 0 and <= 4 && parts[1].Length is > 0 and <= 4
                    && ushort.TryParse(parts[0], System.Globalization.NumberStyles.AllowHexSpecifier, null, out var v)
                    && ushort.TryParse(parts[1], System.Globalization.NumberStyles.AllowHexSpecifier, null, out var d))
                    ids.Add((v, d));
                else msgs.Add($"pcie_acs_override: cannot parse {tok}, ignored");
            }
            else msgs.Add($"pcie_acs_override: unknown option {tok}, ignored");
        }
        bool given = down || mf || ids.Count > 0;
        bool? carries = kernelCarries ?? KernelCarriesOverride(kernelRelease);
        bool honoured = carries ?? true;
        if (given && carries == false)
            msgs.Add($"pcie_acs_override= is ignored: kernel {kernelRelease ?? "(unknown)"} does not carry the out-of-tree ACS override patch (stock Debian/Ubuntu kernels do not; Proxmox -pve, zen, liquorix, tkg kernels do)");
        else if (given && carries is null)
            msgs.Add("pcie_acs_override= applied, but the source does not say whether its kernel carries the out-of-tree patch");
        if (given && honoured)
            msgs.Add("pcie_acs_override is active: it may allow non-IOMMU protected peer-to-peer DMA");
        return new AcsOverridePolicy { Downstream = down, Multifunction = mf, Ids = ids, Honoured = honoured, Messages = msgs };
    }

    /// <summary>
    /// Whether a kernel release carries the patch: Proxmox (<c>-pve</c>), zen, liquorix (<c>lqx</c>), tkg, xanmod and
    /// Unraid kernels do; stock Debian/Ubuntu/Fedora kernels do not. Null when the release is unknown.
    /// </summary>
    public static bool? KernelCarriesOverride(string? release)
    {
        if (string.IsNullOrEmpty(release)) return null;
        string r = release.ToLowerInvariant();
        foreach (var mark in s_carriers)
        {
            if (r.Contains(mark, StringComparison.Ordinal)) return true;
        }
        return false;
    }

    private static readonly string[] s_carriers = ["-pve", "zen", "liquorix", "lqx", "tkg", "xanmod", "unraid"];
}

/// <summary>
/// The effective ACS state of every device after the kernel's enabling step (spec 2.7, <c>pci_enable_acs</c>) under a
/// command line, plus the device flags the enable quirks set. Built once per grouping run; indexed by
/// <see cref="PciDevice.ProbeIndex"/>.
/// </summary>
/// <remarks>
/// "Firmware value" (<c>fw_ctrl</c>): when the source's own boot did not request ACS (IOMMU off), the control register
/// the snapshot shows is the firmware's. When it did, the kernel had already OR-ed in its standard bits, so the firmware
/// value is taken as the shown control minus the bits the standard enable sets (or, where the source's own
/// <c>config_acs</c>/<c>disable_acs_redir</c> matched, the shown control outside that mask). Firmware that itself set
/// SV/RR/CR/UF is indistinguishable and is modelled as having left them clear. See docs/grouping.md.
/// </remarks>
public sealed class AcsPolicy
{
    /// <summary>Offset of the Intel LPC RCBA register and the root-port MPC register (quirks.c).</summary>
    public const int IntelLpcRcbaReg = IntelPchRegisters.LpcRcba, IntelMpcReg = IntelPchRegisters.Mpc;
    /// <summary>MPC bit 26, IRBNCE, set by <c>pci_quirk_enable_intel_rp_mpc_acs</c>.</summary>
    public const uint IntelMpcIrbnce = 1u << 26;

    internal readonly bool[] HasAcs;
    internal readonly AcsFlags[] Cap;
    internal readonly AcsFlags[] Ctrl;
    /// <summary>Sunrise Point: 32-bit capability and control (at +8) as the kernel would leave them.</summary>
    internal readonly uint[] SptCap, SptCtrl;
    /// <summary><c>PCI_DEV_FLAGS_ACS_ENABLED_QUIRK</c>: the Intel PCH enable quirk succeeded.</summary>
    internal readonly bool[] PchEnabled;
    /// <summary>The ACS facts are not known (no extended config space seen for a PCIe function).</summary>
    internal readonly bool[] Unknown;
    /// <summary>Per device, what the enabling step did, for explanations (null when nothing notable).</summary>
    internal readonly string?[] Notes;

    /// <summary>The IOMMU is active, so the kernel calls <c>pci_request_acs()</c> and enables ACS (<c>pci_enable_acs</c>).</summary>
    public bool AcsRequested { get; }
    /// <summary>
    /// The kernel has <c>pci=config_acs=</c> and computes <c>disable_acs_redir</c> from the firmware value (Linux 6.11
    /// and later, "PCI: Extend ACS configurability"); older kernels clear RR|CR|EC from the enabled value and do not
    /// know <c>config_acs</c>. True when the release is unknown.
    /// </summary>
    public bool ConfigAcsSemantics { get; }
    /// <summary><c>pci=noats</c> was given: Translation Blocking is enabled too.</summary>
    public bool NoAts { get; }
    /// <summary>The parsed <c>pcie_acs_override=</c> parameter.</summary>
    public AcsOverridePolicy Override { get; }
    /// <summary>The kernel command line the policy was computed for.</summary>
    public KernelCommandLine CommandLine { get; }
    /// <summary>Messages from parsing the ACS options (invalid flags, parse errors), one line each.</summary>
    public IReadOnlyList<string> Messages => _messages;
    private readonly List<string> _messages = new();

    /// <summary>
    /// Computes the effective ACS for every device of <paramref name="machine"/> under <paramref name="cmd"/>, with the
    /// IOMMU <paramref name="iommuActive"/> (which makes the kernel call <c>pci_request_acs()</c>).
    /// </summary>
    public static AcsPolicy Create(Machine machine, KernelCommandLine cmd, bool iommuActive, GroupingOptions? options = null) =>
        new(machine, cmd, iommuActive, options ?? new GroupingOptions());

    private AcsPolicy(Machine machine, KernelCommandLine cmd, bool iommuActive, GroupingOptions options)
    {
        CommandLine = cmd;
        AcsRequested = iommuActive;
        var devices = machine.Topology.Devices;
        int n = devices.Count;
        HasAcs = new bool[n]; Cap = new AcsFlags[n]; Ctrl = new AcsFlags[n];
        SptCap = new uint[n]; SptCtrl = new uint[n]; PchEnabled = new bool[n]; Unknown = new bool[n]; Notes = new string?[n];

        Override = AcsOverridePolicy.Parse(cmd, options.KernelCarriesAcsOverride, machine.KernelRelease);
        NoAts = HasPciOption(cmd, "noats");
        ConfigAcsSemantics = !(TryParseRelease(machine.KernelRelease, out int major, out int minor) && (major < 6 || major == 6 && minor < 11));
        bool modern = ConfigAcsSemantics;
        var (redir, config) = PciAcsParams(cmd);
        if (!modern && config is not null)
            _messages.Add($"pci=config_acs= is ignored: kernel {machine.KernelRelease} predates it (Linux 6.11); the kernel logs \"PCI: Unknown option\"");
        if (!modern) config = null;

        // What the source's own boot did, to recover the firmware value.
        var srcCmd = KernelCommandLine.Parse(machine.CommandLine);
        bool srcRequested = options.SourceRequestedAcs || machine.KernelGroups is { Count: > 0 };
        bool srcNoAts = HasPciOption(srcCmd, "noats");
        var (srcRedir, srcConfig) = PciAcsParams(srcCmd);
        if (!modern) srcConfig = null;
        // The source's own command line is unknown (an lspci dump). If its boot evidently enabled ACS (the kernel's
        // groups are shown, or some device's ACS control has bits set), the controls it shows are what this kernel
        // programmed; keep them unless the modelled command line asks to change ACS. Without such evidence (a dump of
        // an IOMMU-off boot shows every control as firmware left it) the enabling step is replayed.
        bool keepShown = false;
        if (machine.CommandLine is null && AcsRequested && redir is null && config is null && !NoAts)
        {
            keepShown = srcRequested;
            for (int i = 0; i < n && !keepShown; i++)
                keepShown = devices[i].Facts.Acs is { Control: not AcsFlags.None };
        }

        var noExtCfg = new bool[n];
        for (int i = 0; i < n; i++)
        {
            var d = devices[i];
            var f = d.Facts;
            // pci_bridge_child_ext_cfg_accessible: below anything but a root/switch port (PCIe-to-PCI and conventional
            // bridges; PCI-X mode 2 bridges are not modelled) the kernel itself cannot read extended config space, so a
            // 256-byte config there is the whole truth (no ACS capability), not a missing fact. Parents probe first.
            if (d.Parent is { } up)
                noExtCfg[i] = noExtCfg[up.ProbeIndex] || up.PcieType is not (PcieType.RootPort or PcieType.Upstream or PcieType.Downstream);
            Unknown[i] = d.IsPcie ? f.Visibility != ConfigVisibility.Full && !noExtCfg[i] : f.Visibility == ConfigVisibility.HeaderOnly;
            bool spt = IsSpt(d);
            bool pch = IsPch(d);

            // Enable quirks (pci_dev_specific_enable_acs) run only when ACS was requested.
            if (pch && AcsRequested) PchEnabled[i] = DecidePchEnable(machine, d, srcRequested, out Notes[i]);

            if (f.Acs is not { } acs || noExtCfg[i]) continue;
            HasAcs[i] = true;
            bool tbWanted = NoAts || f.ExternalFacing || f.Untrusted;
            bool srcTb = srcNoAts || f.ExternalFacing || f.Untrusted;

            if (spt && f.Config is { } cfgSpt && acs.Offset >= 0 && cfgSpt.TryReadUInt32(acs.Offset + 4, out uint cap32) && cfgSpt.TryReadUInt32(acs.Offset + 8, out uint ctl32))
            {
                // Sunrise Point: the real control is the 32-bit register at +8 (pci_quirk_enable_intel_spt_pch_acs).
                uint std = SptStdBits(cap32, srcTb);
                uint fw32 = srcRequested ? ctl32 & ~std : ctl32;
                uint now = fw32;
                if (AcsRequested) now |= SptStdBits(cap32, tbWanted);
                // disable_acs_redir / config_acs on an SPT port: pci_quirk_disable_intel_spt_pch_acs_redir clears RR|CR|EC.
                if (ConfigAcsMatch(d, redir, (AcsFlags.RR | AcsFlags.CR | AcsFlags.EC), out _, out _, null) || ConfigAcsMatch(d, config, 0, out _, out _, null))
                    now &= ~(uint)(AcsFlags.RR | AcsFlags.CR | AcsFlags.EC);
                SptCap[i] = cap32; SptCtrl[i] = now;
                Cap[i] = (AcsFlags)(cap32 & 0x7f); Ctrl[i] = acs.Control; // standard register left untouched
                continue;
            }
            if (spt)
            {
                // No config bytes: the +8 register is not visible. Model the kernel's enable as having taken effect.
                SptCap[i] = (uint)acs.Capability;
                SptCtrl[i] = AcsRequested ? SptStdBits((uint)acs.Capability, tbWanted) : 0;
                Cap[i] = acs.Capability; Ctrl[i] = acs.Control;
                Notes[i] = "Sunrise Point ACS control (+8) not visible without config bytes: assumed as the kernel's enable leaves it";
                continue;
            }

            Cap[i] = acs.Capability;
            if (keepShown)
            {
                // The source's own command line is unknown (an lspci dump) and nothing asks to change ACS: the control
                // the source shows is what this kernel programmed, whatever options it booted with.
                Ctrl[i] = acs.Control;
                continue;
            }
            // Firmware value (see remarks).
            AcsFlags fw = acs.Control;
            bool quirkHandled = pch; // the PCH enable quirk returns 0 even when it fails: no standard enable then
            AcsFlags srcStd = srcRequested && !quirkHandled ? StdBits(acs.Capability, srcTb) : AcsFlags.None;
            if (ConfigAcsMatch(d, srcConfig, 0, out var m2, out _, null)) fw &= ~m2;
            else if (ConfigAcsMatch(d, srcRedir, AcsFlags.RR | AcsFlags.CR | AcsFlags.EC, out var m1, out _, null)) fw &= modern ? ~m1 : ~(m1 | srcStd);
            else fw &= ~srcStd;
            AcsFlags ctrl = fw;
            if (AcsRequested && !quirkHandled) ctrl |= StdBits(acs.Capability, tbWanted); // pci_std_enable_acs
            // Always applied, IOMMU or not: disable_acs_redir then config_acs (__pci_config_acs). From 6.11 both start
            // from fw_ctrl; before, pci_disable_acs_redir cleared RR|CR|EC from the value the kernel had just enabled.
            if (ConfigAcsMatch(d, redir, AcsFlags.RR | AcsFlags.CR | AcsFlags.EC, out var mask, out var flags, _messages))
            {
                if (modern)
                {
                    ctrl = (fw & ~mask) | (flags & mask);
                    Notes[i] = $"pci=disable_acs_redir= matches: ACS control set to {ctrl.ToShortString()} (bits outside RR|CR|EC revert to the firmware value {fw.ToShortString()})";
                }
                else
                {
                    ctrl &= ~mask;
                    Notes[i] = $"pci=disable_acs_redir= matches: RR|CR|EC cleared, ACS control {ctrl.ToShortString()}";
                }
            }
            if (ConfigAcsMatch(d, config, 0, out mask, out flags, _messages))
            {
                ctrl = (fw & ~mask) | (flags & mask);
                Notes[i] = $"pci=config_acs= matches: ACS control set to {ctrl.ToShortString()} (bits outside the mask {mask.ToShortString()} revert to the firmware value {fw.ToShortString()}, dropping the kernel's own enabling)";
            }
            Ctrl[i] = ctrl;
        }
    }

    /// <summary>Major and minor of a release string such as <c>6.1.0-56-amd64</c>.</summary>
    internal static bool TryParseRelease(string? release, out int major, out int minor)
    {
        major = minor = 0;
        if (string.IsNullOrEmpty(release)) return false;
        var m = System.Text.RegularExpressions.Regex.Match(release, @"^(\d{1,3})\.(\d{1,3})");
        return m.Success && int.TryParse(m.Groups[1].Value, out major) && int.TryParse(m.Groups[2].Value, out minor);
    }

    /// <summary>The effective ACS control of a device (standard register; for Sunrise Point the low bits of the +8 register), or null without ACS.</summary>
    public AcsFlags? EffectiveControl(PciDevice dev) =>
        !HasAcs[dev.ProbeIndex] ? null : IsSpt(dev) ? (AcsFlags)(SptCtrl[dev.ProbeIndex] & 0x7f) : Ctrl[dev.ProbeIndex];

    /// <summary>The ACS capability register of a device, or null without ACS.</summary>
    public AcsFlags? Capability(PciDevice dev) => HasAcs[dev.ProbeIndex] ? Cap[dev.ProbeIndex] : null;

    /// <summary>The Intel PCH enable quirk took effect for this root port (<c>PCI_DEV_FLAGS_ACS_ENABLED_QUIRK</c>).</summary>
    public bool IntelPchQuirkEnabled(PciDevice dev) => PchEnabled[dev.ProbeIndex];

    /// <summary>What the enabling step did to the device, when notable (config_acs applied, PCH quirk decision…).</summary>
    public string? Note(PciDevice dev) => Notes[dev.ProbeIndex];

    internal static bool IsSpt(PciDevice d) =>
        d.VendorId == AcsQuirks.VendorIntel && d.PcieType == PcieType.RootPort && AcsQuirks.IsIntelSptRootPortId(d.DeviceId);

    internal static bool IsPch(PciDevice d) =>
        d.VendorId == AcsQuirks.VendorIntel && d.PcieType == PcieType.RootPort && AcsQuirks.IsIntelPchRootPortId(d.DeviceId);

    /// <summary>pci_std_enable_acs: SV, RR, CR, UF where the capability lists them; TB for noats/external/untrusted.</summary>
    internal static AcsFlags StdBits(AcsFlags cap, bool tb) =>
        (cap & (AcsFlags.SV | AcsFlags.RR | AcsFlags.CR | AcsFlags.UF)) | (tb ? cap & AcsFlags.TB : AcsFlags.None);

    private static uint SptStdBits(uint cap, bool tb) => (uint)StdBits((AcsFlags)(cap & 0x7f), tb);

    /// <summary>
    /// The Intel PCH enable quirk (<c>pci_quirk_enable_intel_pch_acs</c>) succeeds when the LPC function 1f.0 on the
    /// same bus has RCBA enabled (config 0xF0 bit 0). From a snapshot: MPC bit 26 (IRBNCE) set means it ran; clear in
    /// a boot that requested ACS means it failed; otherwise the LPC's RCBA decides, and without config bytes we assume
    /// success (firmware normally enables RCBA). See docs/grouping.md.
    /// </summary>
    private static bool DecidePchEnable(Machine machine, PciDevice rp, bool srcRequested, out string note)
    {
        if (rp.Facts.Config is { } cfg && cfg.TryReadUInt32(IntelMpcReg, out uint mpc))
        {
            if ((mpc & IntelMpcIrbnce) != 0) { note = $"Intel PCH ACS enable quirk took effect (MPC 0x{IntelMpcReg:X2} bit 26 IRBNCE is set)"; return true; }
            if (srcRequested) { note = $"Intel PCH ACS enable quirk failed in the source's boot (MPC bit 26 IRBNCE clear with an IOMMU active)"; return false; }
        }
        var lpcAddr = PciAddress.FromDevfn(rp.Address.Domain, rp.Address.Bus, (31 << 3) | 0);
        if (machine.Topology.Find(lpcAddr) is { } lpc)
        {
            if (lpc.Facts.Config is { } lcfg && lcfg.TryReadUInt32(IntelLpcRcbaReg, out uint rcba))
            {
                bool ok = (rcba & 1) != 0;
                note = ok ? "Intel PCH ACS enable quirk would succeed (LPC 1f.0 RCBA enabled)" : "Intel PCH ACS enable quirk fails: LPC 1f.0 RCBA (0xF0 bit 0) is not enabled";
                return ok;
            }
            note = "Intel PCH ACS enable quirk assumed to succeed (RCBA and MPC not visible in the source)";
            return true;
        }
        note = "Intel PCH ACS enable quirk fails: no LPC function at 1f.0 on the root port's bus";
        return false;
    }

    internal static bool HasPciOption(KernelCommandLine cmd, string opt)
    {
        foreach (var o in cmd.Options("pci"))
        {
            if (o == opt) return true;
        }
        return false;
    }

    /// <summary>The last <c>pci=disable_acs_redir=</c> and <c>pci=config_acs=</c> values (pci_setup splits on ',').</summary>
    internal static (string? Redir, string? Config) PciAcsParams(KernelCommandLine cmd)
    {
        string? redir = null, config = null;
        foreach (var o in cmd.Options("pci"))
        {
            if (o.StartsWith("disable_acs_redir=", StringComparison.Ordinal)) redir = o["disable_acs_redir=".Length..];
            else if (o.StartsWith("config_acs=", StringComparison.Ordinal)) config = o["config_acs=".Length..];
        }
        // Every device parses these lists; a value longer than the kernel's whole command line (x86 COMMAND_LINE_SIZE)
        // could not have been booted and would cost devices x entries: keep only what a kernel could have seen.
        if (redir is { Length: > MaxAcsParamChars }) redir = redir[..MaxAcsParamChars];
        if (config is { Length: > MaxAcsParamChars }) config = config[..MaxAcsParamChars];
        return (redir, config);
    }

    /// <summary>x86 <c>COMMAND_LINE_SIZE</c>: no ACS parameter value can be longer.</summary>
    public const int MaxAcsParamChars = 2048;

    /// <summary>
    /// <c>__pci_config_acs</c>: walks the entries of <paramref name="p"/> and says whether one matches <paramref name="dev"/>,
    /// with its mask and flags. <paramref name="fixedMask"/> non-zero is the <c>disable_acs_redir</c> form (no flags
    /// prefix, flags 0). Parse errors abandon the parameter, as the kernel does, and are reported to <paramref name="messages"/>.
    /// </summary>
    internal static bool ConfigAcsMatch(PciDevice dev, string? p, AcsFlags fixedMask, out AcsFlags mask, out AcsFlags flags, List<string>? messages)
    {
        mask = fixedMask; flags = AcsFlags.None;
        if (string.IsNullOrEmpty(p)) return false;
        int pos = 0;
        int ret = 0;
        while (pos < p.Length)
        {
            if (fixedMask == 0)
            {
                int at = p.IndexOf('@', pos);
                if (at < 0) { Report(messages, $"pci=config_acs: ACS Flags missing in \"{p}\""); return false; }
                uint m = 0, fl = 0;
                int shift = 0;
                for (int e = at - 1; e >= pos; e--)
                {
                    char c = p[e];
                    if (c == '0') { if (shift < 31) m |= 1u << shift; shift++; }
                    else if (c == '1') { if (shift < 31) { m |= 1u << shift; fl |= 1u << shift; } shift++; }
                    else if (c is 'x' or 'X') shift++;
                    else { Report(messages, $"pci=config_acs: Invalid ACS flags \"{p[pos..at]}\"... Ignoring"); return false; }
                }
                if (shift > 31) m |= 0x80000000u;
                mask = (AcsFlags)(ushort)m; flags = (AcsFlags)(ushort)fl;
                if ((m & ~(uint)AcsFlags.All) != 0) { Report(messages, $"pci=config_acs: Invalid ACS flags specified \"{p[pos..at]}\""); return false; }
                pos = at + 1;
            }
            ret = PciDevStrMatch.Match(dev, p, pos, out int end);
            if (ret < 0) { Report(messages, "PCI: Can't parse ACS command line parameter"); return false; }
            if (ret == 1) break;
            pos = end;
            if (pos >= p.Length || (p[pos] != ';' && p[pos] != ',')) break;
            pos++;
        }
        if (ret != 1) return false;
        if (fixedMask != 0) flags = AcsFlags.None;
        return true;
    }

    private static void Report(List<string>? messages, string msg)
    {
        if (messages is not null && !messages.Contains(msg)) messages.Add(msg);
    }
}
