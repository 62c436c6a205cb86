using System.Text;
using IommuKit.Pci;
using IommuKit.Sources;
using Xunit;
using static IommuKit.Tests.Sources.SourceTestKit;

namespace IommuKit.Tests.Sources;

/// <summary>
/// Truncated, mutated and random inputs either load or fail with a one-line <see cref="InputException"/>: never another
/// exception, never a hang. Seeds are fixed so a failure reproduces.
/// </summary>
public class BadInputFuzzTests
{
    private static void LoadsOrRejectsCleanly(Func<Machine> load, string what)
    {
        try
        {
            var m = load();
            Assert.NotNull(m.Topology);
        }
        catch (InputException ex)
        {
            Assert.False(string.IsNullOrWhiteSpace(ex.Message), what);
            Assert.DoesNotContain('\n', ex.Message);
        }
        catch (Exception ex)
        {
            Assert.Fail($"{what}: {ex.GetType().Name} instead of InputException: {ex.Message}");
        }
    }

    [Fact]
    public void EveryPrefixOfAJsonMachineLoadsOrIsRejectedCleanly()
    {
        var m = Load(SmallMachine());
        var bytes = Encoding.UTF8.GetBytes(MachineJson.ToJson(m, includeConfig: false));
        int loaded = 0;
        for (int n = 0; n < bytes.Length; n++)
        {
            var prefix = bytes[..n];
            try { MachineSource.LoadBytes(prefix, "prefix.json"); loaded++; }
            catch (InputException ex) { Assert.DoesNotContain('\n', ex.Message); }
        }
        Assert.Equal(0, loaded); // a strict prefix always cuts the closing brace
    }

    [Fact]
    public void EveryPrefixOfASnapshotTarballIsRejectedCleanlyOrLoads()
    {
        var bytes = TarGz(SmallMachine());
        for (int n = 0; n < bytes.Length; n++)
        {
            LoadsOrRejectsCleanly(() => MachineSource.LoadBytes(bytes[..n], "prefix.tar.gz"), $"prefix {n}");
        }
        // And a real capture, every 5th prefix (the test budget of a shared build machine).
        var real = System.IO.File.ReadAllBytes(Fixtures.OracleTarball("f_no_viommu"));
        for (int n = 0; n < real.Length; n += 5)
        {
            LoadsOrRejectsCleanly(() => MachineSource.LoadBytes(real[..n], "prefix.tar.gz"), $"prefix {n}");
        }
    }

    [Fact]
    public void EveryPrefixOfAConfigSpaceDecodesOrIsTooShortForTheHeader()
    {
        var members = ReadMembers(Fixtures.OracleTarball("b_rootports"));
        foreach (var config in members.Where(x => x.Name.EndsWith("/config", StringComparison.Ordinal)).Select(x => x.Data!).Take(4))
        {
            for (int n = 0; n <= config.Length; n++)
            {
                if (n < ConfigSpace.UnprivilegedSize)
                {
                    Assert.Throws<ArgumentException>(() => new ConfigSpace(config.AsSpan(0, n)));
                    continue;
                }
                var facts = PciDeviceFacts.FromConfig(new PciAddress(0, 1, 0, 0), new ConfigSpace(config.AsSpan(0, n)), out _);
                Assert.Equal(n < 256 ? ConfigVisibility.HeaderOnly : n < 4096 && facts.Pcie is not null ? ConfigVisibility.NoExtended : ConfigVisibility.Full, facts.Visibility);
            }
        }
    }

    [Fact]
    public void HundredsOfMutatedSnapshotFilesLoadOrAreRejectedCleanly()
    {
        var members = ReadMembers(Fixtures.OracleTarball("c_switch"));
        var rng = new Random(20261121);
        int loaded = 0, rejected = 0;
        for (int iter = 0; iter < 300; iter++)
        {
            var copy = new List<Member>(members);
            int mutations = 1 + rng.Next(4);
            for (int k = 0; k < mutations; k++)
            {
                int i = rng.Next(copy.Count);
                var m = copy[i];
                if (m.Link is not null)
                {
                    string[] targets = ["../../..", "a/../../../../../../x", "/abs", "", "loop", ".", "../" + m.Name, m.Link + "/x", m.Link[..(rng.Next(m.Link.Length) + 1)]];
                    copy[i] = m with { Link = targets[rng.Next(targets.Length)] };
                    if (copy[i].Link == "") copy[i] = m with { Link = "x" };
                }
                else if (m.Data is not null)
                {
                    var data = (byte[])m.Data.Clone();
                    switch (rng.Next(4))
                    {
                        case 0: if (data.Length > 0) data[rng.Next(data.Length)] = (byte)rng.Next(256); break;
                        case 1: data = data[..rng.Next(data.Length + 1)]; break;
                        case 2: // corrupt the capability pointers, the interesting bytes of a config file
                            if (data.Length >= 0x150) { data[0x34] = (byte)rng.Next(256); data[0x102 + rng.Next(2)] = (byte)rng.Next(256); data[0x14a] = (byte)rng.Next(256); }
                            break;
                        default: rng.NextBytes(data); break;
                    }
                    copy[i] = m with { Data = data };
                }
                else
                {
                    copy.RemoveAt(i);
                }
            }
            try { Load(copy, "mutant.tar.gz"); loaded++; }
            catch (InputException ex) { Assert.DoesNotContain('\n', ex.Message); rejected++; }
        }
        Assert.Equal(300, loaded + rejected);
        Assert.True(loaded > 0 && rejected > 0, $"mutations should both load with warnings and be rejected ({loaded} loaded, {rejected} rejected)");
    }

