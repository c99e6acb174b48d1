namespace CovariateShift.Reports.Data;

/// <summary>A point of a training curve.</summary>
/// <param name="Step">Training step.</param>
/// <param name="Loss">Cross-entropy loss (NaN when not known).</param>
/// <param name="Accuracy">Accuracy in [0, 1]; null for training points and when not known.</param>
public sealed record CurvePoint(long Step, double Loss, double? Accuracy);

/// <summary>A monitor warning kind on a layer, as the report's warnings table shows it.</summary>
/// <param name="Layer">Layer name.</param>
/// <param name="Kind">Anomaly kind (e.g. "Saturated", "VanishingGradient").</param>
/// <param name="FirstStep">Step of the first warning.</param>
/// <param name="Count">How many times it was warned (a warning repeats only after the anomaly cleared).</param>
/// <param name="Hint">The monitor's hint about what to check.</param>
public sealed record RunWarning(string Layer, string Kind, long FirstStep, int Count, string Hint);

/// <summary>Everything the report shows about one run directory.</summary>
/// <param name="Name">Short unique name shown on the page (the directory name, made unique).</param>
/// <param name="Directory">Full path of the run directory.</param>
/// <param name="Metrics">The monitor's metrics; null when the directory has none that could be read.</param>
/// <param name="Train">Training-loss curve (training.jsonl, else the loss of each recorded step in metrics.jsonl).</param>
/// <param name="Test">Test loss and accuracy (training.jsonl, else summary.json's evaluations).</param>
/// <param name="Warnings">Monitor warnings by layer and kind: the anomalies of log.clef, and the forecaster's
/// DivergenceAhead warnings (from forecast.jsonl when the run has one, else from log.clef).</param>
/// <param name="Facts">Key facts of the run (config.json / model.json / summary.json / finetune.json), flattened to "key: value" pairs.</param>
/// <param name="Notes">What was missing or skipped, in words.</param>
public sealed record RunData(
    string Name,
    string Directory,
    RunMetrics? Metrics,
    IReadOnlyList<CurvePoint> Train,
    IReadOnlyList<CurvePoint> Test,
    IReadOnlyList<RunWarning> Warnings,
    IReadOnlyList<KeyValuePair<string, string>> Facts,
    IReadOnlyList<string> Notes)
{
    /// <summary>The divergence forecaster's warnings (forecast.jsonl, read with <see cref="CovariateShift.Forecast.ForecastFile.Read"/>),
    /// in step order; empty when the run has none or ran without the forecaster.</summary>
    public IReadOnlyList<CovariateShift.Forecast.DivergenceForecast> Forecasts { get; init; } = [];
}
