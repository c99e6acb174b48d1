using System.Text.Json;
using System.Text.Json.Serialization;
using CovariateShift.Training.Runtime;

namespace CovariateShift.Cli.Sweeps;

/// <summary>A point as sweep.json keeps it.</summary>
/// <param name="Index">Position (the Slurm array task id).</param>
/// <param name="Id">Its id (the name of its run directory under runs/).</param>
/// <param name="Axes">Axis name → value text.</param>
/// <param name="Arguments">The <c>covshift train</c> arguments, without <c>--out</c>.</param>
public sealed record ManifestPoint(int Index, string Id, IReadOnlyDictionary<string, string> Axes, IReadOnlyList<string> Arguments);

/// <summary>One <c>sbatch</c> submission of a sweep.</summary>
/// <param name="JobId">The Slurm job id (of the array).</param>
/// <param name="Submitted">When it was submitted.</param>
/// <param name="Indices">The array task ids (point indices) it runs.</param>
public sealed record SlurmSubmission(string JobId, DateTimeOffset Submitted, IReadOnlyList<int> Indices);

/// <summary>
/// DIR/sweep.json: the spec as given, its expanded points (ids and train arguments), and the Slurm submissions. The
/// point tasks read their arguments from here, so a task runs exactly the point its sweep planned.
/// </summary>
public sealed record SweepManifest
{
    /// <summary>The file name in the sweep directory.</summary>
    public const string FileName = "sweep.json";

    /// <summary>Current format version.</summary>
    public const int CurrentVersion = 1;

    /// <summary>Format version.</summary>
    public int Version { get; init; } = CurrentVersion;

    /// <summary>The spec document.</summary>
    public required JsonElement Spec { get; init; }

    /// <summary>Every axis name, in order (the results' axis columns).</summary>
    public required IReadOnlyList<string> AxisNames { get; init; }

    /// <summary>The points.</summary>
    public required IReadOnlyList<ManifestPoint> Points { get; init; }

    /// <summary>Slurm submissions, oldest first (empty for a local sweep).</summary>
    public IReadOnlyList<SlurmSubmission> SlurmJobs { get; init; } = [];

    /// <summary>When the sweep directory was first planned.</summary>
    public DateTimeOffset Created { get; init; }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip,
    };

    /// <summary>The manifest of <paramref name="plan"/>.</summary>
    public static SweepManifest From(SweepPlan plan, DateTimeOffset created)
    {
        ArgumentNullException.ThrowIfNull(plan);
        using var doc = JsonDocument.Parse(plan.Spec.Json);
        return new SweepManifest
        {
            Spec = doc.RootElement.Clone(),
            AxisNames = plan.AxisNames,
            Points = plan.Points.Select(p => new ManifestPoint(p.Index, p.Id, p.AxisValues, p.Arguments)).ToList(),
            Created = created,
        };
    }

    /// <summary>The path of sweep.json in <paramref name="directory"/>.</summary>
    public static string PathIn(string directory) => Path.Combine(directory, FileName);

    /// <summary>Whether <paramref name="directory"/> has a sweep.json.</summary>
    public static bool Exists(string directory) => File.Exists(PathIn(directory));

    /// <summary>Writes sweep.json atomically.</summary>
    public void Save(string directory) => SafeFile.WriteAtomic(PathIn(directory), JsonSerializer.Serialize(this, JsonOptions) + "\n");

    /// <summary>Reads sweep.json of <paramref name="directory"/>.</summary>
    /// <exception cref="ArgumentException">There is none: not a sweep directory.</exception>
    /// <exception cref="InvalidDataException">It is not a valid manifest; the message names the file.</exception>
    public static SweepManifest Load(string directory)
    {
        var path = PathIn(directory);
        if (!File.Exists(path))
            throw new ArgumentException(Directory.Exists(directory) ? $"'{directory}' is not a sweep directory: it has no {FileName} (covshift sweep SPEC.json --out DIR writes one)." : $"sweep directory '{directory}' does not exist.");
        try
        {
            var m = JsonSerializer.Deserialize<SweepManifest>(File.ReadAllText(path), JsonOptions) ?? throw new InvalidDataException($"'{path}' is empty.");
            if (m.Version > CurrentVersion) throw new InvalidDataException($"'{path}' has version {m.Version}; this covshift reads up to version {CurrentVersion}.");
            if (m.Points is null || m.AxisNames is null) throw new InvalidDataException($"'{path}' has no points; expected the file covshift sweep wrote.");
            for (int i = 0; i < m.Points.Count; i++)
            {
                if (m.Points[i].Index != i || string.IsNullOrEmpty(m.Points[i].Id) || m.Points[i].Arguments is null)
                    throw new InvalidDataException($"'{path}': point {i} is malformed; expected index {i}, an id and arguments.");
            }
            return m with { SlurmJobs = m.SlurmJobs ?? [] };
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not a valid sweep manifest: {e.Message}", e);
        }
    }

    /// <summary>
    /// Refuses to reuse this (earlier) manifest's run directories for different points: a point of
    /// <paramref name="next"/> whose id is here must have the same train arguments.
    /// </summary>
    /// <exception cref="ArgumentException">The first point whose options changed, naming it, the old and the new options.</exception>
    public void CheckCompatible(SweepManifest next, string directory)
    {
        ArgumentNullException.ThrowIfNull(next);
        var old = Points.ToDictionary(p => p.Id, StringComparer.Ordinal);
        foreach (var p in next.Points)
        {
            if (old.TryGetValue(p.Id, out var was) && !was.Arguments.SequenceEqual(p.Arguments, StringComparer.Ordinal))
            {
                throw new ArgumentException(
                    $"'{directory}' holds another sweep whose point '{p.Id}' has different options (there: {string.Join(" ", was.Arguments)}; this spec: {string.Join(" ", p.Arguments)}); " +
                    "its run directory would be reused for a different point. Use another --out, or the spec that directory was made with.");
            }
        }
    }
}

