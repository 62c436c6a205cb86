using IommuKit.Host;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Host;

/// <summary>
/// What <c>iommu fleet</c> takes as input: which files of a directory are machines (<see cref="MachineFiles"/>) and
/// what a baseline line may hold (<see cref="Fleet.ParseBaseline"/>).
/// </summary>
public class FleetInputTests
{
    [Fact]
    public void ABaselineIsTheFirstTokenOfEachLineWithCommentsAndBlankLinesSkipped()
    {
        var set = Fleet.ParseBaseline("# fleet of 2026-12\n\n0123456789ab  host-a group 3\n  fedcba987654\t# trailing\r\n0123456789ab\n", "b.txt");
        Assert.Equal(["0123456789ab", "fedcba987654"], set.Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("0123456789AB", 1)]
    [InlineData("0123456789a", 1)]
    [InlineData("# ok\n0123456789abc", 2)]
    [InlineData("0123456789ab\nnot-a-fingerprint", 2)]
    public void ABaselineTokenThatIsNotTwelveLowerCaseHexDigitsIsRefusedNamingTheLine(string text, int line)
    {
        var ex = Assert.Throws<InputException>(() => Fleet.ParseBaseline(text, "b.txt"));
        Assert.StartsWith($"b.txt:{line}: '", ex.Message, StringComparison.Ordinal);
        Assert.Contains("is not a group fingerprint (12 lower-case hex digits)", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ADirectoryContributesOnlyItsFilesThatLookLikeMachinesSortedAndAFileGivenIsTakenAsItIs()
    {
        var dir = Directory.CreateTempSubdirectory("iommu-fleet-input-");
        try
        {
            var dump = File.ReadAllText(Path.Combine(Fixtures.Lspci, "intel-h610-alderlake-asrock-h610m-hdv.txt"));
            File.WriteAllText(Path.Combine(dir.FullName, "b.txt"), dump);
            File.WriteAllText(Path.Combine(dir.FullName, "a.txt"), dump);
            File.WriteAllText(Path.Combine(dir.FullName, "notes.md"), "# not a machine\n");
            var given = Path.Combine(dir.FullName, "notes.md");
            var files = MachineFiles.Find([dir.FullName, given], max: 10);
            Assert.Equal([Path.Combine(dir.FullName, "a.txt"), Path.Combine(dir.FullName, "b.txt"), given], files);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void AMissingPathOrTooManyMachinesIsAnInputErrorNamingThePath()
    {
        var missing = Path.Combine(Path.GetTempPath(), $"iommu-no-such-{Guid.NewGuid():n}");
        Assert.Equal($"{missing}: no such file or directory", Assert.Throws<InputException>(() => MachineFiles.Find([missing], 10)).Message);
        var dump = Path.Combine(Fixtures.Lspci, "intel-h610-alderlake-asrock-h610m-hdv.txt");
        Assert.Equal($"{dump}: more than 1 machines: survey them in parts",
            Assert.Throws<InputException>(() => MachineFiles.Find([dump, dump], 1)).Message);
    }
}
