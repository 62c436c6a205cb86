using System.CommandLine;
using Xunit;

namespace IommuKit.Cli.Tests;

/// <summary>
/// What <c>./build.sh install</c> ships besides the binary: the man page generated from the help texts
/// (<c>tools/ship/manpage.sh</c>) and the shell completions, which ask the binary through System.CommandLine's
/// <c>[suggest:N]</c> directive. Run against the framework-dependent <c>iommu</c> next to the tests, so they need no
/// native build; the install itself needs the native binary.
/// </summary>
public class ShippingTests
{
    private static string Repo => NativeBinary.RepoRoot ?? throw new InvalidOperationException("no checkout above the test assembly");

    /// <summary>The framework-dependent apphost the test project copies next to itself.</summary>
    private static string AppHost => Path.Combine(AppContext.BaseDirectory, "iommu");

    private static string[] BashComplete(string line)
    {
        string script = Path.Combine(Repo, "tools", "ship", "completions", "iommu.bash");
        // What bash sets before calling a completion function: the words, the word under the cursor, the line.
        string words = string.Join(' ', line.Split(' ').Select(w => $"'{w}'"));
        string program =
            $"source '{script}'\n" +
            $"COMP_LINE='{line}'; COMP_POINT={line.Length}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n" +
            "_iommu\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n";
        var env = new Dictionary<string, string> { ["PATH"] = AppContext.BaseDirectory + ":" + Environment.GetEnvironmentVariable("PATH") };
        var r = NativeBinary.Exec("bash", ["-c", program], env);
        Assert.True(r.Code == 0, r.Err);
        return r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    [Fact]
    public void BashCompletionCompletesCommandsAndTheirOptionsFromTheBinary()
    {
        if (!OperatingSystem.IsLinux()) return;
        Assert.Equal(["groups"], BashComplete("iommu gro"));
        Assert.Equal(["--json"], BashComplete("iommu groups --js"));
        Assert.Equal(["--apply"], BashComplete("iommu set-type 3 identity --ap"));
        var all = BashComplete("iommu ");
        foreach (var c in Program.BuildRoot(new CliConsole(TextWriter.Null, TextWriter.Null, false)).Subcommands)
            Assert.Contains(c.Name, all);
        Assert.DoesNotContain(all, w => w.StartsWith('/')); // Windows-style /? /h are never offered
    }

    [Fact]
    public void BashCompletionOffersNothingOfItsOwnForAPathSoBashCompletesFileNames()
    {
        if (!OperatingSystem.IsLinux()) return;
        Assert.Empty(BashComplete("iommu groups --source "));
    }

    /// <summary>A fact that needs a shell that is not always installed (zsh, fish): skipped, saying so, without it.</summary>
    public sealed class ShellFactAttribute : FactAttribute
    {
        public ShellFactAttribute(string shell)
        {
            if (!OperatingSystem.IsLinux() || NativeBinary.OnPath(shell) is null) Skip = $"{shell} is not installed (apt-get install {shell}): its completion script is untested here";
        }
    }

    private static Dictionary<string, string> WithAppHostOnPath() =>
        new() { ["PATH"] = AppContext.BaseDirectory + ":" + Environment.GetEnvironmentVariable("PATH") };

    [ShellFact("fish")]
    public void FishCompletionCompletesCommandsAndOptionsFromTheBinary()
    {
        string script = Path.Combine(Repo, "tools", "ship", "completions", "iommu.fish");
        var r = NativeBinary.Exec("fish", ["-c", $"source '{script}'; complete -C 'iommu gro'; echo ---; complete -C 'iommu groups --js'"], WithAppHostOnPath());
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("groups\n---\n--json\n", r.Out);
    }

    [ShellFact("zsh")]
    public void ZshCompletionCompletesCommandsAndOptionsAndFallsBackToFiles()
    {
        string script = Path.Combine(Repo, "tools", "ship", "completions", "_iommu");
        // compadd and _files exist only inside zsh's completion system: stand-ins that print what they were given.
        string program =
            "compadd() { print -l -- \"${candidates[@]}\"; }; _files() { print FILES; }\n" +
            $"source '{script}' >/dev/null 2>&1\n" +
            "words=(iommu gro); CURRENT=2; _iommu; print -r -- ---\n" +
            "words=(iommu groups --js); CURRENT=3; _iommu; print -r -- ---\n" +
            "words=(iommu groups --source ''); CURRENT=4; _iommu\n";
        var r = NativeBinary.Exec("zsh", ["-c", program], WithAppHostOnPath());
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal("groups\n---\n--json\n---\nFILES\n", r.Out);
    }

    [Fact]
    public void ManPageHasEveryCommandAndEveryOptionOfItsHelp()
    {
        if (!OperatingSystem.IsLinux()) return;
        var r = NativeBinary.Exec("bash", [Path.Combine(Repo, "tools", "ship", "manpage.sh"), AppHost, "2026-01-01"]);
        Assert.True(r.Code == 0, r.Err);
        string page = r.Out;
        Assert.StartsWith(".\\\" -*- coding: UTF-8 -*-\n", page);
        Assert.Contains(".TH IOMMU 1 \"2026-01-01\" \"iommu ", page);
        var root = Program.BuildRoot(new CliConsole(TextWriter.Null, TextWriter.Null, false));
        foreach (var command in root.Subcommands)
        {
            Assert.Contains($"\n.SS {command.Name}\n", page);
            foreach (var option in command.Options)
                Assert.Contains(option.Name.Replace("-", "\\-"), page);
        }
        Assert.DoesNotMatch(@"(?m)^[.'](?!\\""|TH |SH |SS |TP|PP|br|B |I |RI |BR )", page); // no help line read as a roff request

        if (NativeBinary.OnPath("groff") is null) return;
        string file = Path.Combine(Path.GetTempPath(), $"iommu-{Guid.NewGuid():N}.1");
        try
        {
            File.WriteAllText(file, page);
            var groff = NativeBinary.Exec("groff", ["-k", "-man", "-Tutf8", "-ww", "-z", file]);
            Assert.True(groff.Code == 0 && groff.Err.Length == 0, $"groff warns about the generated page:\n{groff.Err}");
        }
        finally { File.Delete(file); }
    }

    [NativeFact]
    public void InstallPutsBinaryManPageAndCompletionsUnderThePrefix()
    {
        string dest = Path.Combine(Path.GetTempPath(), $"iommu-install-{Guid.NewGuid():N}");
        try
        {
            var env = new Dictionary<string, string> { ["DESTDIR"] = dest, ["PREFIX"] = "/usr", ["NO_INSTALL_DEPS"] = "1" };
            var r = NativeBinary.Exec("bash", [Path.Combine(Repo, "build.sh"), "install"], env, TimeSpan.FromMinutes(2));
            Assert.True(r.Code == 0, r.Err);
            string bin = Path.Combine(dest, "usr", "bin", "iommu");
            Assert.Equal(File.ReadAllBytes(NativeBinary.Path!), File.ReadAllBytes(bin));
            if (OperatingSystem.IsLinux()) Assert.True(File.GetUnixFileMode(bin).HasFlag(UnixFileMode.OtherExecute));
            Assert.Contains(".SS groups", File.ReadAllText(Path.Combine(dest, "usr", "share", "man", "man1", "iommu.1")));
            foreach (var rel in new[] { "share/bash-completion/completions/iommu", "share/zsh/site-functions/_iommu", "share/fish/vendor_completions.d/iommu.fish" })
                Assert.Contains("[suggest:", File.ReadAllText(Path.Combine(dest, "usr", rel)));
        }
        finally
        {
            if (Directory.Exists(dest)) Directory.Delete(dest, recursive: true);
        }
    }
}
