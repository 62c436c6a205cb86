using IommuKit.Pci;

namespace IommuKit.Host;

/// <summary>The device classes people pass through, which <see cref="Fleet"/> counts.</summary>
public enum AssignableClass
{
    /// <summary>Display controllers (PCI class 03).</summary>
    Gpu,
    /// <summary>Network controllers (PCI class 02).</summary>
    Nic,
    /// <summary>NVMe controllers (PCI class 01, subclass 08, interface 02).</summary>
    Nvme,
}

/// <summary>One machine's devices of one class, counted by <see cref="VerdictClass"/> of their own VFIO check.</summary>
public sealed record FleetClassCount(AssignableClass Class, int Devices, int Ready, int NeedsBinding, int SharesGroup, int NotAssignable, int NoIommu);

/// <summary>One machine of a fleet survey.</summary>
/// <param name="Path">The file it was read from, as given.</param>
/// <param name="Groups">Groups shown (the kernel's when the source has them, else the model's).</param>
/// <param name="Classes">One count per <see cref="AssignableClass"/>, in enum order.</param>
/// <param name="Fingerprints">The shown groups' fingerprints, in group order.</param>
/// <param name="Drifted">Fingerprints not in the baseline (empty without a baseline).</param>
public sealed record FleetMachine(string Path, string Origin, int Devices, int Groups, IommuState State, bool Predicted,
    IReadOnlyList<FleetClassCount> Classes, IReadOnlyList<string> Fingerprints, IReadOnlyList<string> Drifted);

/// <summary>A file that could not be read as a machine: what was wrong, one line.</summary>
public sealed record FleetFailure(string Path, string Error);

/// <summary>The survey of many machines (<see cref="Fleet.Survey"/>): machines and failures in the order the paths were given.</summary>
public sealed record FleetReport(IReadOnlyList<FleetMachine> Machines, IReadOnlyList<FleetFailure> Failures, bool HasBaseline)
{
    /// <summary>The machines whose groups drifted from the baseline.</summary>
    public IEnumerable<FleetMachine> DriftedMachines => Machines.Where(m => m.Drifted.Count > 0);
}

/// <summary>
/// Many machines at once: per machine, its devices of each <see cref="AssignableClass"/> counted by the class of their
/// VFIO check, and the groups whose fingerprints a baseline does not hold. Machines are read and analysed in parallel
/// over the cores; the result does not depend on the order they finish in.
/// </summary>
public static class Fleet
{
    /// <summary>Most machines one survey takes: a fleet beyond this is split by the caller.</summary>
    public const int MaxMachines = 1_000_000;

    /// <summary>
    /// Reads a baseline: group fingerprints (<see cref="GroupReport.Fingerprint"/>), one per line, each line's first
    /// token; <c>#</c> starts a comment, blank lines are skipped.
    /// </summary>
    /// <exception cref="InputException">A token that is not 12 lower-case hex digits, naming <paramref name="origin"/> and the line.</exception>
    public static HashSet<string> ParseBaseline(string text, string origin)
    {
        ArgumentNullException.ThrowIfNull(text);
        var set = new HashSet<string>(StringComparer.Ordinal);
        int lineNo = 0;
        foreach (var raw in text.Split('\n'))
        {
            lineNo++;
            var line = raw.Split('#')[0].Trim();
            if (line.Length == 0) continue;
            var token = line.Split((char[])[' ', '\t'], 2)[0];
            if (token.Length != 12 || !token.All(char.IsAsciiHexDigitLower))
                throw InputException.At(origin, $"'{token}' is not a group fingerprint (12 lower-case hex digits)", lineNo);
            set.Add(token);
        }
        return set;
    }

    /// <summary>The class of a device, or null when it is none of the counted ones.</summary>
    public static AssignableClass? ClassOf(PciDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        uint c = device.ClassCode;
        return (c >> 16) switch
        {
            0x03 => AssignableClass.Gpu,
            0x02 => AssignableClass.Nic,
            0x01 when c == 0x010802 => AssignableClass.Nvme,
            _ => null,
        };
    }

    /// <summary>One machine's counts: the <see cref="VfioReport.Class"/> of each counted device's own <see cref="HostAnalysis.VfioCheck"/>.</summary>
    public static FleetMachine Count(string path, Machine machine, IReadOnlySet<string>? baseline)
    {
        ArgumentNullException.ThrowIfNull(machine);
        var report = HostAnalysis.Analyze(machine);
        var counts = new int[3, 5];
        var devices = new int[3];
        foreach (var d in machine.Topology.Devices)
        {
            if (ClassOf(d) is not { } cls) continue;
            devices[(int)cls]++;
            counts[(int)cls, (int)HostAnalysis.VfioCheck(report, d.Address, null).Class]++;
        }
        var classes = new List<FleetClassCount>(3);
        foreach (var cls in Enum.GetValues<AssignableClass>())
        {
            int i = (int)cls;
            classes.Add(new FleetClassCount(cls, devices[i], counts[i, (int)VerdictClass.Ready], counts[i, (int)VerdictClass.NeedsBinding],
                counts[i, (int)VerdictClass.SharesGroup], counts[i, (int)VerdictClass.NotAssignable], counts[i, (int)VerdictClass.NoIommu]));
        }
        var fingerprints = report.Groups.Select(g => g.Fingerprint).ToList();
        var drifted = baseline is null ? [] : fingerprints.Where(f => !baseline.Contains(f)).ToList();
        return new FleetMachine(path, machine.Origin, machine.Topology.Count, report.Groups.Count, report.State, report.Predicted,
            classes, fingerprints, drifted);
    }

    /// <summary>
    /// Reads every path with <paramref name="load"/> and counts it (<see cref="Count"/>), in parallel over at most
    /// <paramref name="maxParallelism"/> threads (null: one per core). A path whose load fails with bad input or an I/O
    /// error is a <see cref="FleetFailure"/>, never fatal. <paramref name="progress"/> is called (from any thread) with
    /// the number done after each path.
    /// </summary>
    /// <exception cref="ArgumentException">More than <see cref="MaxMachines"/> paths.</exception>
    public static FleetReport Survey(IReadOnlyList<string> paths, Func<string, Machine> load, IReadOnlySet<string>? baseline = null,
        Action<int>? progress = null, int? maxParallelism = null)
    {
        ArgumentNullException.ThrowIfNull(paths);
        ArgumentNullException.ThrowIfNull(load);
        if (paths.Count > MaxMachines) throw new ArgumentException($"at most {MaxMachines} machines per survey", nameof(paths));
        var machines = new FleetMachine?[paths.Count];
        var failures = new FleetFailure?[paths.Count];
        int done = 0;
        var options = new ParallelOptions { MaxDegreeOfParallelism = maxParallelism ?? Environment.ProcessorCount };
        Parallel.For(0, paths.Count, options, i =>
        {
            try
            {
                machines[i] = Count(paths[i], load(paths[i]), baseline);
            }
            catch (Exception ex) when (ex is InputException or IOException or UnauthorizedAccessException)
            {
                failures[i] = new FleetFailure(paths[i], ex.Message);
            }
            progress?.Invoke(Interlocked.Increment(ref done));
        });
        return new FleetReport(machines.OfType<FleetMachine>().ToList(), failures.OfType<FleetFailure>().ToList(), baseline is not null);
    }
}
