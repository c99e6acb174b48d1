using System.Text.Json;
using CovariateShift.Training.Runtime;

namespace CovariateShift.Training.Training;

/// <summary>
/// The files of a trainer run (all null without an output directory, except a metrics file named by the user's
/// <see cref="MonitorOptions.JsonLinesPath"/>): where they are, and their state before the first step (a new run
/// starts training.jsonl afresh; a resumed run drops the lines written after its checkpoint).
/// </summary>
internal sealed record RunFiles(string? OutputDirectory, string? Metrics, string? TrainingLog, string? TensorBoard, string? Checkpoints)
{
    /// <summary>Path of <c>forecast.jsonl</c> when the monitor's forecaster is on, or null.</summary>
    public string? Forecast { get; init; }

    /// <summary>Path of <c>checkpoints/last</c>, or null.</summary>
    public string? LastCheckpoint => Checkpoints is null ? null : Path.Combine(Checkpoints, TrainerOptions.LastCheckpointName);

    public static RunFiles For(TrainerOptions o)
    {
        var dir = o.OutputDirectory is { } d ? Path.GetFullPath(d) : null;
        if (dir is null)
            return new RunFiles(null, o.Monitor?.JsonLinesPath is { } m ? Path.GetFullPath(m) : null, null, null, null);
        return new RunFiles(dir, Path.Combine(dir, TrainerOptions.MetricsFileName), Path.Combine(dir, TrainerOptions.TrainingLogFileName),
            o.TensorBoard ? Path.Combine(dir, TrainerOptions.TensorBoardDirectoryName) : null, Path.Combine(dir, TrainerOptions.CheckpointsDirectoryName))
        {
            Forecast = o.Monitor?.Forecast is not null ? Path.Combine(dir, CovariateShift.Forecast.ForecastFile.FileName) : null,
        };
    }

    /// <summary>Creates the output directory; a new run empties training.jsonl and forecast.jsonl (the monitor truncates
    /// metrics.jsonl), a resumed one drops the lines of all three written after the checkpoint at step <paramref name="start"/>.</summary>
    public void Prepare(long start, bool resumed)
    {
        if (OutputDirectory is null) return;
        Directory.CreateDirectory(OutputDirectory);
        foreach (var path in new[] { Metrics!, TrainingLog!, Forecast })
        {
            if (path is null) continue;
            if (File.Exists(path)) SafeFile.RefuseSymlink(path);
        }
        if (resumed)
        {
            LineFile.Filter(TrainingLog!, line => StepOf(line) <= start);
            LineFile.Filter(Metrics!, line => StepOf(line) < start);
            if (Forecast is not null) LineFile.Filter(Forecast, line => StepOf(line) < start);
        }
        else
        {
            foreach (var path in new[] { TrainingLog!, Forecast })
            {
                if (path is not null && File.Exists(path)) File.WriteAllBytes(path, []);
            }
        }
    }

    private static long StepOf(string line)
    {
        try
        {
            using var doc = JsonDocument.Parse(line);
            return doc.RootElement.GetProperty("step").GetInt64();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return long.MaxValue;   // not a line of ours: dropped
        }
    }
}

/// <summary>The run's evaluations (a resumed run's include those before its checkpoint), the best accuracy and their count.</summary>
internal sealed class EvaluationTracker(TrainingState? resumed)
{
    private readonly List<EvaluationResult> _all = [.. resumed?.EvaluationHistory ?? []];

    public IReadOnlyList<EvaluationResult> All => _all;

    public double? Best { get; private set; } = resumed?.BestAccuracy;

    public int Count { get; private set; } = resumed?.Evaluations ?? 0;

    /// <summary>Step of the last evaluation of the run, or -1.</summary>
    public long LastStep => _all.Count > 0 ? _all[^1].Step : -1;

    public void Add(EvaluationResult e, long stepsPerEpoch, TrainingLog? log)
    {
        _all.Add(e);
        Count++;
        Best = Math.Max(Best ?? double.NegativeInfinity, e.Accuracy);
        log?.Test(e.Step, (double)e.Step / stepsPerEpoch, e.Loss, e.Accuracy);
    }
}
