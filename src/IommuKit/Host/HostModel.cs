using IommuKit.Drivers;
using IommuKit.Grouping;
using IommuKit.Paging;
using IommuKit.Pci;

using IommuKit.Core;

namespace IommuKit.Host;

/// <summary>Where <see cref="HostModel"/> takes the PCI grouping from.</summary>
public enum GroupSource
{
    /// <summary>The kernel's rules (<c>pci_device_group</c>): a prediction.</summary>
    Model,
    /// <summary>The kernel's own groups recorded in the source, when it has them (else the model).</summary>
    Recorded,
}

/// <summary>Options of <see cref="HostModel.FromMachine"/>.</summary>
/// <param name="Boot">Build default and memory encryption (Debian when null).</param>
/// <param name="Kernel">Overrides the kernel generation read from the machine's release.</param>
/// <param name="Groups">Where the PCI grouping comes from.</param>
/// <param name="PageTables">IO page-table factory for paging domains (the paging engine by default).</param>
/// <param name="HotplugAfterBoot">Devices that arrived after boot (hot-plug), in arrival order: they are probed one by one
/// after the boot scan, so one joining an existing group takes its domain without re-evaluation (spec 5.4). A source
/// does not record this; the caller must know it.</param>
/// <param name="Grouping">ACS assumptions of the grouping rules and the VF enable order (<see cref="GroupingOptions"/>).</param>
/// <param name="AssumeUnits">When the machine lists no IOMMU unit, model one (<see cref="ProbeOrder.Units"/>) of
/// <paramref name="AssumedKind"/>: for predictions "as if the IOMMU were on" and for sources that cannot say.</param>
/// <param name="AssumedKind">The kind of the assumed unit (Unknown: decided from the host bridge).</param>
public sealed record HostModelOptions(IommuBootConfig? Boot = null, KernelVersion? Kernel = null, GroupSource Groups = GroupSource.Model,
    Func<IoPageTableFormat, IIoPageTable>? PageTables = null, IReadOnlyList<PciAddress>? HotplugAfterBoot = null,
    GroupingOptions? Grouping = null, bool AssumeUnits = false, IommuKind AssumedKind = IommuKind.Unknown);

/// <summary>What a dry run of a sysfs <c>type</c> write found.</summary>
/// <param name="Group">The group number.</param>
/// <param name="Value">The string written.</param>
/// <param name="Result">What the write returns on the machine as it is.</param>
/// <param name="TypeAfter">The <c>type</c> file after the write (unchanged on failure).</param>
/// <param name="Steps">When it fails: the actions that would make it succeed (unbind/write/bind), empty when none would.</param>
/// <param name="StepsResult">The result of the write after those steps (Ok when <see cref="Steps"/> works).</param>
/// <param name="TypeBefore">The <c>type</c> file before the write.</param>
/// <param name="Unbinds">The (device, driver) pairs the steps unbind and bind back, in order.</param>
public sealed record SetTypePlan(int Group, string Value, IommuResult Result, string TypeAfter, IReadOnlyList<HostAction> Steps, IommuResult StepsResult,
    string TypeBefore = "", IReadOnlyList<(string Device, string Driver)>? Unbinds = null);

/// <summary>
/// The IOMMU core built for a <see cref="Machine"/>: the driver chosen from its IOMMU units (VT-d, virtio-iommu),
/// the kernel generation from its release, the command line from the source (or the one given), every PCI device
/// probed at boot, and the drivers bound as the machine shows. Gives each group's predicted <c>type</c> and
/// <c>reserved_regions</c> and dry-runs <c>type</c> writes.
/// </summary>
public sealed class HostModel
{
    private HostModel(Machine machine, KernelCommandLine cmdline, HostModelOptions options, IommuCore core, IIommuDriver? driver,
        List<string> notes, ProbeSequence sequence, GroupingContext? grouping, PciDevice[]?[] unknownFacts, bool assumedUnits)
    {
        Machine = machine;
        CommandLine = cmdline;
        Options = options;
        Core = core;
        Driver = driver;
        Notes = notes;
        Sequence = sequence;
        Grouping = grouping;
        _unknownFacts = unknownFacts;
        AssumedUnits = assumedUnits;
    }

    private readonly PciDevice[]?[] _unknownFacts;

