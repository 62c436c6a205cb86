using IommuKit.Host;
using IommuKit.Sources;

namespace IommuKit.Cli.Commands;

/// <summary><c>set-type --apply</c>: where it may write, then the library's <see cref="HostAnalysis.ApplySetType"/>.</summary>
internal static partial class SetTypeCommand
{
    /// <summary>
    /// Performs the plan on a live sysfs (the host's <c>/</c>, or a directory root given with <c>--source</c>) through the
    /// root-confined writer (<see cref="SysfsWriter"/>).
    /// </summary>
    private static SetTypeOutcome Apply(string? sourcePath, SetTypePlan plan, HostModel model)
    {
        string root = sourcePath ?? "/";
        if (!Directory.Exists(Path.Combine(root, "sys", "kernel", "iommu_groups")))
            throw new CliException($"--apply needs a live host (or a directory root with sysfs), not {sourcePath ?? "this host"}", ExitCode.Unsupported);
        if (root == "/" && !Environment.IsPrivilegedProcess)
            throw new CliException("--apply must run as root (writing the type file needs CAP_SYS_ADMIN and CAP_SYS_RAWIO)", ExitCode.Unsupported);
        return HostAnalysis.ApplySetType(plan, model, new SysfsAccess(new SysfsWriter(root)));
    }
}
