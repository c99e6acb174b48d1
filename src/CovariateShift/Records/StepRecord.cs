using System.Collections.Immutable;

namespace CovariateShift.Records;

/// <summary>Everything the monitor recorded at one training step. Immutable: the lists are immutable arrays underneath
/// (whatever list is passed in is copied).</summary>
/// <param name="Step">Training step index (0-based).</param>
/// <param name="Loss">Loss passed to <see cref="ActivationMonitor.Step"/>, or null.</param>
/// <param name="Layers">One record per monitored layer, in model order.</param>
/// <param name="Anomalies">Anomalies present at this step (every step they are present, not only at onset).</param>
public sealed record StepRecord(
    long Step,
    double? Loss,
    IReadOnlyList<LayerRecord> Layers,
    IReadOnlyList<Anomaly> Anomalies)
{
    /// <summary>One record per monitored layer, in model order (an immutable array).</summary>
    public IReadOnlyList<LayerRecord> Layers { get; init => field = Freeze(value); } = Freeze(Layers);

    /// <summary>Anomalies present at this step (an immutable array).</summary>
    public IReadOnlyList<Anomaly> Anomalies { get; init => field = Freeze(value); } = Freeze(Anomalies);

    private static IReadOnlyList<T> Freeze<T>(IReadOnlyList<T> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        return items is ImmutableArray<T> ? items : ImmutableArray.CreateRange(items);
    }
}
