using System.Text.RegularExpressions;
using Xunit;

namespace IommuKit.Cli.Tests;

/// <summary>
/// The shipped native AOT binary: it needs nothing but the C library (checked on its ELF header with <c>ldd</c> and at
/// run time with the loader's own trace), and it answers exactly as the in-process command does.
/// </summary>
public class NativeBinaryTests
{
    /// <summary>glibc's pieces (by soname): the only shared libraries the binary may need or load.</summary>
    private static readonly HashSet<string> GlibcOnly =
    [
        "linux-vdso.so.1", "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1",
        "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1",
    ];

    private static string Soname(string pathOrName) => Path.GetFileName(pathOrName.Trim());

    [NativeFact]
    public void LddListsOnlyTheCLibrary()
    {
        var ldd = NativeBinary.Exec("ldd", [NativeBinary.Path!]);
        Assert.Equal(0, ldd.Code);
        // "\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)" or "\t/lib64/ld-linux-x86-64.so.2 (0x...)"
        var libs = ldd.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => Soname(l.Trim().Split(' ')[0])).ToList();
        Assert.Contains("libc.so.6", libs);
        Assert.All(libs, l => Assert.True(GlibcOnly.Contains(l), $"the native iommu needs {l}, which is not part of the C library:\n{ldd.Out}"));
    }

    [NativeFact]
    public void NothingButTheCLibraryIsLoadedWhileComputingGroupsAndVerdicts()
    {
        // LD_DEBUG=libs makes the loader report every library it maps, including dlopen() at run time (the platform
        // SHA-256 once pulled in libssl that way, and aborted where there is none).
        foreach (var args in new[]
                 {
                     new[] { "groups", "--source", CliRunner.Oracle("b_rootports") },
                     ["vfio-check", "03:00.0", "--source", CliRunner.Oracle("b_rootports")],
                     ["groups", "--json", "--source", CliRunner.Oracle("g_k612_intel_mixed")],
                 })
        {
            var r = NativeBinary.Exec(NativeBinary.Path!, args, new Dictionary<string, string> { ["LD_DEBUG"] = "libs" });
            Assert.True(r.Code is 0 or 1, $"iommu {string.Join(' ', args)} exited {r.Code}:\n{r.Err}");
            var loaded = Regex.Matches(r.Err, @"calling init: (\S+)").Select(m => Soname(m.Groups[1].Value)).Distinct().ToList();
            var sought = Regex.Matches(r.Err, @"find library=(\S+?) \[").Select(m => Soname(m.Groups[1].Value)).Distinct().ToList();
            Assert.Contains("libc.so.6", loaded);
            Assert.All(loaded.Concat(sought), l => Assert.True(GlibcOnly.Contains(l), $"iommu {string.Join(' ', args)} loads {l} at run time"));
        }
    }

    [NativeFact]
    public void VersionNamesTheVersionAndTheCommit()
    {
        var r = NativeBinary.Run("--version");
        Assert.Equal(0, r.Code);
        Assert.Matches(@"^iommu \d+\.\d+\.\d+\S* \(commit ([0-9a-f]{40}(-dirty)?|unknown: built outside a git checkout)\)\n$", r.Out);
    }

    [NativeFact]
    public void AnswersExactlyAsTheInProcessCommand()
    {
        foreach (var args in new[]
                 {
                     new[] { "groups", "--pci-ids", CliRunner.SampleIds, "--source", CliRunner.Oracle("g_k612_intel_mixed") },
                     ["explain", "03:00.0", "--source", CliRunner.Oracle("b_rootports")],
                     ["vfio-check", "03:00.0", "--json", "--source", CliRunner.Oracle("b_rootports")],
                     ["set-type", "7", "identity", "--source", CliRunner.Oracle("e_typetest_dma")],
                     ["explain", "99:00.0", "--source", CliRunner.Oracle("b_rootports")],
                 })
        {
            var native = NativeBinary.Exec(NativeBinary.Path!, args, new Dictionary<string, string> { ["NO_COLOR"] = "1" }, cwd: CliRunner.FixturesDir);
            var managed = CliRunner.Run(args);
            string strip(string s) => s.Replace(CliRunner.FixturesDir + "/", "");
            Assert.Equal((managed.Code, managed.Out, managed.Err), (native.Code, strip(native.Out), strip(native.Err)));
        }
    }
}

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