    /// <summary>The machine the core was booted on.</summary>
    public Machine Machine { get; }
    /// <summary>The kernel command line the core models.</summary>
    public KernelCommandLine CommandLine { get; }
    /// <summary>The options it was built with (kept for <see cref="Rebuild"/>).</summary>
    public HostModelOptions Options { get; }
    /// <summary>The booted IOMMU core: groups, domains, ownership, reserved regions.</summary>
    public IommuCore Core { get; }
    /// <summary>The IOMMU driver registered, or null when the machine has no (supported) IOMMU unit.</summary>
    public IIommuDriver? Driver { get; }
    /// <summary>Assumptions made while building (unknown kernel release, unknown registers, unsupported IOMMU…), one line each.</summary>
    public IReadOnlyList<string> Notes { get; }
    /// <summary>The order devices were probed in (<see cref="ProbeOrder.Of"/>).</summary>
    public ProbeSequence Sequence { get; }
    /// <summary>The grouping rules' context the driver's <c>device_group</c> used; null when grouping came from a recorded partition or no driver registered.</summary>
    public GroupingContext? Grouping { get; }
    /// <summary>The IOMMU units were assumed (<see cref="HostModelOptions.AssumeUnits"/>), not read from the source.</summary>
    public bool AssumedUnits { get; }

    /// <summary>
    /// Devices with missing facts (ACS or PCIe capabilities not visible, bridge bus ranges unknown) that the grouping of
    /// <paramref name="device"/> consulted: its placement is then a guess. Empty when it rests on facts.
    /// </summary>
    public IReadOnlyList<PciDevice> UnknownFactsOf(PciDevice device) => _unknownFacts[device.ProbeIndex] ?? [];

    /// <summary>The kernel generation to model for a release string; 6.12 rules when unknown.</summary>
    public static KernelVersion KernelOf(Machine machine) =>
        KernelVersion.TryParse(machine.KernelRelease, out var v) ? v : KernelVersion.V6_12;

    /// <summary>
    /// Builds and boots the core for <paramref name="machine"/>, the one probe loop of the library: the devices are
    /// added in <see cref="ProbeOrder.Of"/> order, the driver for the machine's units registers (probing every boot
    /// device with the kernel's <c>pci_device_group</c> as its <c>device_group</c>, then giving every group its default
    /// domain), late devices (VFs, hot-plug) are probed one by one, and the drivers the source shows are bound.
    /// </summary>
    /// <param name="cmdline">The kernel command line; null uses the machine's own.</param>
    /// <exception cref="InputException">The machine's IOMMU unit names a virtio-iommu function that is not a PCI address.</exception>
    public static HostModel FromMachine(Machine machine, KernelCommandLine? cmdline = null, HostModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        options ??= new HostModelOptions();
        var notes = new List<string>();
        cmdline ??= KernelCommandLine.Parse(machine.CommandLine);
        KernelVersion kernel;
        if (options.Kernel is { } k) kernel = k;
        else if (KernelVersion.TryParse(machine.KernelRelease, out var kv)) kernel = kv;
        else
        {
            kernel = KernelVersion.V6_12;
            notes.Add($"kernel release {(machine.KernelRelease is null ? "unknown" : $"\"{machine.KernelRelease}\" not understood")}: modelling Linux {kernel} rules");
        }
        var core = new IommuCore(kernel, cmdline, options.Boot);
        var pageTables = options.PageTables ?? (f => IoPageTables.Create(f));

        var units = ProbeOrder.Units(machine, options.AssumeUnits, options.AssumedKind, out bool assumedUnits);
        options = options with { Grouping = WithSourceFacts(machine, options.Grouping) };
        var modelled = assumedUnits ? machine with { IommuUnits = units } : machine;
        var sequence = ProbeOrder.Of(machine, options.Grouping?.VfEnableOrder, options.HotplugAfterBoot,
            options.Kernel ?? (KernelVersion.TryParse(machine.KernelRelease, out var release) ? release : null));
        var devices = new IommuDevice[machine.Topology.Count];
        foreach (var pci in sequence.Boot)
        {
            var dev = IommuDevice.FromPci(pci, pci.Facts.IommuUnit);
            core.AddDevice(dev);
            devices[pci.ProbeIndex] = dev;
        }

