using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;
using Xunit;

namespace IommuKit.Tests;

/// <summary>Issue 13: <c>dotnet pack</c> of the library gives a package with complete metadata whose README is the
/// library page of docs/ (docs/library.md), with the XML documentation of every public member.</summary>
public class PackageTests
{
    [Fact]
    public async Task PackGivesAPackageWhoseReadmeIsTheLibraryPageOfTheDocs()
    {
        string output = Directory.CreateTempSubdirectory("iommukit-pack-").FullName;
        try
        {
            string project = Path.Combine(Fixtures.RepoRoot, "src", "IommuKit", "IommuKit.csproj");
            var psi = new ProcessStartInfo(DotnetHost(), ["pack", project, "-c", "Release", "-o", output, "-nodeReuse:false", "-v", "q", "--nologo"])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
            using var pack = Process.Start(psi)!;
            Task<string> stdout = pack.StandardOutput.ReadToEndAsync(), stderr = pack.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            try
            {
                await pack.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                pack.Kill(entireProcessTree: true);
                throw new TimeoutException("dotnet pack did not finish in 5 minutes");
            }
            Assert.True(pack.ExitCode == 0, $"dotnet pack exited {pack.ExitCode}: {await stdout}{await stderr}");

            string nupkg = Assert.Single(Directory.GetFiles(output, "IommuKit.*.nupkg"));
            Assert.Single(Directory.GetFiles(output, "IommuKit.*.snupkg"));
            using var zip = ZipFile.OpenRead(nupkg);
            var nuspec = XDocument.Load(zip.GetEntry("IommuKit.nuspec")!.Open());
            XElement metadata = nuspec.Root!.Elements().Single(e => e.Name.LocalName == "metadata");
            string Field(string name) => metadata.Elements().SingleOrDefault(e => e.Name.LocalName == name)?.Value ?? "";

            Assert.Equal("IommuKit", Field("id"));
            Assert.Matches(@"^\d+\.\d+\.\d+", Field("version"));
            Assert.NotEqual("", Field("authors"));
            Assert.Equal("MIT", Field("license"));
            Assert.Contains("IOMMU", Field("description"));
            Assert.Contains("iommu", Field("tags").Split(' '));
            Assert.NotEqual("", Field("copyright"));
            Assert.Equal("library.md", Field("readme"));
            Assert.NotNull(metadata.Elements().SingleOrDefault(e => e.Name.LocalName == "repository"));

            string readme = new StreamReader(zip.GetEntry("library.md")!.Open()).ReadToEnd();
            Assert.Equal(File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "docs", "library.md")), readme);
            Assert.NotNull(zip.GetEntry("LICENSE"));
            Assert.NotNull(zip.GetEntry("lib/net10.0/IommuKit.dll"));
            var xmlDoc = XDocument.Load(zip.GetEntry("lib/net10.0/IommuKit.xml")!.Open());
            Assert.Contains(xmlDoc.Descendants("member"), m => (string?)m.Attribute("name") == "M:IommuKit.Dma.IommuCoreDmaExtensions.DmaApiFor(IommuKit.Core.IommuCore,IommuKit.Core.IommuDevice,IommuKit.Dma.IDmaPageAllocator,System.TimeProvider,System.UInt64)");
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    /// <summary>The <c>dotnet</c> that runs the tests (<c>DOTNET_HOST_PATH</c>, set by the SDK), else the one on PATH.</summary>
    private static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";
}
