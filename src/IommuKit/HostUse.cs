using IommuKit.Pci;

namespace IommuKit;

/// <summary>What a running host uses a PCI function for: the uses that make giving it to a VM cost the host itself.</summary>
public enum HostUseKind
{
    /// <summary>A block device under the root filesystem (<c>/</c> in <c>/proc/self/mountinfo</c>).</summary>
    RootFs,
    /// <summary>A block device under <c>/boot</c> or <c>/boot/efi</c>.</summary>
    BootFs,
    /// <summary>A block device under an active swap area (<c>/proc/swaps</c>).</summary>
    Swap,
    /// <summary>The network interface of the default route (<c>/proc/net/route</c>), or one below it (a bridge's port, a bond's slave).</summary>
    DefaultRoute,
    /// <summary>The boot VGA device (<c>boot_vga</c> reads 1: the VGA arbiter's default device, the firmware's console).</summary>
    BootVga,
    /// <summary>The device behind the console's framebuffer (<c>/sys/class/graphics/fb0/device</c>).</summary>
    ConsoleFb,
    /// <summary>The controller a keyboard is attached to (an input device with the keys of a keyboard, as udev's <c>input_id</c> tells them).</summary>
    Keyboard,
}

/// <summary>One use the host makes of a PCI function, read from the running kernel.</summary>
/// <param name="Device">The PCI function (for a disk: its controller; for a USB keyboard: the USB host controller).</param>
/// <param name="Kind">What it is used for.</param>
/// <param name="Detail">What names the use: <c>/dev/vda2</c>, the interface <c>enp3s0</c>, the keyboard's name.</param>
/// <param name="Via">The chain from the use down to the function, when it is not direct: <c>dm-0 -> nvme0n1p3</c>, <c>vmbr0 -> enp3s0</c>; null when direct.</param>
public sealed record HostUse(PciAddress Device, HostUseKind Kind, string Detail, string? Via = null);

/// <summary>
/// The host uses a sysfs-shaped source carries (<see cref="Machine.HostUses"/>): what the root, <c>/boot</c> and swap
/// live on, the NIC of the default route, the boot VGA device and console framebuffer, the controllers of keyboards.
/// </summary>
/// <param name="Uses">Every use found, in a stable order (kind, then device, then detail).</param>
/// <param name="Live">True when read from the running host (<c>/</c>); false when from a snapshot or a directory root (then the facts are what was recorded).</param>
public sealed record HostUseFacts(IReadOnlyList<HostUse> Uses, bool Live)
{
    /// <summary>The uses of one function, in <see cref="Uses"/> order.</summary>
    public IEnumerable<HostUse> Of(PciAddress device) => Uses.Where(u => u.Device == device);

    /// <summary>True when the host uses <paramref name="device"/> for anything.</summary>
    public bool Holds(PciAddress device) => Uses.Any(u => u.Device == device);
}
