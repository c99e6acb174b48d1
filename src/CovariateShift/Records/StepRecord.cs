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

    /// <summary>
    /// The monitor's own wall time on the training thread per training step (milliseconds), averaged over the steps since
    /// the previous record: hooks and wrappers, RecordGradients, Step, building and writing records, sinks. Measured with a
    /// monotonic clock and no device synchronization: on a GPU it is host time that delays the launch queue; device time
    /// of the monitor's kernels that overlaps other work, and TorchSharp's own dispatch of the hook calls, are not in it.
    /// The window ends when this step's statistics are collected; building and writing this record counts in the next.
    /// Null when not measured (files written before these fields).
    /// </summary>
    public double? MonitorMs { get; init; }

    /// <summary>Wall time per training step (milliseconds, the monitor's time included) over the same window as
    /// <see cref="MonitorMs"/>: MonitorMs / StepMs is the share of the training time the monitor took. Null when not measured.</summary>
    public double? StepMs { get; init; }

    /// <summary>Steps since the previous record (the distance its shift metrics span); null for the first record.</summary>
    public long? StepsSincePrevious { get; init; }

    /// <summary>Anomalies present at this step (an immutable array).</summary>
    public IReadOnlyList<Anomaly> Anomalies { get; init => field = Freeze(value); } = Freeze(Anomalies);

    private static IReadOnlyList<T> Freeze<T>(IReadOnlyList<T> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        return items is ImmutableArray<T> ? items : ImmutableArray.CreateRange(items);
    }
}
