
/// <summary>The linux-arm64 cross build (<c>./build.sh native-arm64</c>), run under qemu-user on an x64 host.</summary>
public class Arm64BinaryTests
{
    private static string? Arm64 => NativeBinary.RepoRoot is { } r && File.Exists(Path.Combine(r, "out", "linux-arm64", "iommu"))
        ? Path.Combine(r, "out", "linux-arm64", "iommu") : null;

    public sealed class Arm64FactAttribute : FactAttribute
    {
        public Arm64FactAttribute()
        {
            if (Arm64 is null) Skip = "no out/linux-arm64/iommu: ./build.sh native-arm64 cross-compiles it (not part of CI: it doubles the AOT time)";
            else if (NativeBinary.OnPath("qemu-aarch64") is null || !Directory.Exists("/usr/aarch64-linux-gnu"))
                Skip = "cannot run the arm64 binary here: needs qemu-aarch64 (qemu-user) and the arm64 C library (libc6-arm64-cross)";
        }
    }

    [Arm64Fact]
    public void TheArm64BuildNeedsOnlyTheCLibraryAndAnswersAsTheInProcessCommand()
    {
        var readelf = NativeBinary.Exec("readelf", ["-d", Arm64!]);
        var needed = Regex.Matches(readelf.Out, @"\(NEEDED\)\s+Shared library: \[([^\]]+)\]").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(["libm.so.6", "libc.so.6", "ld-linux-aarch64.so.1"], needed);
        string[] args = ["groups", "--pci-ids", CliRunner.SampleIds, "--source", CliRunner.Oracle("b_rootports")];
        var arm = NativeBinary.Exec("qemu-aarch64", ["-L", "/usr/aarch64-linux-gnu", Arm64!, .. args], new Dictionary<string, string> { ["NO_COLOR"] = "1" });
        var managed = CliRunner.Run(args);
        Assert.Equal((managed.Code, managed.Out), (arm.Code, arm.Out.Replace(CliRunner.FixturesDir + "/", "")));
    }
}
