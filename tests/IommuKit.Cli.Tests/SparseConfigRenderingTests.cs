using IommuKit.Cli.Commands;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Cli.Tests;

/// <summary>
/// Issue 11 (speed on a live host): with the sparse config read a live sysfs gets (forced here on every captured machine,
/// extracted to a directory and read through pread), <c>groups</c> and <c>vfio-check</c> print exactly what they print
/// from the whole read.
/// </summary>
public class SparseConfigRenderingTests
{
    public static TheoryData<string> Machines()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Path.Combine(CliRunner.FixturesDir, "oracle"), "*.expected.json").Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(f)[..^".expected.json".Length]);
        return data;
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void GroupsAndVfioCheckPrintTheSameFromTheSparseRead(string name)
    {
        string root = HostileKit.ExtractOracle(name);
        try
        {
            var whole = SysfsReader.Read(new DirectoryFileTree(root, name), name, ConfigRead.Whole);
            var sparse = SysfsReader.Read(new DirectoryFileTree(root, name), name, ConfigRead.Needed, new ConfigReadHooks(ForceSparse: true));
            Assert.Contains(sparse.Topology.Devices, d => !d.Facts.Config!.IsComplete);
            foreach (bool json in new[] { false, true })
            {
                Assert.Equal(Groups(whole, json), Groups(sparse, json));
                foreach (var d in whole.Topology.Devices)
                    Assert.Equal(Vfio(whole, d.Address.ToString(), json), Vfio(sparse, d.Address.ToString(), json));
            }
        }
        finally { HostileKit.Cleanup(root); }
    }

    private static (int, string, string) Groups(Machine m, bool json) => Capture(c =>
        GroupsCommand.Run(c, null, null, json, legacy: false, GroupsCommand.Filter.None, CliRunner.SampleIds, machine: m));

    private static (int, string, string) Vfio(Machine m, string address, bool json) => Capture(c =>
        VfioCheckCommand.Run(c, address, null, null, null, json, CliRunner.SampleIds, machine: m));

    private static (int, string, string) Capture(Func<CliConsole, int> run)
    {
        var o = new StringWriter { NewLine = "\n" };
        var e = new StringWriter { NewLine = "\n" };
        int code = run(new CliConsole(o, e, color: false));
        return (code, o.ToString(), e.ToString());
    }
}
