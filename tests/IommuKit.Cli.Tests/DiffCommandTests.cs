using Xunit;
using static IommuKit.Cli.Tests.CliRunner;

namespace IommuKit.Cli.Tests;

public class DiffCommandTests
{
    [Fact]
    public void SameTopologyOnTwoKernelsHasTheSamePartitionAndNamesTheKernelChange()
    {
        var r = Run("diff", Oracle("g_k61_intel_mixed"), Oracle("g_k612_intel_mixed"));
        Assert.Equal(0, r.Code);
        Assert.Equal(
        [
            "A: oracle/g_k61_intel_mixed.tar.gz (kernel 6.1.0-56-amd64, 19 groups from the kernel)",
            "B: oracle/g_k612_intel_mixed.tar.gz (kernel 6.12.95+deb12-amd64, 19 groups from the kernel)",
            "",
            "What changed in the machine:",
            "  kernel 6.1.0-56-amd64 -> 6.12.95+deb12-amd64",
            "",
            "Groups: the same partition (every group keeps its members and fingerprint).",
        ], r.Lines);
    }

    [Fact]
    public void DisableAcsRedirBootMergesARootPortWithItsCardAndGivesTheReasons()
    {
        // The same root ports booted without and with pci=disable_acs_redir=0000:00:06.0; the kernel's groups on both sides.
        var r = Run("diff", Oracle("b_rootports"), Oracle("h_disable_acs_redir"));
        Assert.Equal(1, r.Code);
        Assert.Contains("  command line: +pci=disable_acs_redir=0000:00:06.0", r.Lines);
        Assert.Contains("  merged: group 2 [00:06.0], group 11 [01:00.0] -> group 3 [00:06.0 01:00.0]", r.Lines);
        int i = Array.IndexOf(r.Lines, "  01:00.0");
        Assert.True(i > 0);
        Assert.Equal("    A: 00:06.0 is a root port with ACS SV|RR|CR|UF enabled, and the path above it to the root is isolated: the climb stops there", r.Lines[i + 1]);
        Assert.Equal("    B: 00:06.0 is a root port without ACS P2P Request Redirect and P2P Completion Redirect enabled, so everything below it shares its group", r.Lines[i + 2]);
    }

    [Fact]
    public void EachReasonStepIsALineOfItsOwnAlignedUnderTheFirst()
    {
        var r = Run("diff", Oracle("b_rootports"), Oracle("h_disable_acs_redir"));
        int i = Array.IndexOf(r.Lines, "  00:04.1");
        Assert.True(i > 0);
        Assert.Equal("    B: 00:04.1 sits on the root bus: root-complex-internal isolation is assumed, only aliases and same-slot functions can share its group", r.Lines[i + 2]);
        Assert.Equal("       00:04.0 is another function of the multifunction device 00:04.1, and neither isolates its functions with ACS (conventional PCI)", r.Lines[i + 3]);
    }

    [Fact]
    public void IommuOffToOnComparesThePredictionWithTheKernelsGroups()
    {
        var r = Run("diff", "--json", Oracle("f_intel_iommu_off"), Oracle("f_intel_iommu_default"));
        Assert.Equal(0, r.Code);
        Assert.True(r.Json.GetProperty("same").GetBoolean());
        Assert.False(r.Json.GetProperty("a").GetProperty("iommu_active").GetBoolean());
        Assert.Equal("model", r.Json.GetProperty("a").GetProperty("origin").GetString());
        Assert.Contains(r.Json.GetProperty("machine_changes").EnumerateArray(), c => c.GetString() == "IOMMU off -> on");
    }

    [Fact]
    public void MissingSecondSourceIsBadInput() =>
        Assert.Equal(3, Run("diff", Oracle("g_k61_intel_mixed"), "/nonexistent.tar.gz").Code);
}
