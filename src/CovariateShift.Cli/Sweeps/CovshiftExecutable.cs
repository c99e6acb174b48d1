using System.Reflection;

namespace CovariateShift.Cli.Sweeps;

/// <summary>
/// The command that runs this covshift again (for point processes and Slurm tasks): the installed <c>covshift</c>
/// executable itself, or <c>dotnet covshift.dll</c> when run through the dotnet host (the dll beside this assembly, so
/// it also works when the CLI is loaded by another host, e.g. a test runner).
/// </summary>
public static class CovshiftExecutable
{
    /// <summary>The program and the arguments that come before covshift's own arguments (e.g. ["/usr/bin/dotnet", "/opt/covshift/covshift.dll"]).</summary>
    /// <exception cref="InvalidOperationException">Neither a covshift executable nor covshift.dll can be found.</exception>
    public static IReadOnlyList<string> Command()
    {
        var process = Environment.ProcessPath;
        if (process is not null && Path.GetFileNameWithoutExtension(process) == "covshift") return [process];
        var host = process is not null && Path.GetFileNameWithoutExtension(process) == "dotnet"
            ? process
            : Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h : "dotnet";
        var entry = Assembly.GetEntryAssembly();
        if (entry?.GetName().Name == "covshift" && entry.Location.Length > 0) return [host, entry.Location];
        var beside = Path.Combine(Path.GetDirectoryName(typeof(CovshiftExecutable).Assembly.Location) ?? AppContext.BaseDirectory, "covshift.dll");
        if (File.Exists(beside)) return [host, beside];
        throw new InvalidOperationException($"Cannot find the covshift executable to run sweep points (looked for {beside}); run covshift as an executable or with dotnet covshift.dll.");
    }
}
