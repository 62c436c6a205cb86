using System.CommandLine;
using IommuKit.Cli.Commands;

namespace IommuKit.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var console = CliConsole.FromProcess();
        int code = Run(args, console);
        try { console.Out.Flush(); }
        catch (IOException ex)
        {
            // Standard output went away (a closed pipe): say so, as a failed write during the command would have.
            return InternalError(console, ex);
        }
        return code;
    }

    /// <summary>Runs the command line against a console; the single place user errors become exit codes.</summary>
    public static int Run(string[] args, CliConsole console)
    {
        var root = BuildRoot(console, args);
        // `iommu` alone is a request for help, not a usage error: one line per command, examples, exit codes once.
        if (RootHelp.Asked(args)) return RootHelp.Write(console, root);
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) console.Error.WriteLine($"iommu: {e.Message}");
            console.Error.WriteLine("Run 'iommu --help' for usage.");
            return (int)ExitCode.UsageError;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration
            {
                Output = console.Out,
                Error = console.Error,
                EnableDefaultExceptionHandler = false,
            });
        }
        catch (CliException ex)
        {
            console.Error.WriteLine($"iommu: {ex.Message}");
            return (int)ex.Code;
        }
        catch (InputException ex)
        {
            console.Error.WriteLine($"iommu: {ex.Message}");
            return (int)ExitCode.InputError;
        }
        catch (Exception ex) when (ex is not (OutOfMemoryException or StackOverflowException))
        {
            // Last resort: anything else is a bug, never the user's fault. One line, no stack trace, a distinct code.
            return InternalError(console, ex);
        }
    }

    /// <summary>Reports a bug that reached the top as one line on stderr; returns <see cref="ExitCode.InternalError"/>.</summary>
    internal static int InternalError(CliConsole console, Exception ex)
    {
        try
        {
            console.Error.WriteLine($"iommu: internal error: {ex.GetType().FullName}: {TextSafety.Escape(ex.Message)} " +
                                    "(please report this at the IommuKit issue tracker with the command line and input)");
        }
        catch (IOException)
        {
            // stderr itself failed: the exit code still tells.
        }
        return (int)ExitCode.InternalError;
    }

    /// <summary>The root with every command (help, completions, the man page).</summary>
    internal static RootCommand BuildRoot(CliConsole console) => BuildRoot(console, []);

    /// <summary>The root with the commands <paramref name="args"/> needs (<see cref="CommandRegistry.For"/>).</summary>
    internal static RootCommand BuildRoot(CliConsole console, IReadOnlyList<string> args)
    {
        var root = new RootCommand(
            "IommuKit: IOMMU groups exactly as Linux computes them, why devices share a group, what a change would do, " +
            "and whether a group can be passed through to a VM.\n\n" + ExitCodeHelp.All());
        foreach (var command in CommandRegistry.For(args, console)) root.Subcommands.Add(command);
        VersionInfo.Attach(root, console);
        return root;
    }
}
