using IommuKit.Pci;

namespace IommuKit.Host;

public static partial class Wording
{
    /// <summary>
    /// What the host uses a function for, after its address: "holds /dev/vda, your root filesystem; is eth0, the
    /// interface of your default route". From a snapshot or directory root the sentence says the facts were recorded
    /// there. Null when <paramref name="uses"/> is empty.
    /// </summary>
    public static string? HostUses(IEnumerable<HostUse> uses, bool live)
    {
        ArgumentNullException.ThrowIfNull(uses);
        var parts = uses.Select(HostUse).Distinct().ToList();
        if (parts.Count == 0) return null;
        string all = string.Join("; ", parts);
        return live ? all : all + " (as the snapshot recorded it)";
    }

    /// <summary>One use in a few words: "holds /dev/vda2 (dm-0 -> vda2), your root filesystem".</summary>
    public static string HostUse(HostUse u)
    {
        ArgumentNullException.ThrowIfNull(u);
        string via = u.Via is { } v ? $" ({v})" : "";
        return u.Kind switch
        {
            HostUseKind.RootFs => $"holds {u.Detail}{via}, your root filesystem",
            HostUseKind.BootFs => $"holds {u.Detail}{via}, your boot filesystem",
            HostUseKind.Swap => $"holds {u.Detail}{via}, your swap",
            HostUseKind.DefaultRoute => $"is the network interface of your default route ({u.Via ?? u.Detail})",
            HostUseKind.BootVga => "is the boot VGA device (the firmware's and the console's display)",
            HostUseKind.ConsoleFb => $"drives {u.Detail}, the console's framebuffer",
            _ => $"holds the keyboard \"{u.Detail}\"",
        };
    }

    /// <summary>
    /// The refusal of a bind that would take devices the host is using: "00:0a.0 holds /dev/vda, your swap".
    /// </summary>
    public static string HeldRefusal(IReadOnlyList<(PciAddress Device, string What)> held) =>
        string.Join("; ", held.Select(h => $"{h.Device.ToShortString()} {h.What}")) +
        " (--force binds it anyway; the host then loses it at once)";

    /// <summary>
    /// For a storage, network, USB or VGA function the source shows the host does not use: what it does not hold,
    /// instead of a guess ("its disks; none holds the root, /boot or swap"). Null for other classes.
    /// </summary>
    public static string? NoHostUse(PciDevice d, bool live)
    {
        ArgumentNullException.ThrowIfNull(d);
        string drv = d.Driver is { } x ? $" (driver {x})" : "";
        string? what = (d.ClassCode >> 16) switch
        {
            0x01 => $"storage controller{drv}: the disks behind it; none holds the root, /boot or swap",
            0x02 => $"network controller{drv}: its link; not the default route's",
            0x03 => $"display controller{drv}: not the boot VGA device or the console's framebuffer",
            0x0c when ((d.ClassCode >> 8) & 0xff) == 0x03 => $"USB controller{drv}: its USB devices; no keyboard is on it",
            _ => null,
        };
        return what is null ? null : live ? what : what + " (as the snapshot recorded it)";
    }

    /// <summary>
    /// What unbinding <paramref name="d"/>'s driver for a moment interrupts, as words after "from DRIVER" in
    /// <c>set-type --apply</c>'s question: what the source shows the host using it for when it carries host uses
    /// (" (it holds /dev/vda, your root filesystem: that drops while it is unbound)"), else what its class serves
    /// (" (its network link drops)"); "" when neither says anything.
    /// </summary>
    public static string UnbindLoss(Machine machine, PciDevice d)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(d);
        if (machine.HostUses is { } facts && HostUses(facts.Of(d.Address), facts.Live) is { } held)
            return $" (it {held}: that drops while it is unbound)";
        if (Passthrough.PciClasses.IsNetwork(d.ClassCode)) return " (its network link drops)";
        if (Passthrough.PciClasses.IsStorage(d.ClassCode))
            return machine.HostUses is null ? " (its disks drop: do not do this to the disk the system runs from)" : " (its disks drop)";
        if (Passthrough.PciClasses.IsGpu(d.ClassCode)) return " (its displays go dark)";
        if (Passthrough.PciClasses.IsUsb(d.ClassCode)) return machine.HostUses is null ? " (its USB devices, perhaps the keyboard, drop)" : " (its USB devices drop)";
        return "";
    }
}
