namespace CovariateShift.Training.Benchmarks;

/// <summary>One benchmark configuration's outcome.</summary>
/// <param name="Model">mlp or cnn.</param>
/// <param name="RecordEvery">Monitor records every this many steps.</param>
/// <param name="Gradients">Whether the monitored loop also called RecordGradients() every step.</param>
/// <param name="Ratio">Median over A/B pairs of (mean step time with the monitor) / (mean step time without).</param>
/// <param name="PlainMs">Median mean step time without the monitor, milliseconds.</param>
/// <param name="MonitoredMs">Median mean step time with the monitor, milliseconds.</param>
/// <param name="Pairs">Number of A/B pairs.</param>
/// <param name="StepsPerBlock">Timed steps in each A or B block.</param>
/// <param name="RatioQ1">First quartile of the per-pair ratios.</param>
/// <param name="RatioQ3">Third quartile of the per-pair ratios.</param>
public sealed record OverheadResult(
    string Model, int RecordEvery, bool Gradients, double Ratio, double PlainMs, double MonitoredMs,
    int Pairs, int StepsPerBlock, double RatioQ1, double RatioQ3)
{
    /// <summary>Median over monitored blocks of the monitor's self-timed share of the block's wall time
    /// (<see cref="ActivationMonitor.MonitorTime"/> / block time).</summary>
    public double SelfTimedShare { get; init; }

    /// <summary>Median over monitored blocks of the monitor's own time per step, milliseconds (what the share is of a
    /// step that itself moves with the machine's load).</summary>
    public double SelfTimedMs { get; init; }

    /// <summary>Median over monitored blocks of the monitor's own time per step in each part
    /// (<see cref="ActivationMonitor.MonitorTimeByPart"/>), milliseconds. Medians taken part by part need not add up to
    /// <see cref="SelfTimedMs"/> exactly.</summary>
    public IReadOnlyDictionary<MonitorPart, double> SelfTimedPartsMs { get; init; } = new Dictionary<MonitorPart, double>();

    /// <summary>First quartile of the self-timed shares.</summary>
    public double SelfTimedShareQ1 { get; init; }

    /// <summary>Third quartile of the self-timed shares.</summary>
    public double SelfTimedShareQ3 { get; init; }

    /// <summary>The ratio the self-timed share implies: 1 / (1 - share) (what the A/B ratio would be if the monitor's
    /// own time were all it added).</summary>
    public double SelfTimedRatio => 1 / (1 - SelfTimedShare);

    /// <summary>The bench's check of the self-timing: whether <see cref="SelfTimedRatio"/> lies within the A/B ratio's
    /// interquartile range (<see cref="RatioQ1"/> to <see cref="RatioQ3"/>).</summary>
    public bool SelfTimedWithinIqr => SelfTimedRatio >= RatioQ1 && SelfTimedRatio <= RatioQ3;

    /// <summary>The monitor's overhead budget in this configuration (null: a fixed interval).</summary>
    public double? OverheadBudget { get; init; }

    /// <summary>The recording interval the monitor was at when the last half of the protocol ended; RecordEvery without
    /// a budget.</summary>
    public int FinalRecordEvery { get; init; }

    /// <summary>The smallest recording interval in use during a measured monitored block (at its start or end);
    /// RecordEvery without a budget.</summary>
    public int MinRecordEvery { get; init; }

    /// <summary>The largest recording interval in use during a measured monitored block (at its start or end); where
    /// it exceeds <see cref="StepsPerBlock"/>, some blocks held no recorded step and their self-timed share is 0.</summary>
    public int MaxRecordEvery { get; init; }

    /// <summary>Half-width of the median ratio's 95% notch, 1.58 IQR / sqrt(pairs).</summary>
    public double Notch { get; init; }
}
