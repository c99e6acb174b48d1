using System.Text.Json;
using CovariateShift.Forecast;
using CovariateShift.Reports.Data;
using CovariateShift.Records;
using CovariateShift.Schema;

namespace CovariateShift.Experiments.Forecasting;

/// <summary>
/// One training run read back from its directory, however it was produced: the monitor's records
/// (<c>metrics.jsonl</c> through <see cref="MetricsReader"/>, losses included), the per-step losses, the failure step
/// (<see cref="FailureLabel"/>) and the warnings the run's own forecaster wrote (<c>forecast.jsonl</c>, when present).
/// </summary>
/// <param name="Name">The run's name (its directory name).</param>
/// <param name="Seed">The run's seed (it decides whether the run tunes or evaluates).</param>
/// <param name="Records">The recorded steps, in step order.</param>
/// <param name="Losses">(step, loss) in step order: training.jsonl's training losses (every step with <c>--log-every 1</c>;
/// else the recorded steps' losses), and the non-finite loss of the step where a run stopped (summary.json).</param>
/// <param name="FailureStep">The failure step, or null for a run that did not fail.</param>
/// <param name="RecordedForecasts">The warnings in the run's forecast.jsonl (empty when it has none).</param>
public sealed record RunTrace(string Name, int Seed, IReadOnlyList<StepRecord> Records, IReadOnlyList<(long Step, double Loss)> Losses, long? FailureStep, IReadOnlyList<DivergenceForecast> RecordedForecasts)
{
    /// <summary>Whether the run failed (see <see cref="FailureLabel"/>).</summary>
    public bool Failed => FailureStep is not null;

    /// <summary>Reads the run in <paramref name="directory"/> (a classifier over <paramref name="classes"/> classes).</summary>
    /// <exception cref="FileNotFoundException">The directory has no metrics.jsonl.</exception>
    public static RunTrace Load(string directory, int seed, int classes)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var metrics = MetricsReader.Read(Path.Combine(directory, RunLoader.MetricsFile));
        // training.jsonl's "step" is the number of steps done: its loss is the loss of step "step - 1".
        var losses = File.Exists(Path.Combine(directory, RunLoader.TrainingFile))
            ? RunLoader.Load(directory, "run").Train.Select(p => (p.Step - 1, p.Loss)).ToList()
            : metrics.Steps.Where(s => s.Loss is not null).Select(s => (s.Step, s.Loss!.Value)).ToList();
        if (DivergedAt(directory) is { } at && (losses.Count == 0 || losses[^1].Item1 < at))
            losses.Add((at, metrics.Steps.FirstOrDefault(s => s.Step == at)?.Loss ?? double.NaN));
        return new RunTrace(Path.GetFileName(Path.TrimEndingDirectorySeparator(directory)), seed, metrics.Steps, losses,
            FailureLabel.FailureStep(losses, classes), ForecastFile.Read(Path.Combine(directory, ForecastFile.FileName)));
    }

    /// <summary>summary.json's diverged step (camelCase or snake_case), or null.</summary>
    private static long? DivergedAt(string directory)
    {
        var path = Path.Combine(directory, RunLoader.SummaryFile);
        if (!File.Exists(path)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            foreach (var name in (string[])["divergedAtStep", "diverged_at_step"])
            {
                if (doc.RootElement.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number) return v.GetInt64();
            }
            return null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
