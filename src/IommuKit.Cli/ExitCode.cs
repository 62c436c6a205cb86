namespace IommuKit.Cli;

/// <summary>The <c>iommu</c> command's exit codes. Documented in <c>docs/cli.md</c> and <c>iommu --help</c>.</summary>
public enum ExitCode
{
    /// <summary>Success; for verdicts (<c>vfio-check</c>), viable.</summary>
    Ok = 0,
    /// <summary>A negative verdict: not viable for passthrough, a model/kernel disagreement, a change refused.</summary>
    Negative = 1,
    /// <summary>The machine has no active IOMMU: no groups exist.</summary>
    NoIommu = 2,
    /// <summary>Bad input: a file, dump or machine that breaks a rule (the message names where and which).</summary>
    InputError = 3,
    /// <summary>Bad command line: unknown option, missing argument.</summary>
    UsageError = 4,
    /// <summary>Not possible here: needs root, or a live host, or the source lacks the facts.</summary>
    Unsupported = 5,
}
