namespace IommuKit.Host;

/// <summary>Why <see cref="IommuActivation"/> decided as it did (worded by <see cref="Wording"/>).</summary>
public enum ActivationReason
{
    /// <summary>A prediction was asked for: the IOMMU is taken as on.</summary>
    Forced,
    /// <summary>x86 <c>iommu=off</c> (<c>no_iommu</c>).</summary>
    IommuOff,
    /// <summary><c>intel_iommu=off</c>.</summary>
    IntelOff,
    /// <summary><c>amd_iommu=off</c>.</summary>
    AmdOff,
    /// <summary>VT-d is on because <c>intel_iommu=on</c> was given.</summary>
    IntelOnByOption,
    /// <summary>VT-d is on: the kernel enables it by default when a DMAR unit exists (Debian and most distributions).</summary>
    IntelOnByDefault,
    /// <summary>AMD-Vi is on (an IVRS table is present).</summary>
    AmdOn,
    /// <summary>An IOMMU unit of another kind is registered.</summary>
    UnitRegistered,
    /// <summary>The source's own command line switched the IOMMU off; the hardware is assumed to have one.</summary>
    SwitchedOffInSource,
    /// <summary>The source shows the kernel's IOMMU groups.</summary>
    KernelGroupsShown,
    /// <summary>The source shows every registered unit and there is none (or the kernel made no groups).</summary>
    NoUnit,
    /// <summary>The source cannot say (an lspci dump without group lines): a prediction as if it were on.</summary>
    Unknown,
}

/// <summary>Whether an IOMMU driver would be active (and call <c>pci_request_acs()</c>) for a machine and command line.</summary>
/// <param name="Active">An IOMMU driver registers units and groups devices.</param>
/// <param name="Assumed">The source did not say (an lspci dump without units or group lines): <see cref="Active"/> is a guess.</param>
/// <param name="Kind">The IOMMU hardware believed present (Unknown when none or not known).</param>
/// <param name="Why">What decided it.</param>
/// <param name="Unit">For <see cref="ActivationReason.UnitRegistered"/>: the unit's name.</param>
public sealed record IommuActivation(bool Active, bool Assumed, IommuKind Kind, ActivationReason Why, string? Unit = null)
{
    /// <summary>One line saying why, naming the option that decided (<see cref="Wording.Activation"/>).</summary>
    public string Reason => Wording.Activation(this);

    /// <summary>
    /// The one decision of "is an IOMMU active, which kind", from the machine's units, kernel groups and provenance
    /// (never from a file name) and the switches of <paramref name="cmd"/> (<see cref="IommuSwitches"/>). When no unit
    /// registered, the source's own command line tells whether it was switched off (then the hardware is assumed).
    /// </summary>
    public static IommuActivation Decide(Machine machine, KernelCommandLine cmd, bool forceActive = false)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(cmd);
        var sourceSwitches = IommuSwitches.Parse(KernelCommandLine.Parse(machine.CommandLine));
        var switches = IommuSwitches.Parse(cmd);
        IommuKind kind = machine.IommuKind;
        bool hasUnits = machine.IommuUnits.Count > 0;
        bool assumedHardware = false;
        if (!hasUnits)
        {
            // No unit registered: either there is no IOMMU, or the source's own command line switched it off.
            if (sourceSwitches.IntelOff) { kind = IommuKind.Intel; assumedHardware = true; }
            else if (sourceSwitches.AmdOff) { kind = IommuKind.Amd; assumedHardware = true; }
            else if (sourceSwitches.IommuOff && machine.KernelGroups is { Count: 0 }) { kind = IommuKind.Unknown; assumedHardware = true; }
        }

        if (forceActive) return new(true, false, kind, ActivationReason.Forced);

        if (switches.IommuOff && kind is IommuKind.Intel or IommuKind.Amd or IommuKind.Unknown
            && (hasUnits || assumedHardware || machine.KernelGroups is { Count: > 0 }))
            return new(false, false, kind, ActivationReason.IommuOff);

        switch (kind)
        {
            case IommuKind.Intel when hasUnits || assumedHardware:
                if (switches.IntelOff) return new(false, false, kind, ActivationReason.IntelOff);
                return new(true, false, kind, cmd.Has("intel_iommu") ? ActivationReason.IntelOnByOption : ActivationReason.IntelOnByDefault);
            case IommuKind.Amd when hasUnits || assumedHardware:
                if (switches.AmdOff) return new(false, false, kind, ActivationReason.AmdOff);
                return new(true, false, kind, ActivationReason.AmdOn);
        }
        if (hasUnits) return new(true, false, kind, ActivationReason.UnitRegistered, machine.IommuUnits[0].Name);
        if (assumedHardware) return new(true, true, kind, ActivationReason.SwitchedOffInSource);
        if (machine.KernelGroups is { Count: > 0 }) return new(true, false, kind, ActivationReason.KernelGroupsShown);
        if (machine.KernelGroups is { Count: 0 } || ShowsEveryUnit(machine))
            return new(false, false, IommuKind.Unknown, ActivationReason.NoUnit);
        return new(true, true, IommuKind.Unknown, ActivationReason.Unknown);
    }

    /// <summary>
    /// A source that would show a registered unit if there were one: sysfs-shaped sources always (a live host, a
    /// directory root, a snapshot); a JSON machine that records the kernel's release and its (empty) groups.
    /// </summary>
    private static bool ShowsEveryUnit(Machine m) =>
        m.Provenance == MachineProvenance.Sysfs || (m.KernelRelease is not null && m.KernelGroups is not null);
}
