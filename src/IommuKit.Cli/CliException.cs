namespace IommuKit.Cli;

/// <summary>
/// The one user-facing error of the command: caught at the command boundary, printed as one line on stderr, mapped to
/// an exit code. Anything else that escapes is a bug and crashes loudly.
/// </summary>
public sealed class CliException(string message, ExitCode code = ExitCode.UsageError) : Exception(message)
{
    public ExitCode Code { get; } = code;
}
