namespace CovariateShift.Packaging.Tests;

/// <summary>
/// scripts/covshift runs the set-up only when a command needs it (issue 18, defect 10): a copy of the script in a
/// scratch tree whose scripts/bootstrap.sh only records that it was called, with a stand-in `dotnet` on PATH that
/// "builds" by creating the dll and "runs" by printing its arguments.
/// </summary>
public sealed class CovshiftScriptTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDirectory("script");
    private readonly string _calls;

    public CovshiftScriptTests()
    {
        Directory.CreateDirectory(Path.Combine(_root, "scripts"));
        Directory.CreateDirectory(Path.Combine(_root, "src"));
        Directory.CreateDirectory(Path.Combine(_root, "bin"));
        foreach (var f in new[] { "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props" })
        {
            File.WriteAllText(Path.Combine(_root, f), "<Project />\n");
        }

        File.Copy(Path.Combine(TestPaths.RepositoryRoot, "scripts", "covshift"), Path.Combine(_root, "scripts", "covshift"));
        _calls = Path.Combine(_root, "calls.txt");
        WriteScript(Path.Combine(_root, "scripts", "bootstrap.sh"), $"echo \"bootstrap $*\" >> '{_calls}'\n");
        WriteScript(Path.Combine(_root, "bin", "dotnet"), $$"""
            if [ "$1" = build ]; then
              while [ $# -gt 0 ]; do [ "$1" = -o ] && { mkdir -p "$2"; touch "$2/covshift.dll"; }; shift; done
              echo "build" >> '{{_calls}}'
            else
              echo "run $*" >> '{{_calls}}'
            fi
            """);
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Theory]
    [InlineData("report runs/a --out r.html")]
    [InlineData("train --dataset gaussian --steps 5 --out runs/g")]
    [InlineData("train --dataset=gaussian --steps 5 --out runs/g")]
    [InlineData("train --data-dir /somewhere --out runs/m")]
    [InlineData("--help")]
    public void CommandsWithoutDefaultData_NeverRunTheSetUp_EvenWithAMissingDataDirectory(string arguments)
    {
        var (code, output) = Covshift(arguments, ("COVSHIFT_FASHION_MNIST", "/nonexistent/fashion-mnist"));
        Assert.True(code == 0, output);
        (code, output) = Covshift(arguments); // default data place, whether or not it is installed here
        Assert.True(code == 0, output);
        var calls = File.ReadAllLines(_calls);
        Assert.DoesNotContain(calls, c => c.StartsWith("bootstrap", StringComparison.Ordinal));
        Assert.Contains(calls, c => c.EndsWith(arguments, StringComparison.Ordinal) && c.StartsWith("run ", StringComparison.Ordinal));
    }

    [Fact]
    public void SecondCommand_DoesNotBuildAgain()
    {
        Covshift("report a --out r.html");
        Covshift("report b --out r.html");
        Assert.Single(File.ReadAllLines(_calls), c => c == "build");
    }

    private (int Code, string Output) Covshift(string arguments, params (string Key, string Value)[] env)
    {
        var environment = new Dictionary<string, string> { ["PATH"] = Path.Combine(_root, "bin") + ":/usr/bin:/bin" };
        foreach (var (k, v) in env)
        {
            environment[k] = v;
        }

        return ProcessRunner.Run("bash", $"scripts/covshift {arguments}", _root, TimeSpan.FromMinutes(1), environment);
    }

    private static void WriteScript(string path, string body)
    {
        File.WriteAllText(path, "#!/usr/bin/env bash\n" + body + "\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }
}