/// <summary>The files of a sweep directory.</summary>
public static class SweepLayout
{
    /// <summary>Run directories: runs/&lt;id&gt;.</summary>
    public const string RunsDirectoryName = "runs";

    /// <summary>Per-point bookkeeping: points/&lt;id&gt;/ (state.json, output.log, the point's lock).</summary>
    public const string PointsDirectoryName = "points";

    /// <summary>Slurm task output: logs/slurm-JOB_TASK.out.</summary>
    public const string LogsDirectoryName = "logs";

    /// <summary>The Slurm batch script.</summary>
    public const string ScriptFileName = "sweep.sbatch";

    /// <summary>One row per point, CSV.</summary>
    public const string ResultsCsvFileName = "results.csv";

    /// <summary>One row per point, JSON Lines.</summary>
    public const string ResultsJsonLinesFileName = "results.jsonl";

    /// <summary>The run directory of point <paramref name="id"/>.</summary>
    public static string RunDirectory(string sweepDirectory, string id) => Path.Combine(sweepDirectory, RunsDirectoryName, id);

    /// <summary>The bookkeeping directory of point <paramref name="id"/>.</summary>
    public static string PointDirectory(string sweepDirectory, string id) => Path.Combine(sweepDirectory, PointsDirectoryName, id);

    /// <summary>
    /// Creates <paramref name="directory"/> (refusing a file or a symbolic link) and takes the sweep's exclusive lock
    /// (DIR/.lock) for as long as the result is not disposed.
    /// </summary>
    /// <exception cref="IOException">Another covshift process holds it (the message names its process id), or it cannot be created.</exception>
    public static RunLock Lock(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var full = Path.GetFullPath(directory);
        SafeFile.RefuseSymlink(full.TrimEnd(Path.DirectorySeparatorChar));
        if (File.Exists(full)) throw new IOException($"--out '{directory}' is an existing file; expected a sweep directory.");
        Directory.CreateDirectory(full);
        try
        {
            return RunLock.Acquire(full);
        }
        catch (IOException e)
        {
            string holder = "unknown";
            try
            {
                holder = File.ReadAllText(Path.Combine(full, RunLock.PidFileName)).Trim();
            }
            catch (Exception r) when (r is IOException or UnauthorizedAccessException)
            {
                // keep "unknown"
            }
            throw new IOException($"The sweep directory '{full}' is in use by another covshift sweep (pid {holder}); wait for it to finish or stop it, or choose another --out.", e);
        }
    }

    /// <summary>Creates <paramref name="path"/> and its parents below <paramref name="root"/>, refusing symbolic links on the way.</summary>
    public static string CreateBelow(string root, string path)
    {
        var full = Path.GetFullPath(path);
        var relative = Path.GetRelativePath(root, full);
        var current = root;
        foreach (var part in relative.Split(Path.DirectorySeparatorChar))
        {
            current = Path.Combine(current, part);
            SafeFile.RefuseSymlink(current);
            Directory.CreateDirectory(current);
        }
        return full;
    }
}
