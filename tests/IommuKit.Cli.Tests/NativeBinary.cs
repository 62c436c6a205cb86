using System.Diagnostics;
using System.Runtime.InteropServices;
using Xunit;

namespace IommuKit.Cli.Tests;

/// <summary>
/// The native AOT <c>iommu</c> that <c>./build.sh native</c> publishes into <c>out/&lt;rid&gt;/iommu</c>. Tests do not
/// build it themselves (an AOT publish takes minutes): <c>.ci/run</c> runs <c>build.sh</c> before the tests, and a
/// developer does the same. <c>IOMMU_NATIVE</c> names another binary.
/// </summary>
internal static class NativeBinary
{
    /// <summary>The checkout: the nearest directory above the test assembly that holds <c>IommuKit.slnx</c>.</summary>
    public static string? RepoRoot { get; } = FindRepoRoot();

    public static string Rid => RuntimeInformation.OSArchitecture == Architecture.Arm64 ? "linux-arm64" : "linux-x64";

    public static string? Path { get; } = Find();

    /// <summary>Why tests of the native binary cannot run here, or null.</summary>
    public static string? Missing =>
        !OperatingSystem.IsLinux() ? "the native binary is built and tested on Linux only"
        : Path is null ? $"no native binary at out/{Rid}/iommu: build it with ./build.sh native (.ci/run does this first), or set IOMMU_NATIVE"
        : null;

    private static string? FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(System.IO.Path.Combine(d.FullName, "IommuKit.slnx"))) return d.FullName;
        return null;
    }

    private static string? Find()
    {
        string? env = Environment.GetEnvironmentVariable("IOMMU_NATIVE");
        if (!string.IsNullOrEmpty(env)) return File.Exists(env) ? System.IO.Path.GetFullPath(env) : null;
        if (RepoRoot is null) return null;
        string p = System.IO.Path.Combine(RepoRoot, "out", Rid, "iommu");
        return File.Exists(p) ? p : null;
    }

    public sealed record Result(int Code, string Out, string Err);

    /// <summary>Runs a program to completion (killed after <paramref name="timeout"/>), capturing both streams.</summary>
    public static Result Exec(string file, IEnumerable<string> args, IDictionary<string, string>? env = null, TimeSpan? timeout = null, string? cwd = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = cwd ?? RepoRoot ?? Environment.CurrentDirectory,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout ?? TimeSpan.FromMinutes(1)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)}: still running after {timeout ?? TimeSpan.FromMinutes(1)}");
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Runs the native binary.</summary>
    public static Result Run(params string[] args) => Exec(Path!, args);

    /// <summary>A program on PATH, or null.</summary>
    public static string? OnPath(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string p = System.IO.Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        return null;
    }
}

/// <summary>A fact about the native binary: skipped, with the reason, when it has not been built.</summary>
public sealed class NativeFactAttribute : FactAttribute
{
    public NativeFactAttribute()
    {
        if (NativeBinary.Missing is { } why) Skip = why;
    }
}
