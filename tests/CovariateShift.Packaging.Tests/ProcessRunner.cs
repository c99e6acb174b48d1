using System.Diagnostics;
using System.Text;

namespace CovariateShift.Packaging.Tests;

/// <summary>Runs a command to completion with a time limit; the result carries its exit code and output.</summary>
internal static class ProcessRunner
{
    public static (int ExitCode, string Output) Run(string file, string arguments, string workingDirectory, TimeSpan timeout, IDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(file, arguments)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        // The test process's own MSBuild settings must not leak into the builds it starts.
        foreach (var key in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "DOTNET_HOST_PATH" })
        {
            info.Environment.Remove(key);
        }

        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[k] = v;
        }

        var output = new StringBuilder();
        using var p = new Process { StartInfo = info };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            return (-1, $"timed out after {timeout.TotalSeconds:F0} s: {file} {arguments}\n{output}");
        }

        p.WaitForExit();
        lock (output)
        {
            return (p.ExitCode, output.ToString());
        }
    }

    /// <summary>Runs <c>dotnet ARGS</c> and fails the test with the output when it does not exit 0.</summary>
    public static string Dotnet(string arguments, string workingDirectory, TimeSpan timeout, IDictionary<string, string>? environment = null)
    {
        var (code, output) = Run("dotnet", arguments, workingDirectory, timeout, environment);
        Assert.True(code == 0, $"dotnet {arguments} (in {workingDirectory}) exited {code}:\n{Tail(output)}");
        return output;
    }

    public static string Tail(string text, int chars = 6000) => text.Length <= chars ? text : "..." + text[^chars..];
}
