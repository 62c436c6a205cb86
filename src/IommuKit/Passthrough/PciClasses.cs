namespace IommuKit.Passthrough;

/// <summary>
/// The PCI class codes the passthrough checks and the CLI filters care about (PCI Code and ID Assignment
/// Specification, section 1). Class codes are the 24-bit <c>class</c> value: base, sub-class, prog-if.
/// </summary>
public static class PciClasses
{
    /// <summary>Base class 0x01: mass storage controllers.</summary>
    public const byte MassStorage = 0x01;
    /// <summary>Base class 0x02: network controllers.</summary>
    public const byte Network = 0x02;
    /// <summary>Base class 0x03: display controllers.</summary>
    public const byte Display = 0x03;

    /// <summary>The base class (top byte) of a 24-bit class code.</summary>
    public static byte Base(uint classCode) => (byte)(classCode >> 16);

    /// <summary>Display controllers (VGA 0300, XGA 0301, 3D 0302, other 0380): ls-iommu's <c>--gpu</c>.</summary>
    public static bool IsGpu(uint classCode) => Base(classCode) == Display;

    /// <summary>A VGA-compatible controller (0300): the kind that can own the legacy console.</summary>
    public static bool IsVga(uint classCode) => (classCode >> 8) == 0x0300;

    /// <summary>USB controllers (0c03, any prog-if: UHCI, OHCI, EHCI, xHCI, USB4).</summary>
    public static bool IsUsb(uint classCode) => (classCode >> 8) == 0x0c03;

    /// <summary>Network controllers (02xx: Ethernet, Wi-Fi, InfiniBand…).</summary>
    public static bool IsNetwork(uint classCode) => Base(classCode) == Network;

    /// <summary>Mass-storage controllers (01xx: SATA/AHCI, NVMe, SAS, RAID…).</summary>
    public static bool IsStorage(uint classCode) => Base(classCode) == MassStorage;

    /// <summary>SATA controllers (0106: AHCI and vendor-specific).</summary>
    public static bool IsSata(uint classCode) => (classCode >> 8) == 0x0106;

    /// <summary>Non-volatile memory controllers (0108: NVMe, NVMHCI).</summary>
    public static bool IsNvme(uint classCode) => (classCode >> 8) == 0x0108;

    /// <summary>Audio functions (0401 multimedia audio, 0403 HD Audio, as a GPU's HDMI audio function is).</summary>
    public static bool IsAudio(uint classCode) => (classCode >> 8) is 0x0401 or 0x0403;

    /// <summary>
    /// The one table of class filters (<c>groups --gpu</c>, <c>devices --nvme</c>, …): each with its option name
    /// (without <c>--</c>), what it keeps, and the test on a 24-bit class code.
    /// </summary>
    public static IReadOnlyList<PciClassFilter> Filters { get; } =
    [
        new("gpu", "display controllers (VGA 0300, 3D 0302, other 0380)", IsGpu),
        new("network", "network controllers (02xx: Ethernet, Wi-Fi, InfiniBand)", IsNetwork),
        new("usb", "USB controllers (0c03)", IsUsb),
        new("storage", "mass-storage controllers (01xx: SATA, NVMe, SAS, RAID)", IsStorage),
        new("sata", "SATA controllers (0106)", IsSata),
        new("nvme", "NVMe controllers (0108)", IsNvme),
        new("audio", "audio functions (0401, 0403 HD Audio, a GPU's HDMI audio too)", IsAudio),
    ];
}

/// <summary>One class filter of <see cref="PciClasses.Filters"/>.</summary>
/// <param name="Name">The option name without dashes (<c>nvme</c>).</param>
/// <param name="Description">What it keeps, with the class codes, for help texts.</param>
/// <param name="Matches">The test on a 24-bit class code.</param>
public sealed record PciClassFilter(string Name, string Description, Func<uint, bool> Matches);
