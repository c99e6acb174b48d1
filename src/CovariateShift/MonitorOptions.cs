using System.Text.RegularExpressions;
using Serilog;

namespace CovariateShift;

/// <summary>Where the monitor computes statistics.</summary>
public enum StatisticsEngineKind
{
    /// <summary>CPU float32 tensors: one vectorized managed pass over the tensor's memory, no copies.
    /// Other tensors (CUDA, other dtypes): TorchSharp operations on the tensor's device.</summary>
    Auto,
    /// <summary>Always TorchSharp operations on the tensor's device, one host transfer per recorded step.</summary>
    Device,
}

/// <summary>
/// Settings for an <see cref="ActivationMonitor"/>. All members have sensible defaults;
/// <see cref="Validate"/> (called on attach) rejects values that cannot work, naming the value and what is expected.
/// </summary>
public sealed record MonitorOptions
{
    /// <summary>Record every N-th training step (N = 1 records every step). Hooks do no work on other steps. Default 1.</summary>
    public int RecordEvery { get; init; } = 1;

    /// <summary>
    /// The share of the training step time the monitor may take (e.g. 0.02 = 2%), or null (default) for a fixed interval.
    /// With a budget the monitor measures its own time (see <see cref="Records.StepRecord.MonitorMs"/>) and adapts its
    /// recording interval: a power-of-two multiple of <see cref="RecordEvery"/>, at most <see cref="MaxRecordEvery"/>, so
    /// that its measured share over a window of records (at least two records and 50 steps) stays under the budget. Each
    /// change is logged once (Information). Recorded steps stay multiples of the interval in use, so they are multiples of
    /// RecordEvery; each record says its distance to the previous one (<see cref="Records.StepRecord.StepsSincePrevious"/>)
    /// and shift metrics always compare with the previous record. Must be in (0, 1).
    /// </summary>
    public double? OverheadBudget { get; init; }

    /// <summary>The largest recording interval <see cref="OverheadBudget"/> may choose (rounded down to RecordEvery * 2^k).
    /// Null (default): RecordEvery * 1024. Must be at least RecordEvery.</summary>
    public int? MaxRecordEvery { get; init; }

    /// <summary>Tests: the monitor's timestamp source and its ticks per second (null: <see cref="System.Diagnostics.Stopwatch"/>).</summary>
    internal (Func<long> Now, long Frequency)? Clock { get; init; }

    /// <summary>Interior histogram bins per layer (underflow and overflow bins come on top). At least 2. Default 64.</summary>
    public int HistogramBins { get; init; } = 64;

    /// <summary>Largest number of elements per layer and step used for percentiles and the histogram
    /// (a fixed stratified sample; the other statistics use every element). At least 16. Default 2048.</summary>
    public int SampleSize { get; init; } = 2048;

    /// <summary>|x| at or below this counts as near zero. Default 0.05 (as fastai's ActivationStats).</summary>
    public double NearZeroThreshold { get; init; } = 0.05;

    /// <summary>Layer-type filter: when not empty, only leaf layers whose type name (e.g. "Linear", "Conv2d",
    /// "BatchNorm1d", "ReLU") is in this set are monitored. Case-insensitive.</summary>
    public IReadOnlyCollection<string> LayerTypes { get; init; } = [];

    /// <summary>Layer-name filter: when set, only leaf layers whose dotted name matches are monitored.</summary>
    public Regex? LayerNamePattern { get; init; }

    /// <summary>Serilog logger for per-layer (Debug), per-step (Information) and anomaly (Warning) events (shorthand for
    /// <c>StepSinks.Serilog(logger)</c>), and for the monitor's own warnings (a failed sink, nothing ran). Null: no
    /// logging (sink failures then go to Serilog's static <c>Log.Logger</c>).</summary>
    public ILogger? Logger { get; init; }

    /// <summary>Sinks that receive every record, in order, after the ones the shorthands below open
    /// (<see cref="JsonLinesPath"/>, <see cref="TensorBoardDirectory"/>, <see cref="Logger"/>). The built-ins come from
    /// <see cref="Sinks.StepSinks"/>; any <see cref="Sinks.IStepSink"/> can be plugged in. The monitor takes ownership:
    /// it disposes them (also when <see cref="ActivationMonitor.Attach"/> fails), so give each monitor its own.</summary>
    public IReadOnlyList<Sinks.IStepSink> Sinks { get; init; } = [];

    /// <summary>Off (default): a sink that throws is reported once through <see cref="Logger"/> (with its file and the
    /// error), disabled, and training goes on. On: the exception propagates out of <see cref="ActivationMonitor.Step"/>
    /// (for tests).</summary>
    public bool StrictSinks { get; init; }

    /// <summary>Shorthand for <c>new JsonLinesSink(path, JsonLinesHistogramEvery, JsonLinesAppend)</c>: a JSON Lines
    /// metrics file (one object per layer per recorded step), created or truncated on attach (appended with
    /// <see cref="JsonLinesAppend"/>) and held exclusively. Null: none.</summary>
    public string? JsonLinesPath { get; init; }

    /// <summary>Append to an existing <see cref="JsonLinesPath"/> instead of truncating it (a resumed run continues its
    /// file). Default false.</summary>
    public bool JsonLinesAppend { get; init; }

    /// <summary>Number of the first training step the monitor sees (0-based): <see cref="ActivationMonitor.CurrentStep"/>
    /// starts here, records carry the run's step numbers, and recorded steps stay the multiples of
    /// <see cref="RecordEvery"/> (with the histogram cadences of the sinks counted as if the monitor had run from step 0).
    /// A resumed run sets it to the step it resumes at. At least 0. Default 0.</summary>
    public long FirstStep { get; init; }

