using IommuKit.Pci;

namespace IommuKit.Passthrough;

/// <summary>What kind of host function a device is: one that is never given to a VM (issue 10's list).</summary>
public enum HostFunctionKind
{
    /// <summary>Host bridge (class 0600): the CPU's own root complex.</summary>
    HostBridge,
    /// <summary>PCI-to-PCI bridge or PCIe port (class 0604/0609, or a type 1/2 header): the path, never the payload.</summary>
    Bridge,
    /// <summary>ISA/LPC bridge (class 0601): the platform's legacy devices (keyboard controller, TPM, super I/O).</summary>
    IsaBridge,
    /// <summary>Another bridge (06xx).</summary>
    OtherBridge,
    /// <summary>SMBus controller (class 0c05): sensors, SPD EEPROMs, the platform's own management bus.</summary>
    Smbus,
    /// <summary>Interrupt controller (class 0800: 8259 PIC, I/O APIC).</summary>
    InterruptController,
    /// <summary>IOMMU (class 0806): the hardware that isolates everything else.</summary>
    Iommu,
    /// <summary>Other system peripheral (08xx except SD host 0805): timers, RTC, DMA engines of the chipset, uncore agents.</summary>
    SystemPeripheral,
    /// <summary>Memory controller or chipset RAM (class 05xx).</summary>
    MemoryController,
    /// <summary>CPU performance counters (class 1101): uncore monitors.</summary>
    PerformanceCounters,
    /// <summary>The platform's management engine (Intel MEI 0780, AMD PSP 1080): assignable only with <c>--force</c>.</summary>
    ManagementEngine,
}

/// <summary>
/// Which functions a VFIO user never passes through, by PCI class (PCI Code and ID Assignment Specification r1.14,
/// section 1): they belong to the platform, VFIO would take them away from the kernel that runs it, and no guest driver
/// can use them. libvirt's and Proxmox's host-device pickers hide the same classes.
/// </summary>
public static class HostFunctions
{
    private const ushort Intel = 0x8086, Amd = 0x1022;

    /// <summary>The host-function kind of <paramref name="d"/>, or null for a device a VM can be given.</summary>
    public static HostFunctionKind? Classify(PciDevice d)
    {
        ArgumentNullException.ThrowIfNull(d);
        uint cls = d.ClassCode;
        uint sub = cls >> 8;
        byte b = PciClasses.Base(cls);
        if (sub == 0x0600) return HostFunctionKind.HostBridge;
        if (sub == 0x0601) return HostFunctionKind.IsaBridge;
        if (sub is 0x0604 or 0x0609 || d.IsBridge) return HostFunctionKind.Bridge;
        if (b == 0x06) return HostFunctionKind.OtherBridge;
        if (sub == 0x0c05) return HostFunctionKind.Smbus;
        if (sub == 0x0800) return HostFunctionKind.InterruptController;
        if (sub == 0x0806) return HostFunctionKind.Iommu;
        if (b == 0x08 && sub != 0x0805) return HostFunctionKind.SystemPeripheral;
        if (b == 0x05) return HostFunctionKind.MemoryController;
        if (sub == 0x1101) return HostFunctionKind.PerformanceCounters;
        if ((sub == 0x0780 && d.VendorId == Intel) || (sub == 0x1080 && d.VendorId == Amd)) return HostFunctionKind.ManagementEngine;
        return null;
    }

    /// <summary>True when the kind can still be assigned when the user insists (<c>--force</c>).</summary>
    public static bool Forceable(HostFunctionKind kind) => kind == HostFunctionKind.ManagementEngine;

    /// <summary>The kind in a few words, for a verdict: "an I/O APIC / interrupt controller".</summary>
    public static string Describe(HostFunctionKind kind) => kind switch
    {
        HostFunctionKind.HostBridge => "the host bridge (the CPU's root complex)",
        HostFunctionKind.Bridge => "a PCI bridge or PCIe port (part of the path, not a device a VM can drive)",
        HostFunctionKind.IsaBridge => "the ISA/LPC bridge (the platform's legacy devices: keyboard controller, TPM, super I/O)",
        HostFunctionKind.OtherBridge => "a bridge of the platform",
        HostFunctionKind.Smbus => "the SMBus controller (sensors, memory SPD, the platform's management bus)",
        HostFunctionKind.InterruptController => "an interrupt controller (PIC / I/O APIC) the host's interrupts go through",
        HostFunctionKind.Iommu => "the IOMMU itself",
        HostFunctionKind.SystemPeripheral => "a system peripheral of the chipset or CPU (timers, RTC, uncore agents)",
        HostFunctionKind.MemoryController => "a memory controller or the chipset's own RAM",
        HostFunctionKind.PerformanceCounters => "CPU performance counters",
        _ => "the platform's management engine (use --force to assign it anyway)",
    };

    /// <summary>Functions in the same slot: same domain, bus and device number (one card's functions).</summary>
    public static bool SameSlot(PciAddress a, PciAddress b) => a.Domain == b.Domain && a.Bus == b.Bus && a.Device == b.Device;
}
