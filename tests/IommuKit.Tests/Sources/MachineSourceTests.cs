using System.Text;
using IommuKit.Sources;
using Xunit;

namespace IommuKit.Tests.Sources;

public class MachineSourceTests
{
    [Fact]
    public void EveryLspciDumpOfTheCorpusIsDetectedAsLspci()
    {
        var dumps = Fixtures.LspciDumps().ToList();
        Assert.NotEmpty(dumps);
        foreach (var f in dumps)
            Assert.True(MachineSource.Detect(File.ReadAllBytes(f)) == MachineSourceKind.Lspci, $"{Path.GetFileName(f)} not detected as lspci");
    }

    [Fact]
    public void EveryOracleTarballIsDetectedFromItsGzipMagic()
    {
        foreach (var m in Fixtures.OracleMachines())
            Assert.Equal(MachineSourceKind.Tarball, MachineSource.Detect(File.ReadAllBytes(Fixtures.OracleTarball(m))));
    }

    [Fact]
    public void PlainUncompressedTarIsDetectedAndLoads()
    {
        using var gz = new System.IO.Compression.GZipStream(File.OpenRead(Fixtures.OracleTarball("a_rootcomplex")), System.IO.Compression.CompressionMode.Decompress);
        using var raw = new MemoryStream();
        gz.CopyTo(raw);
        var bytes = raw.ToArray();
        Assert.Equal(MachineSourceKind.Tarball, MachineSource.Detect(bytes));
        SourceTestKit.AssertSameMachine(MachineSource.Load(Fixtures.OracleTarball("a_rootcomplex")), MachineSource.LoadBytes(bytes, "a.tar"));
    }

    [Theory]
    [InlineData("hello world\n")]
    [InlineData("")]
    [InlineData("# just a comment\n")]
    public void TextThatIsNoKnownKindIsRejectedAsNotAMachine(string text)
    {
        var ex = Assert.Throws<InputException>(() => MachineSource.LoadBytes(Encoding.UTF8.GetBytes(text), "x.txt"));
        Assert.StartsWith("x.txt: not a machine", ex.Message);
    }
}
