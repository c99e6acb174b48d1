namespace CovariateShift.Records;

/// <summary>Everything the monitor recorded at one training step.</summary>
/// <param name="Step">Training step index (0-based).</param>
/// <param name="Loss">Loss passed to <see cref="ActivationMonitor.Step"/>, or null.</param>
/// <param name="Layers">One record per monitored layer, in model order.</param>
/// <param name="Anomalies">Anomalies present at this step (every step they are present, not only at onset).</param>
public sealed record StepRecord(
    long Step,
    double? Loss,
    IReadOnlyList<LayerRecord> Layers,
    IReadOnlyList<Anomaly> Anomalies);
