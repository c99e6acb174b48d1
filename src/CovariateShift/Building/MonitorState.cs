namespace CovariateShift.Records;

/// <summary>
/// What a monitor's next records depend on besides the model (<see cref="ActivationMonitor.ExportState"/>): saved with a
/// training checkpoint so that a resumed run's records (shift against the previous record, reference shift, histogram
/// range) equal a straight run's. Plain data: serializes with System.Text.Json.
/// </summary>
/// <param name="Version">Format version (<see cref="CurrentVersion"/>).</param>
/// <param name="Layers">One entry per monitored layer, in model order.</param>
public sealed record MonitorState(int Version, IReadOnlyList<LayerState> Layers)
{
    /// <summary>The version this library writes and reads.</summary>
    public const int CurrentVersion = 1;

    /// <summary>The step of the latest record (what the next record's <see cref="StepRecord.StepsSincePrevious"/> counts
    /// from), or null before the first record. Null in states saved before it was kept.</summary>
    public long? LastRecordStep { get; init; }

    /// <summary>The recording interval in use (with <see cref="MonitorOptions.OverheadBudget"/>, the one the budget
    /// chose last), so that a resumed monitor with the same budget goes on at it. Null in states saved before it was kept.</summary>
    public int? RecordEvery { get; init; }

    /// <summary>Records written since step 0 (the histogram cadence of the metrics file and TensorBoard goes on from it).
    /// Null in states saved before it was kept: the cadence is then counted as if every RecordEvery-th step had been recorded.</summary>
    public long? Records { get; init; }

    /// <summary>The divergence forecaster's state (<see cref="MonitorOptions.Forecast"/>), or null when it is off. Null
    /// in states saved before it was kept: a resumed forecaster then starts afresh (a new warm-up).</summary>
    public Forecast.ForecastState? Forecast { get; init; }
}

/// <summary>One layer's part of a <see cref="MonitorState"/>.</summary>
/// <param name="Layer">Dotted layer name (how the state is matched to the layers of the resumed monitor).</param>
/// <param name="Previous">Statistics of the layer's latest record with statistics, or null.</param>
/// <param name="Reference">The reference snapshot, or null.</param>
/// <param name="HistogramLow">Low edge of the layer's fixed histogram range, or null while it is not fixed yet.</param>
/// <param name="HistogramHigh">High edge of the layer's fixed histogram range, or null while it is not fixed yet.</param>
/// <param name="WarnedNotCalled">A <see cref="AnomalyKind.LayerNotCalled"/> anomaly was already reported.</param>
public sealed record LayerState(string Layer, LayerStatistics? Previous, LayerStatistics? Reference, double? HistogramLow, double? HistogramHigh, bool WarnedNotCalled);
