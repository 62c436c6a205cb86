namespace IommuKit.Grouping;

/// <summary>Whether an IOMMU driver would be active (and call <c>pci_request_acs()</c>) for a machine and command line.</summary>
/// <param name="Active">An IOMMU driver registers units and groups devices.</param>
/// <param name="Assumed">The source did not say (an lspci dump without units or group lines): <see cref="Active"/> is a guess.</param>
/// <param name="Kind">The IOMMU hardware believed present (Unknown when none or not known).</param>
/// <param name="Reason">One line saying why, naming the option that decided.</param>
public sealed record IommuActivation(bool Active, bool Assumed, IommuKind Kind, string Reason)
{
    /// <summary>
    /// Decides from the machine's IOMMU units (or, when the IOMMU was off, from the command line that switched it off)
    /// and the command line: <c>intel_iommu=on|off</c> (Debian and most distributions build VT-d default-on),
    /// <c>amd_iommu=off</c>, and x86 <c>iommu=off</c> (<c>no_iommu</c>, checked by <c>detect_intel_iommu</c> and the AMD
    /// detection). <c>iommu=pt</c>/<c>nopt</c>/<c>iommu.passthrough</c> change the default domain, not whether groups exist.
    /// </summary>
    public static IommuActivation Decide(Machine machine, KernelCommandLine cmd, bool forceActive = false)
    {
        var sourceCmd = KernelCommandLine.Parse(machine.CommandLine);
        IommuKind kind = machine.IommuKind;
        bool assumedHardware = false;
        if (machine.IommuUnits.Count == 0)
        {
            // No unit registered: either there is no IOMMU, or the source's own command line switched it off.
            if (IntelSwitchedOff(sourceCmd)) { kind = IommuKind.Intel; assumedHardware = true; }
            else if (AmdSwitchedOff(sourceCmd)) { kind = IommuKind.Amd; assumedHardware = true; }
            else if (IommuOff(sourceCmd) && machine.KernelGroups is { Count: 0 }) { kind = IommuKind.Unknown; assumedHardware = true; }
        }

        if (forceActive)
            return new IommuActivation(true, false, kind, "IOMMU assumed active (prediction requested)");

        if (IommuOff(cmd) && kind is IommuKind.Intel or IommuKind.Amd or IommuKind.Unknown && (machine.IommuUnits.Count > 0 || assumedHardware || machine.KernelGroups is { Count: > 0 }))
            return new IommuActivation(false, false, kind, "iommu=off on the command line disables the IOMMU (no_iommu)");

        switch (kind)
        {
            case IommuKind.Intel when machine.IommuUnits.Count > 0 || assumedHardware:
                if (IntelSwitchedOff(cmd))
                    return new IommuActivation(false, false, kind, "intel_iommu=off on the command line disables VT-d");
                return new IommuActivation(true, false, kind, cmd.Has("intel_iommu")
                    ? "VT-d is on (intel_iommu=on)" : "VT-d is on: the kernel enables it by default when a DMAR unit exists");
            case IommuKind.Amd when machine.IommuUnits.Count > 0 || assumedHardware:
                if (AmdSwitchedOff(cmd))
                    return new IommuActivation(false, false, kind, "amd_iommu=off on the command line disables AMD-Vi");
                return new IommuActivation(true, false, kind, "AMD-Vi is on (IVRS present)");
            case IommuKind.Virtio or IommuKind.ArmSmmu when machine.IommuUnits.Count > 0:
                return new IommuActivation(true, false, kind, $"IOMMU unit {machine.IommuUnits[0].Name} is registered");
        }
        if (machine.IommuUnits.Count > 0)
            return new IommuActivation(true, false, kind, $"IOMMU unit {machine.IommuUnits[0].Name} is registered");
        if (assumedHardware)
            return new IommuActivation(true, true, kind, "the source's command line switched the IOMMU off; assuming the hardware has one");
        if (machine.KernelGroups is { Count: > 0 })
            return new IommuActivation(true, false, kind, "the source shows the kernel's IOMMU groups");
        if (machine.KernelGroups is { Count: 0 } || machine.Origin.EndsWith(".tar.gz", StringComparison.Ordinal) || HasSysfsShape(machine))
            return new IommuActivation(false, false, IommuKind.Unknown, "no IOMMU unit is registered in the source");
        return new IommuActivation(true, true, IommuKind.Unknown, "the source does not say whether an IOMMU is active; predicting as if it were");
    }

    // A sysfs snapshot without units and without groups means "no IOMMU"; an lspci dump without group lines says nothing.
    private static bool HasSysfsShape(Machine m) => m.KernelRelease is not null && m.KernelGroups is not null;

    /// <summary>The last <c>on</c>/<c>off</c> among the <c>intel_iommu=</c> options is <c>off</c> (intel_iommu_setup).</summary>
    public static bool IntelSwitchedOff(KernelCommandLine cmd)
    {
        bool? on = null;
        foreach (var o in cmd.Options("intel_iommu"))
        {
            if (o == "on") on = true;
            else if (o == "off") on = false;
        }
        return on == false;
    }

    /// <summary><c>amd_iommu=off</c> (parse_amd_iommu_options).</summary>
    public static bool AmdSwitchedOff(KernelCommandLine cmd)
    {
        foreach (var o in cmd.Options("amd_iommu"))
        {
            if (o == "off") return true;
        }
        return false;
    }

    /// <summary>x86 <c>iommu=off</c> (iommu_setup sets <c>no_iommu</c>).</summary>
    public static bool IommuOff(KernelCommandLine cmd)
    {
        bool off = false;
        foreach (var o in cmd.Options("iommu"))
        {
            if (o == "off") off = true;
            else if (o is "on" or "force") off = false;
        }
        return off;
    }
}
