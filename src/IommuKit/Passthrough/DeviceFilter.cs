using IommuKit.Pci;

namespace IommuKit.Passthrough;

/// <summary>
/// The ls-iommu style filters of <c>groups</c> and <c>devices</c>: class filters (<see cref="PciClasses.Filters"/>),
/// <c>--id VENDOR:DEVICE,…</c> and <c>--pciaddr ADDR,…</c> (<see cref="DeviceSelector"/>s: an address, a slot or an
/// id). A device is kept when it passes every kind given (kinds combine with AND) by matching any one value of that
/// kind (values of a kind combine with OR): <c>--gpu --audio --id 10de:2484</c> keeps the GPUs and audio functions
/// whose id is 10de:2484.
/// </summary>
/// <param name="Classes">Class filters; empty keeps every class.</param>
/// <param name="Ids">Selectors of <c>--id</c>; empty keeps every id.</param>
/// <param name="Addresses">Selectors of <c>--pciaddr</c>; empty keeps every address.</param>
public sealed record DeviceFilter(IReadOnlyList<PciClassFilter> Classes, IReadOnlyList<DeviceSelector> Ids, IReadOnlyList<DeviceSelector> Addresses)
{
    /// <summary>Keeps everything.</summary>
    public static DeviceFilter None { get; } = new([], [], []);

    /// <summary>Some filter is given.</summary>
    public bool Any => Classes.Count > 0 || Ids.Count > 0 || Addresses.Count > 0;

    /// <summary>Whether <paramref name="device"/> passes every kind of filter given.</summary>
    public bool Keeps(PciDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return (Classes.Count == 0 || Classes.Any(c => c.Matches(device.ClassCode)))
               && (Ids.Count == 0 || Ids.Any(s => s.Matches(device)))
               && (Addresses.Count == 0 || Addresses.Any(s => s.Matches(device)));
    }

    /// <summary>
    /// Builds a filter from option values: <paramref name="classNames"/> from <see cref="PciClasses.Filters"/>,
    /// comma-separated lists for <c>--id</c> (vendor:device ids only) and <c>--pciaddr</c> (addresses or slots).
    /// </summary>
    /// <exception cref="InputException">An unknown class, a malformed item, an address given to <c>--id</c> or an id to <c>--pciaddr</c>.</exception>
    public static DeviceFilter Parse(IEnumerable<string> classNames, IEnumerable<string> ids, IEnumerable<string> addresses)
    {
        var classes = classNames.Select(n => PciClasses.Filters.FirstOrDefault(f => f.Name == n)
            ?? throw new InputException($"'{n}' is not a device class filter (one of {string.Join(", ", PciClasses.Filters.Select(f => f.Name))})")).ToList();
        var idList = DeviceSelector.ParseList(ids, "--id");
        if (idList.FirstOrDefault(s => s.Kind != DeviceSelectorKind.Id) is { } notId)
            throw new InputException($"--id '{notId}' is an address; --id takes vendor:device ids (10de:2484), --pciaddr takes addresses");
        var addrList = DeviceSelector.ParseList(addresses, "--pciaddr");
        if (addrList.FirstOrDefault(s => s.Kind == DeviceSelectorKind.Id) is { } notAddr)
            throw new InputException($"--pciaddr '{notAddr}' is a vendor:device id; --pciaddr takes addresses (03:00.0) or slots (03:00), --id takes ids");
        return new DeviceFilter(classes, idList, addrList);
    }

    /// <summary>The filter as options, for the "Showing N of them (…)" line: <c>--gpu --id 10de:2484</c>.</summary>
    public string Describe() => string.Join(" ", Classes.Select(c => "--" + c.Name)
        .Concat(Ids.Count > 0 ? [$"--id {string.Join(",", Ids)}"] : [])
        .Concat(Addresses.Count > 0 ? [$"--pciaddr {string.Join(",", Addresses)}"] : []));
}
