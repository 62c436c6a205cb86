using Spectre.Console;

namespace IommuKit.Cli.Rendering;

/// <summary>
/// <c>iommu fleet</c>'s progress bar (Spectre.Console): drawn on standard error only when it is the process's own and a
/// terminal, and cleared when the work is done; anywhere else (pipes, files, tests) nothing is drawn.
/// </summary>
internal static class FleetProgress
{
    /// <summary>Whether a bar would be drawn for <paramref name="total"/> items on this console.</summary>
    public static bool Wanted(CliConsole console, int total) =>
        total > 1 && console.IsProcessConsole && !Console.IsErrorRedirected;

    /// <summary>
    /// Runs <paramref name="work"/>, handing it a callback that takes the number of items done (from any thread), under
    /// a bar when <see cref="Wanted"/>; otherwise hands it null and draws nothing.
    /// </summary>
    public static T Run<T>(CliConsole console, int total, string what, Func<Action<int>?, T> work)
    {
        if (!Wanted(console, total)) return work(null);
        var terminal = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(Console.Error),
            // Wanted() has already found stderr to be a terminal; Spectre's own detection looks at stdout, which may be
            // a pipe (`iommu fleet DIR > table.txt` still wants the bar).
            Ansi = AnsiSupport.Yes,
            Interactive = InteractionSupport.Yes,
            ColorSystem = console.Color ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
        });
        return terminal.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(what, autoStart: true, maxValue: total);
                var result = work(done => task.Value = done);
                task.Value = total;
                return result;
            });
    }
}