        IIommuDriver? driver = null;
        GroupingContext? grouping = null;
        var unknown = new PciDevice[]?[machine.Topology.Count];
        if (units.Count == 0)
            notes.Add("the source shows no IOMMU unit: no groups");
        else
        {
            var resolver = GroupResolver(modelled, cmdline, options, unknown, out grouping);
            driver = CreateDriver(modelled, units, pageTables, resolver, options, notes);
        }
        if (driver is not null)
        {
            var r = core.RegisterDriver(driver);
            if (!r.IsOk) notes.Add($"{driver.Name} registration failed: {r}");
        }
        foreach (var pci in sequence.Late)
        {
            var dev = IommuDevice.FromPci(pci, pci.Facts.IommuUnit);
            devices[pci.ProbeIndex] = dev;
            var r = core.HotplugAdd(dev);
            if (!r.IsOk && r.Errno != Errno.ENODEV) notes.Add($"{dev.Name}: hot-plug probe fails in the model: {r}");
        }
        foreach (var dev in devices)
        {
            if (dev?.Pci!.Facts.Driver is { } name)
            {
                var r = core.BindDriver(dev, name);
                if (!r.IsOk) notes.Add($"{dev.Name}: binding {name} fails in the model: {r}");
            }
        }
        return new HostModel(machine, cmdline, options, core, driver, notes, sequence, grouping, unknown, assumedUnits);
    }

    private static IIommuDriver? CreateDriver(Machine machine, IReadOnlyList<IommuUnit> units, Func<IoPageTableFormat, IIoPageTable> pageTables,
        PciGroupResolver resolver, HostModelOptions options, List<string> notes)
    {
        switch (units[0].Kind)
        {
            case IommuKind.Intel:
            {
                var vt = new List<VtdUnit>(units.Count);
                foreach (var u in units)
                {
                    if (u.Kind != IommuKind.Intel) continue;
                    vt.Add(VtdUnit.FromMachine(u));
                    if (u.IntelCap is null) notes.Add($"{u.Name}: no cap register in the source: caching mode taken as off");
                    if (u.IntelEcap is null) notes.Add($"{u.Name}: no ecap register in the source: pass-through taken as supported");
                }
                return new VtdDriver(vt, pageTables, resolver, rmrrs: FirmwarePlatform.Rmrrs(machine)); // RMRRs from the DMAR (issue 9)
            }
            case IommuKind.Virtio:
            {
                var u = units[0];
                if (!PciAddress.TryParse(u.Name, out var self))
                    throw InputException.At(machine.Origin, $"virtio-iommu unit \"{u.Name}\" is not named after its PCI function");
                return new VirtioIommuDriver(self, pageTables, resolver, u.Devices.Count > 0 ? u.Devices : null);
            }
            case IommuKind.Amd:
            {
                var amd = new List<AmdViUnit>(units.Count);
                foreach (var u in units)
                {
                    if (u.Kind != IommuKind.Amd) continue;
                    amd.Add(AmdViUnit.FromMachine(u));
                    if (AmdViUnit.CapHeader(u) is null) notes.Add($"{u.Name}: no amd-iommu/cap register in the source: NpCache (strict mode under virtualization) taken as off");
                }
                return new AmdViDriver(amd, pageTables, resolver, ivmd: FirmwarePlatform.Ivmds(machine), // IVMDs from the IVRS (issue 9)
                    memoryEncryption: options.Boot?.MemoryEncryption ?? false);
            }
            default:
                notes.Add($"IOMMU kind {units[0].Kind} is not modelled: no groups predicted");
                return null;
        }
    }

    /// <summary>
    /// <paramref name="options"/> completed with what the source's own boot did (<see cref="GroupingOptions.SourceRequestedAcs"/>),
    /// decided by <see cref="IommuActivation.Decide"/> on the source's command line.
    /// </summary>
    public static GroupingOptions WithSourceFacts(Machine machine, GroupingOptions? options)
    {
        var src = IommuActivation.Decide(machine, KernelCommandLine.Parse(machine.CommandLine));
        return (options ?? new GroupingOptions()) with { SourceRequestedAcs = src.Active && !src.Assumed };
    }

    /// <summary>
    /// The drivers' <c>device_group</c> for PCI functions: the kernel's <c>pci_device_group</c> over the machine's
    /// grouping context (recording, per device, the unknown facts its placement consulted), or the recorded partition.
    /// </summary>
    private static PciGroupResolver GroupResolver(Machine machine, KernelCommandLine cmdline, HostModelOptions options,
        PciDevice[]?[] unknown, out GroupingContext? grouping)
    {
        if (options.Groups == GroupSource.Recorded && machine.KernelGroups is { Count: > 0 } kg)
        {
            grouping = null;
            return PciGroupResolvers.Numbered(kg, machine.Topology);
        }
        var ctx = GroupingContext.Create(machine, cmdline, iommuActive: true, options.Grouping);
        grouping = ctx;
        var kernel = PciGroupResolvers.Kernel(ctx);
        return (pci, context) =>
        {
            ctx.TouchedUnknown = false;
            ctx.UnknownTouched.Clear();
            var g = kernel(pci, context);
            if (ctx.TouchedUnknown) unknown[pci.ProbeIndex] = [.. ctx.UnknownTouched];
            return g;
        };
    }

    /// <summary>Builds a fresh model from the same inputs (dry runs never touch this one).</summary>
    public HostModel Rebuild() => FromMachine(Machine, CommandLine, Options);

    /// <summary>The core device of a PCI function, or null.</summary>
    public IommuDevice? Device(PciAddress address) => Core.FindDevice(address);

    /// <summary>The core group of a PCI function, or null (not probed, or no IOMMU manages it).</summary>
    public IommuGroup? GroupOf(PciAddress address) => Core.FindDevice(address)?.Group;

    /// <summary>
    /// The group a user means by <paramref name="number"/>: the kernel's numbering when the source recorded the
    /// kernel's groups (matched through their devices), else the model's own; null when there is none.
    /// </summary>
    public IommuGroup? ResolveGroup(int number)
    {
        if (Machine.KernelGroups is { Count: > 0 } kg)
        {
            foreach (var g in kg)
            {
                if (g.Id != number) continue;
                foreach (var a in g.Devices) if (GroupOf(a) is { } mg) return mg;
                return null;
            }
            return null;
        }
        return Core.FindGroup(number);
    }

    /// <summary>The number a user sees for a model group: the kernel's when recorded (by its first device), else the model's.</summary>
    public int UserNumber(IommuGroup group)
    {
        if (Machine.KernelGroups is { Count: > 0 } kg)
        {
            var devs = group.Devices;
            if (devs.Count > 0 && devs[0].Pci is { } p)
                foreach (var g in kg) foreach (var a in g.Devices) if (a == p.Address) return g.Id;
        }
        return group.Id;
    }

    /// <summary>
    /// Dry-runs writing <paramref name="value"/> to group <paramref name="groupNumber"/>'s <c>type</c> (numbered as
    /// <see cref="ResolveGroup"/>) on a fresh copy of the machine; on failure, tries again with the group's drivers
    /// unbound (those that block it: DMA-API drivers on 6.4+, any driver before) and, when that works, lists the steps:
    /// unbind, write, bind back.
    /// </summary>
    /// <exception cref="ArgumentException">No group has that number.</exception>
    public SetTypePlan DryRunSetType(int groupNumber, string value)
    {
        // On the kernel's groups when the source recorded them: the write goes to the kernel's group, and the replayed
        // core numbers its groups as the kernel did, so every number in the core's reasons is the one the user typed.
        var replay = Machine.KernelGroups is { Count: > 0 } ? Options with { Groups = GroupSource.Recorded } : Options;
        HostModel Rebuild() => FromMachine(Machine, CommandLine, replay);
        var m1 = Rebuild();
        var g1 = m1.ResolveGroup(groupNumber) ?? throw new ArgumentException($"no IOMMU group {groupNumber}", nameof(groupNumber));
        string before = m1.Core.ReadType(g1);
        var r = m1.Core.StoreType(g1, value);
        string after = m1.Core.ReadType(g1);
        var steps = new List<HostAction>();
        var unbinds = new List<(string Device, string Driver)>();
        IommuResult stepsResult = r;
        if (!r.IsOk && r.Errno is Errno.EPERM or Errno.EBUSY)
        {
            var m2 = Rebuild();
            var g2 = m2.ResolveGroup(groupNumber)!;
            var unbound = new List<(IommuDevice Dev, string Driver)>();
            bool legacy = m2.Core.Kernel.TypeWrites == TypeWriteRules.SingleDevice;
            foreach (var d in g2.Devices)
            {
                if (d.DriverName is { } drv && (legacy || !d.DriverManagedDma))
                {
                    unbound.Add((d, drv));
                    m2.Core.UnbindDriver(d);
                }
            }
            if (unbound.Count > 0)
            {
                stepsResult = m2.Core.StoreType(g2, value);
                if (stepsResult.IsOk)
                {
                    foreach (var (d, drv) in unbound)
                    {
                        unbinds.Add((d.Name, drv));
                        steps.Add(HostAction.Unbind(d.Name, drv));
                    }
                    steps.Add(HostAction.WriteType(groupNumber, value.TrimEnd('\n')));
                    foreach (var (d, drv) in unbound)
                    {
                        var b = m2.Core.BindDriver(d, drv);
                        steps.Add(HostAction.Bind(d.Name, drv, b));
                    }
                }
            }
        }
        return new SetTypePlan(groupNumber, value, r, after, steps, stepsResult, before, unbinds);
    }
}
