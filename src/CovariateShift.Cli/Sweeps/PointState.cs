using System.Text.Json;
using System.Text.Json.Serialization;
using CovariateShift.Training.Runtime;

namespace CovariateShift.Cli.Sweeps;

/// <summary>Where a sweep point stands.</summary>
public enum PointStatus
{
    /// <summary>Not started (or a Slurm task waiting in the queue).</summary>
    Pending,

    /// <summary>Training now.</summary>
    Running,

    /// <summary>Trained every step; summary.json written.</summary>
    Finished,

    /// <summary>The loss became NaN or infinite; the run stopped there (a result, not a failure).</summary>
    Diverged,

    /// <summary>Stopped by Ctrl+C / SIGTERM (e.g. a Slurm time limit or scancel) after saving a checkpoint; a rerun resumes it.</summary>
    Interrupted,

    /// <summary>The train process failed (its error's first line is kept), or stopped without reporting how.</summary>
    Failed,
}

/// <summary>
/// points/&lt;id&gt;/state.json: what the sweep knows about a point's attempts (the run directory holds the run itself).
/// Written by the process that runs the point.
/// </summary>
/// <param name="Status">The last known status.</param>
/// <param name="Attempts">How many times the point was started.</param>
/// <param name="Started">When the last attempt started.</param>
/// <param name="Ended">When the last attempt ended (null while running).</param>
/// <param name="ElapsedSeconds">Wall seconds of every ended attempt together.</param>
/// <param name="ExitCode">Exit code of the last attempt's training (null while running).</param>
/// <param name="Error">First line of the last attempt's error (failed points).</param>
/// <param name="Pid">Process id of the last attempt.</param>
/// <param name="Host">Machine of the last attempt.</param>
/// <param name="SlurmJob">Slurm job and array task of the last attempt (e.g. 42_3), null outside Slurm.</param>
public sealed record PointState(
    PointStatus Status, int Attempts, DateTimeOffset? Started, DateTimeOffset? Ended, double ElapsedSeconds,
    int? ExitCode, string? Error, int? Pid, string? Host, string? SlurmJob)
{
    /// <summary>The file name in points/&lt;id&gt;/.</summary>
    public const string FileName = "state.json";

    /// <summary>The output of the point's process (local engine).</summary>
    public const string OutputFileName = "output.log";

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    };

    /// <summary>Writes state.json into <paramref name="pointDirectory"/> atomically.</summary>
    public void Save(string pointDirectory) => SafeFile.WriteAtomic(Path.Combine(pointDirectory, FileName), JsonSerializer.Serialize(this, JsonOptions) + "\n");

    /// <summary>Reads state.json of <paramref name="pointDirectory"/>; null when there is none or it cannot be read.</summary>
    public static PointState? Load(string pointDirectory)
    {
        var path = Path.Combine(pointDirectory, FileName);
        try
        {
            return File.Exists(path) ? JsonSerializer.Deserialize<PointState>(File.ReadAllText(path), JsonOptions) : null;
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
