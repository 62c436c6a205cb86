using System.CommandLine;
using System.CommandLine.Invocation;
using System.Reflection;

namespace IommuKit.Cli;

/// <summary>
/// What <c>iommu --version</c> prints: <c>iommu 0.1.0 (commit 0123abc…)</c>. The version is the assembly's
/// <c>Version</c>; the commit is the SDK's <c>SourceRevisionId</c>, which it appends to the informational version
/// after a '+' (set from git by the SDK's source control integration, or by <c>build.sh</c>, which adds
/// <c>-dirty</c> for a tree with uncommitted changes).
/// </summary>
internal static class VersionInfo
{
    /// <summary>The informational version split at its first '+': (version, commit or null).</summary>
    public static (string Version, string? Commit) Parse(string informational)
    {
        int plus = informational.IndexOf('+', StringComparison.Ordinal);
        if (plus < 0) return (informational, null);
        string commit = informational[(plus + 1)..];
        return (informational[..plus], commit.Length == 0 ? null : commit);
    }

    /// <summary>The one line <c>--version</c> prints, without the newline.</summary>
    public static string Line(string informational)
    {
        var (version, commit) = Parse(informational);
        return $"iommu {version} (commit {commit ?? "unknown: built outside a git checkout"})";
    }

    /// <summary>This assembly's informational version (the SDK always sets it).</summary>
    public static string Informational =>
        typeof(VersionInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    /// <summary>Replaces the root's default <c>--version</c> action (which prints only the raw string).</summary>
    public static void Attach(RootCommand root, CliConsole console)
    {
        foreach (var option in root.Options)
            if (option is VersionOption v) v.Action = new PrintAction(console);
    }

    private sealed class PrintAction(CliConsole console) : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            console.Out.WriteLine(Line(Informational));
            return (int)ExitCode.Ok;
        }
    }
}