    /// <summary>Shorthand for <c>StepSinks.TensorBoard(directory, TensorBoardHistogramEvery)</c>: a directory for
    /// TensorBoard event files (scalars and histograms per layer). Null: none.</summary>
    public string? TensorBoardDirectory { get; init; }

    /// <summary>Write TensorBoard histograms every this many recorded steps (they are the costly part). Default 10.</summary>
    public int TensorBoardHistogramEvery { get; init; } = 10;

    /// <summary>Write the histogram counts into the JSON Lines file every this many recorded steps (the first record
    /// included); other lines carry <c>"histogram": null</c>. The counts are most of a line's bytes. Default
    /// <see cref="CovariateShift.Sinks.JsonLinesSink.DefaultHistogramEvery"/> (10).</summary>
    public int JsonLinesHistogramEvery { get; init; } = CovariateShift.Sinks.JsonLinesSink.DefaultHistogramEvery;

    /// <summary>Gradient norms below this are flagged as vanishing. Default 1e-7.</summary>
    public double VanishingGradientThreshold { get; init; } = 1e-7;

    /// <summary>Gradient norms above this are flagged as exploding. Default 1e3.</summary>
    public double ExplodingGradientThreshold { get; init; } = 1e3;

    /// <summary>Where statistics are computed. Default <see cref="StatisticsEngineKind.Auto"/>.</summary>
    public StatisticsEngineKind Engine { get; init; } = StatisticsEngineKind.Auto;

    /// <summary>Creates the statistics engine (null: the built-in one chosen by <see cref="Engine"/>). The seam for
    /// other engines and for tests.</summary>
    internal Func<MonitorOptions, Capture.IStatisticsEngine>? EngineFactory { get; init; }

    /// <summary>Seed of the per-layer sample positions (so runs are reproducible). Default 0.</summary>
    public int Seed { get; init; }

    /// <summary>Tests: finish records at a later Step() even when the statistics are already in host memory (as on CUDA).</summary>
    internal bool DeferRecords { get; init; }

    /// <summary>Gradient-based internal covariate shift probe (Santurkar et al. 2018), measured on recorded steps through
    /// <see cref="ActivationMonitor.MeasureGradientIcs"/>; costs one extra forward and backward pass per measured layer. Null: off.</summary>
    public Probes.GradientIcsOptions? GradientIcs { get; init; }

    /// <summary>Divergence forecaster: warns (an <see cref="Records.AnomalyKind.DivergenceAhead"/> anomaly, a Serilog Warning)
    /// before the loss becomes non-finite or explodes, from the records alone (no device work). Null (default): off.</summary>
    public Forecast.ForecastOptions? Forecast { get; init; }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid value and what is expected.</summary>
    public void Validate()
    {
        if (RecordEvery <= 0)
            throw new ArgumentOutOfRangeException(nameof(RecordEvery), RecordEvery, $"RecordEvery must be a positive number of steps (1 = every step); got {RecordEvery}.");
        if (OverheadBudget is { } budget && !(budget > 0 && budget < 1))
            throw new ArgumentOutOfRangeException(nameof(OverheadBudget), budget, $"OverheadBudget must be a share of the step time in (0, 1), e.g. 0.02 for 2%; got {budget}.");
        if (MaxRecordEvery is { } max && max < RecordEvery)
            throw new ArgumentOutOfRangeException(nameof(MaxRecordEvery), max, $"MaxRecordEvery must be at least RecordEvery ({RecordEvery}); got {max}.");
        if (FirstStep < 0)
            throw new ArgumentOutOfRangeException(nameof(FirstStep), FirstStep, $"FirstStep must be a step number >= 0; got {FirstStep}.");
        if (HistogramBins < 2)
            throw new ArgumentOutOfRangeException(nameof(HistogramBins), HistogramBins, $"HistogramBins must be at least 2; got {HistogramBins}.");
        if (SampleSize < 16)
            throw new ArgumentOutOfRangeException(nameof(SampleSize), SampleSize, $"SampleSize must be at least 16 elements; got {SampleSize}.");
        if (!(NearZeroThreshold >= 0) || double.IsInfinity(NearZeroThreshold))
            throw new ArgumentOutOfRangeException(nameof(NearZeroThreshold), NearZeroThreshold, $"NearZeroThreshold must be a finite number >= 0; got {NearZeroThreshold}.");
        if (TensorBoardHistogramEvery <= 0)
            throw new ArgumentOutOfRangeException(nameof(TensorBoardHistogramEvery), TensorBoardHistogramEvery, $"TensorBoardHistogramEvery must be positive; got {TensorBoardHistogramEvery}.");
        if (JsonLinesHistogramEvery <= 0)
            throw new ArgumentOutOfRangeException(nameof(JsonLinesHistogramEvery), JsonLinesHistogramEvery, $"JsonLinesHistogramEvery must be positive; got {JsonLinesHistogramEvery}.");
        if (!(VanishingGradientThreshold >= 0) || !(ExplodingGradientThreshold > VanishingGradientThreshold))
        {
            throw new ArgumentOutOfRangeException(nameof(ExplodingGradientThreshold), ExplodingGradientThreshold,
                $"Gradient thresholds must satisfy 0 <= vanishing < exploding; got vanishing {VanishingGradientThreshold}, exploding {ExplodingGradientThreshold}.");
        }
    }
}