    [Fact]
    public void HundredsOfMutatedGzipBytesAreRejectedCleanlyOrLoad()
    {
        var bytes = System.IO.File.ReadAllBytes(Fixtures.OracleTarball("a_rootcomplex"));
        var rng = new Random(7);
        for (int iter = 0; iter < 200; iter++)
        {
            var copy = (byte[])bytes.Clone();
            int flips = 1 + rng.Next(8);
            for (int k = 0; k < flips; k++) copy[2 + rng.Next(copy.Length - 2)] = (byte)rng.Next(256);
            LoadsOrRejectsCleanly(() => MachineSource.LoadBytes(copy, "flipped.tar.gz"), $"mutation {iter}");
        }
    }

    [Fact]
    public void HundredsOfMutatedJsonMachinesLoadOrAreRejectedCleanly()
    {
        var m = MachineSource.Load(Fixtures.OracleTarball("b_rootports"));
        string json = MachineJson.ToJson(m, includeConfig: false);
        var rng = new Random(42);
        const string alphabet = "{}[]\":,0123456789abcdefx-. nulltruefalse";
        for (int iter = 0; iter < 400; iter++)
        {
            var sb = new StringBuilder(json);
            int edits = 1 + rng.Next(5);
            for (int k = 0; k < edits && sb.Length > 0; k++)
            {
                int at = rng.Next(sb.Length);
                switch (rng.Next(3))
                {
                    case 0: sb[at] = alphabet[rng.Next(alphabet.Length)]; break;
                    case 1: sb.Remove(at, Math.Min(sb.Length - at, 1 + rng.Next(20))); break;
                    default: sb.Insert(at, alphabet[rng.Next(alphabet.Length)]); break;
                }
            }
            var bytes = Encoding.UTF8.GetBytes(sb.ToString());
            LoadsOrRejectsCleanly(() => MachineJson.Read(bytes, "mutant.json"), $"json mutation {iter}");
        }
    }

    [Theory]
    [InlineData("kernel_groups", "id")]
    [InlineData("devices", "kernel_group")]
    [InlineData("devices", "header_type")]
    public void AStringWhereANumberBelongsIsAnInputErrorNamingThePath(string list, string field)
    {
        var m = MachineSource.Load(Fixtures.OracleTarball("b_rootports"));
        var node = System.Text.Json.Nodes.JsonNode.Parse(MachineJson.ToJson(m, includeConfig: false))!;
        node[list]![0]![field] = "seven";
        var bytes = Encoding.UTF8.GetBytes(node.ToJsonString());
        var ex = Assert.Throws<InputException>(() => MachineJson.Read(bytes, "mutant.json"));
        Assert.Contains($"{list}[0].{field}", ex.Message);
    }

    [Fact]
    public void BinaryNoiseIsRejectedAsNotAMachine()
    {
        var rng = new Random(1);
        for (int iter = 0; iter < 50; iter++)
        {
            var noise = new byte[rng.Next(1, 5000)];
            rng.NextBytes(noise);
            LoadsOrRejectsCleanly(() => MachineSource.LoadBytes(noise, "noise.bin"), $"noise {iter}");
        }
        var zeros = new byte[4096];
        Assert.Contains("not a machine", Assert.Throws<InputException>(() => MachineSource.LoadBytes(zeros, "zeros.bin")).Message);
    }

    [Fact]
    public void NoiseWithGzipMagicIsRejectedAsACorruptArchive()
    {
        var noise = new byte[3000];
        new Random(3).NextBytes(noise);
        noise[0] = 0x1f; noise[1] = 0x8b;
        var ex = Assert.Throws<InputException>(() => MachineSource.LoadBytes(noise, "noise.tar.gz"));
        Assert.StartsWith("noise.tar.gz: ", ex.Message);
    }
}
