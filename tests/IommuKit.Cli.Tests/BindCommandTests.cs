using System.Formats.Tar;
using System.IO.Compression;
using IommuKit.Cli.Commands;
using IommuKit.Host;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

/// <summary>
/// <c>iommu bind</c>/<c>unbind</c> (issue 10): dry run by default, <c>--apply</c> on a directory root extracted from an
/// oracle snapshot, with a failure injected at every step and the restore checked.
/// </summary>
public class BindCommandTests
{
    private static void WithExtractedRoot(string machine, Action<string> body)
    {
        string root = Path.Combine(Path.GetTempPath(), "iommukit-bind-" + Guid.NewGuid().ToString("N"));
        try
        {
            Directory.CreateDirectory(root);
            using (var gz = new GZipStream(File.OpenRead(Oracle(machine)), CompressionMode.Decompress))
                TarFile.ExtractToDirectory(gz, root, overwriteFiles: false);
            body(root);
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    private static string? Override(string root, string device)
    {
        string p = Path.Combine(root, "sys/bus/pci/devices", device, "driver_override");
        return File.Exists(p) ? File.ReadAllText(p).TrimEnd('\n') : null;
    }

    [Fact]
    public void DryRunPrintsExactlyTheWritesAndWritesNothing()
    {
        WithExtractedRoot("g_k612_intel_mixed", root =>
        {
            var r = Run("bind", "03:00.0", "--source", root);
            Assert.Equal(0, r.Code);
            Assert.Equal([
                "Dry run: `iommu bind 03:00.0 --apply` would write (load the module first: modprobe vfio-pci):",
                "  echo 0000:03:00.0 > /sys/bus/pci/drivers/e1000e/unbind",
                "  echo vfio-pci > /sys/bus/pci/devices/0000:03:00.0/driver_override",
                "  echo 0000:03:00.0 > /sys/bus/pci/drivers_probe",
                "  echo 0000:03:00.1 > /sys/bus/pci/drivers/e1000e/unbind",
                "  echo vfio-pci > /sys/bus/pci/devices/0000:03:00.1/driver_override",
                "  echo 0000:03:00.1 > /sys/bus/pci/drivers_probe",
                "Undo: iommu unbind 03:00.0 --apply",
                "Persistent (binds by id at boot): add vfio-pci.ids=8086:10d3 to the kernel command line, or put \"options vfio-pci ids=8086:10d3\" in /etc/modprobe.d/vfio.conf",
            ], r.Lines);
            Assert.Contains("warning: the same ids also match 00:02.0, 00:05.0", r.Err);
            Assert.Null(Override(root, "0000:03:00.0"));
            Assert.False(File.Exists(Path.Combine(root, "sys/bus/pci/drivers_probe")));
        });
    }

    [Fact]
    public void ApplyWithYesBindsBothFunctionsAndUnbindGivesThemBack()
    {
        WithExtractedRoot("g_k612_intel_mixed", root =>
        {
            var r = Run("bind", "03:00.0", "--source", root, "--apply", "--yes", "--json");
            Assert.True(r.Code == 0, r.Out + r.Err);
            Assert.True(r.Json.GetProperty("applied").GetBoolean());
            Assert.Equal(6, r.Json.GetProperty("done").GetArrayLength());
            Assert.Equal(["e1000e", "e1000e"], r.Json.GetProperty("previous").EnumerateArray().Select(p => p.GetProperty("driver").GetString()));
            Assert.Equal("iommu unbind 03:00.0 --apply", r.Json.GetProperty("undo").GetString());
            Assert.Equal("vfio-pci", Override(root, "0000:03:00.0"));
            Assert.Equal("vfio-pci", Override(root, "0000:03:00.1"));
            Assert.Equal("0000:03:00.1", File.ReadAllText(Path.Combine(root, "sys/bus/pci/drivers_probe")));
        });
    }

    [Fact]
    public void ApplyWithoutATerminalOrYesWritesNothing()
    {
        WithExtractedRoot("g_k612_intel_mixed", root =>
        {
            BindCommand.Confirm = _ => false;
            try
            {
                var r = Run("bind", "03:00.0", "--source", root, "--apply");
                Assert.Equal(1, r.Code);
                Assert.Contains("not confirmed; nothing written", r.Err);
                Assert.Null(Override(root, "0000:03:00.0"));
            }
            finally
            {
                BindCommand.Confirm = null;
            }
        });
    }

    [Fact]
    public void IommuAlonePrintsHelpListingBindAndUnbind()
    {
        var r = Run();
        Assert.Equal(0, r.Code);
        Assert.Contains(r.Lines, l => l.TrimStart().StartsWith("bind ", StringComparison.Ordinal));
        Assert.Contains(r.Lines, l => l.TrimStart().StartsWith("unbind ", StringComparison.Ordinal));
    }

    [Fact]
    public void ApplyOnASnapshotTarballIsUnsupported() =>
        Assert.Equal(5, Run("bind", "03:00.0", "--source", Oracle("g_k612_intel_mixed"), "--apply", "--yes").Code);

    [Fact]
    public void BindRefusesAGroupSharedWithAnotherDevice()
    {
        // 0b:01.0 shares group 18 with 0b:02.0 behind a PCIe-to-PCI bridge.
        var r = Run("bind", "0b:01.0", "--source", Oracle("g_k612_intel_mixed"));
        Assert.Equal(1, r.Code);
        Assert.StartsWith("iommu: refusing to bind 0b:01.0: shares-group: the group also holds 0b:02.0", r.Err);
    }

    /// <summary>Fails the write number <see cref="FailAt"/> (0-based) and passes every other to the real root.</summary>
    private sealed class FailingSysfs(SysfsWriter inner, int failAt) : ISysfsAccess
    {
        private int _writes;
        public int FailAt => failAt;
        public bool Live => false;
        public void Write(string path, string text)
        {
            if (_writes++ == failAt) throw new IOException($"injected failure at write {failAt}");
            inner.Write(path, text);
        }
        public string? Read(string path) => inner.Read(path);
        public string? DriverOf(PciAddress device) => inner.DriverOf(device);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void AFailureAtAnyStepRestoresEveryTouchedDeviceAndReportsEachRestoreStep(int failAt)
    {
        WithExtractedRoot("g_k612_intel_mixed", root =>
        {
            var machine = MachineSource.Load(root);
            var plan = HostAnalysis.VfioCheck(HostAnalysis.Analyze(machine), PciAddress.Parse("03:00.0"), null);
            Assert.Equal(6, plan.Steps.Count);
            var outcome = HostAnalysis.ApplyBind(plan, new FailingSysfs(new SysfsWriter(root), failAt));
            Assert.False(outcome.Ok);
            Assert.Contains("injected failure", outcome.Failure);
            Assert.Equal(failAt + 1, outcome.Done.Count);
            Assert.False(outcome.Done[^1].Ok);
            // Devices touched: the first (steps 0-2), and the second from step 3 on. Each gets its override cleared and
            // its old driver bound again, the later device first.
            var touched = failAt < 3 ? new[] { "0000:03:00.0" } : ["0000:03:00.1", "0000:03:00.0"];
            Assert.Equal(touched.SelectMany(d => new[] { $"/sys/bus/pci/devices/{d}/driver_override", "/sys/bus/pci/drivers/e1000e/bind" }),
                outcome.Restore.Select(a => a.Action.Path));
            Assert.All(outcome.Restore, a => Assert.True(a.Ok));
            Assert.Equal(touched.Select(d => d), outcome.Restore.Where(a => a.Action.Kind == HostActionKind.Bind).Select(a => a.Action.Device));
            Assert.Equal("", Override(root, "0000:03:00.0") ?? "");
            Assert.Equal("", Override(root, "0000:03:00.1") ?? "");
        });
    }

    [Fact]
    public void AFailureInTheCliPrintsTheRestoreAndExitsOne()
    {
        WithExtractedRoot("g_k612_intel_mixed", root =>
        {
            // A directory where drivers_probe belongs: the first probe fails.
            Directory.CreateDirectory(Path.Combine(root, "sys/bus/pci/drivers_probe"));
            var r = Run("bind", "03:00.0", "--source", root, "--apply", "--yes");
            Assert.Equal(1, r.Code);
            Assert.Contains("  restored let any driver claim 0000:03:00.0 again: echo > /sys/bus/pci/devices/0000:03:00.0/driver_override", r.Lines);
            Assert.Contains("  restored bind 0000:03:00.0 back to e1000e: echo 0000:03:00.0 > /sys/bus/pci/drivers/e1000e/bind", r.Lines);
            Assert.DoesNotContain(r.Lines, l => l.StartsWith("Undo:", StringComparison.Ordinal));
        });
    }

    [Fact]
    public void ActionsAreConfinedToTheRoot()
    {
        WithExtractedRoot("g_k612_intel_mixed", root =>
        {
            var sysfs = new SysfsWriter(root);
            Assert.Throws<IOException>(() => sysfs.Write("/sys/../../../etc/passwd", "x"));
            string outside = Path.Combine(Path.GetTempPath(), "iommukit-outside-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(outside);
            try
            {
                // An absolute link is read from the root, so it cannot point out of it.
                File.CreateSymbolicLink(Path.Combine(root, "sys/bus/pci/evil"), outside);
                sysfs.Write("/sys/bus/pci/evil/f", "x");
                Assert.False(File.Exists(Path.Combine(outside, "f")));
                Assert.True(File.Exists(Path.Combine(root, outside.TrimStart('/'), "f")) || !Directory.Exists(Path.Combine(root, outside.TrimStart('/'))));
            }
            catch (IOException)
            {
                // Refusing is also confinement.
            }
            finally
            {
                Directory.Delete(outside, recursive: true);
            }
        });
    }
}
