using System.Text;

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
    /// <summary>
    /// <c>--apply</c> failed and putting the previous state back failed too: the host was left changed (a driver unbound,
    /// another type written). The output lists each restore step and what failed.
    /// </summary>
    HostLeftChanged = 6,
    /// <summary>
    /// A bug: an exception other than bad input or a command-line error reached the top (sysexits.h EX_SOFTWARE). The
    /// message asks for a report; no input should ever cause it (the fuzz tests check).
    /// </summary>
    InternalError = 70,
}

/// <summary>The "Exit codes:" line of every <c>--help</c>, built from <see cref="ExitCode"/> so help texts cannot drift apart.</summary>
internal static class ExitCodeHelp
{
    /// <summary>The meaning of a code when a command gives none of its own (the root <c>--help</c> lists all).</summary>
    public static string Meaning(ExitCode code) => code switch
    {
        ExitCode.Ok => "ok",
        ExitCode.Negative => "negative verdict",
        ExitCode.NoIommu => "no IOMMU",
        ExitCode.InputError => "bad input",
        ExitCode.UsageError => "usage error",
        ExitCode.Unsupported => "unsupported here",
        ExitCode.HostLeftChanged => "host left changed",
        ExitCode.InternalError => "internal error (a bug: please report it)",
        _ => throw new ArgumentOutOfRangeException(nameof(code), code, null),
    };

    /// <summary>
    /// <c>Exit codes: 0 …, 1 …, 3 bad input, 4 usage error.</c>: the command's own codes with their meaning there, plus
    /// 3 and 4, which every command can return (a bad source or address; a parse error), in numeric order.
    /// </summary>
    public static string Line(params (ExitCode Code, string Meaning)[] own)
    {
        var all = new SortedDictionary<int, string>
        {
            [(int)ExitCode.InputError] = Meaning(ExitCode.InputError),
            [(int)ExitCode.UsageError] = Meaning(ExitCode.UsageError),
        };
        foreach (var (code, meaning) in own) all[(int)code] = meaning;
        var sb = new StringBuilder("Exit codes: ");
        foreach (var (code, meaning) in all)
        {
            if (sb.Length > "Exit codes: ".Length) sb.Append(", ");
            sb.Append(code).Append(' ').Append(meaning);
        }
        return sb.Append('.').ToString();
    }

    /// <summary>Every code with its general meaning, for the root <c>--help</c>.</summary>
    public static string All() => Line(Enum.GetValues<ExitCode>().Select(c => (c, Meaning(c))).ToArray());
}
