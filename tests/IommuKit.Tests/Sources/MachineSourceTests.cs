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

    [Fact]
    public void FileOverTheInputCapIsRefusedNamingTheFileAndTheCapBeforeItIsRead()
    {
        string path = Path.Combine(Path.GetTempPath(), $"iommukit-huge-{Guid.NewGuid():n}.txt");
        try
        {
            // Sparse: the size is refused from the file's length, no byte is read.
            using (var fs = new FileStream(path, FileMode.CreateNew)) fs.SetLength(SourceLimits.MaxInputFileBytes + 1);
            var ex = Assert.Throws<InputException>(() => MachineSource.Load(path));
            Assert.StartsWith(path + ": ", ex.Message);
            Assert.Contains($"{SourceLimits.MaxInputFileBytes + 1} bytes", ex.Message);
            Assert.Contains($"{SourceLimits.MaxInputFileBytes / (1024 * 1024)} MiB cap", ex.Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void TheInputFileCapNeverRefusesWhatAReaderAccepts()
    {
        // A 4,096-device lspci -vvnn -xxxx dump is about 70 MB: the file cap must let through every dump, tarball and
        // JSON machine its reader would accept, so the reader's own cap is the one that binds.
        Assert.True(SourceLimits.MaxInputFileBytes >= IommuKit.Sources.Lspci.LspciReader.MaxTextLength);
        Assert.True(SourceLimits.MaxInputFileBytes >= SourceLimits.MaxTarUncompressedBytes);
        Assert.True(SourceLimits.MaxInputFileBytes >= MachineJson.MaxBytes);
    }

    [Fact]
    public void LspciFileLargerThanTheOldSixtyFourMiBFileCapLoads()
    {
        // One device, then blank lines (each under the line cap) to 65 MiB: a file the old 64 MiB cap refused.
        string path = Path.Combine(Path.GetTempPath(), $"iommukit-big-lspci-{Guid.NewGuid():n}.txt");
        try
        {
            using (var w = new StreamWriter(path, false, new UTF8Encoding(false)))
            {
                w.Write("00:1f.3 SMBus [0c05]: Intel Corporation Device [8086:a123]\n");
                string blank = new string(' ', 4000) + "\n";
                for (long n = 0; n < 65L * 1024 * 1024; n += blank.Length) w.Write(blank);
            }
            Assert.True(new FileInfo(path).Length > 64L * 1024 * 1024);
            var m = MachineSource.Load(path);
            Assert.Equal(1, m.Topology.Count);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void JsonMachineOverItsCapIsRefusedNamingTheOriginAndTheCap()
    {
        var bytes = new byte[MachineJson.MaxBytes + 1];
        bytes[0] = (byte)'{';
        var ex = Assert.Throws<InputException>(() => MachineSource.LoadBytes(bytes, "big.json"));
        Assert.StartsWith("big.json: ", ex.Message);
        Assert.Contains($"{MachineJson.MaxBytes / (1024 * 1024)} MiB cap", ex.Message);
    }
}
