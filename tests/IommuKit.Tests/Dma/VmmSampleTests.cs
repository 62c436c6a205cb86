using IommuKit.Samples;
using IommuKit.Simulation;
using Xunit;

namespace IommuKit.Tests.Dma;

/// <summary>Runs the sample of docs/vmm-sample.md (compiled into this project from docs/samples/) and checks the doc shows it.</summary>
public class VmmSampleTests
{
    [Fact]
    public void TheVmmSampleRunsEndToEndOnTheBridgeMachine()
    {
        var r = VmmSample.Run(Fixtures.OracleTarball("d_pcibridge"));
        Assert.Equal("hello, guest", r.Received);                 // the NIC model's DMA reached guest memory
        Assert.Equal(DmaFaultReason.NotPresent, r.OldMapping);     // after the type change the old mapping faults
        Assert.Equal(Errno.ENOENT, r.UnmapOld);
        Assert.Equal("hello, guest", r.ReceivedAfterChange);       // and a new mapping works
        var fault = Assert.Single(r.Faults);
        Assert.Equal("0000:04:01.0", fault.Device!.Name);
        Assert.Equal("NotPresent", fault.Reason);
        Assert.Equal(new IommuKit.Pci.PciAddress(0, 4, 0, 0).RequesterId, fault.RequesterId); // the bridge's alias
    }

    [Fact]
    public void TheDocumentShowsTheSampleThatIsCompiledAndRun()
    {
        string doc = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "DocSamples", "vmm-sample.md"));
        string source = File.ReadAllText(FindRepoFile("docs/samples/VmmSample.cs"));
        Assert.Contains("```csharp\n" + source.TrimEnd() + "\n```", doc.ReplaceLineEndings("\n"));
    }

    private static string FindRepoFile(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, relative);
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException(relative);
    }
}
