using IommuKit.Cli.Rendering;
using IommuKit.Sources;

namespace IommuKit.Cli;

/// <summary>Turns the <c>--source</c> option into a machine, the same way for every command.</summary>
public static class SourceResolver
{
    /// <summary>Logical name of the bundled example machine (the oracle's g_k612_intel_mixed snapshot).</summary>
    public const string ExampleResource = "IommuKit.Cli.example-machine.tar.gz";

    /// <summary>Origin of the bundled machine, as messages show it.</summary>
    public const string ExampleOrigin = "bundled example machine";

    /// <summary>
    /// <paramref name="source"/> given: <see cref="MachineSource.Load(string, Func{Stream})"/> it (kind auto-detected; <c>-</c> is standard input). Omitted: the live
    /// host at <c>/</c>; when the host has no PCI sysfs (a container, another OS) the bundled example machine, with a
    /// note on stderr saying so. The machine's load warnings are printed on stderr (<c>warning: …</c>).
    /// </summary>
    /// <exception cref="InputException">The source is bad input (exit code 3 at the command boundary).</exception>
    /// <param name="hostRoot">The root read when <paramref name="source"/> is omitted (tests point it at a directory).</param>
    /// <param name="loud">Also say it as the first line of standard output (text output; JSON keeps stdout pure).</param>
    /// <param name="config">
    /// How much of a live host's config files to read: the registers the model decodes (the default) or, for commands
    /// that write the raw bytes (<c>export</c>), the whole files.
    /// </param>
    public static Machine Resolve(string? source, CliConsole console, string hostRoot = "/", bool loud = false, ConfigRead config = ConfigRead.Needed)
    {
        Machine machine;
        if (!string.IsNullOrEmpty(source))
        {
            machine = MachineSource.Load(source, console.OpenInput, config);
        }
        else if (MachineSource.LoadHost(hostRoot, config) is { } host)
        {
            machine = host;
        }
        else
        {
            if (loud)
                console.Out.WriteLine(Style.For(console).Bad("THIS HOST HAS NO PCI SYSFS: SHOWING AN EXAMPLE MACHINE (a QEMU guest), NOT THIS HOST.") +
                                      " Use --source PATH to read a snapshot, an lspci dump or a directory root.");
            console.Error.WriteLine("note: this host has no PCI sysfs (/sys/bus/pci/devices); showing the bundled example machine " +
                                    "(a QEMU q35 guest with intel-iommu). Use --source PATH to read another machine.");
            machine = LoadExample();
        }
        foreach (var w in machine.Warnings) console.Warn(w);
        return machine;
    }

    /// <summary>The bundled example machine.</summary>
    public static Machine LoadExample()
    {
        using var stream = typeof(SourceResolver).Assembly.GetManifestResourceStream(ExampleResource)
            ?? throw new InvalidOperationException($"embedded resource {ExampleResource} is missing from the build");
        return MachineSource.LoadTarball(stream, ExampleOrigin);
    }
}
