using System.Diagnostics;
using System.Globalization;
using IommuKit.Host;
using IommuKit.Sources;

namespace IommuKit.Bench;

/// <summary>
/// <c>--profile-groups SOURCE [RUNS]</c>: the library half of <c>iommu groups --source SOURCE</c> phase by phase, with
/// the bytes each phase allocates and its best time over RUNS in-process runs (JIT-compiled here, so the times are the
/// warm managed cost, not the native binary's; the allocation counts are the same code's). Issue 11 used it to find
/// where the native binary's CPU time goes besides system calls: every allocated byte is zeroed by the GC and, in a
/// process that lives 20 ms, first touched (a page fault per 4 KiB).
/// </summary>
internal static class GroupsProfile
{
    public static int Run(string source, int runs, TextWriter output)
    {
        string[] names = ["pci.ids load (installed database)", "machine load (MachineSource.Load)", "analysis (HostAnalysis.Analyze)",
            "names of every device (pci.ids lookups)"];
        var best = new double[names.Length];
        var bytes = new long[names.Length];
        Array.Fill(best, double.MaxValue);
        for (int run = 0; run < runs; run++)
        {
            PciIds ids = Measure(0, () => PciIds.LoadInstalled() ?? PciIds.Empty);
            Machine machine = Measure(1, () => MachineSource.Load(source));
            HostReport report = Measure(2, () => HostAnalysis.Analyze(machine));
            Measure(3, () => Names(report, ids));
        }
        for (int i = 0; i < names.Length; i++)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{names[i],-42} {bytes[i] / 1024.0,9:F0} KiB allocated  best {best[i],7:F2} ms"));
        return 0;

        T Measure<T>(int phase, Func<T> body)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            var sw = Stopwatch.StartNew();
            T result = body();
            sw.Stop();
            best[phase] = Math.Min(best[phase], sw.Elapsed.TotalMilliseconds);
            bytes[phase] = GC.GetAllocatedBytesForCurrentThread() - before;
            return result;
        }
    }

    private static int Names(HostReport report, PciIds ids)
    {
        int n = 0;
        foreach (var g in report.Groups)
            foreach (var d in g.Devices)
                n += (ids.Name(d.VendorId, d.DeviceId)?.Length ?? 0) + (ids.Class(d.ClassCode)?.Length ?? 0);
        return n;
    }
}
