namespace CovariateShift.Forecast;

/// <summary>
/// Settings of the <see cref="DivergenceForecaster"/> (turn it on with <see cref="MonitorOptions.Forecast"/>). The
/// defaults are the values <c>covshift experiment forecast</c> chooses on its tuning runs (it prints them and writes
/// them to forecast.json in its output directory). <see cref="Validate"/> (called on attach) rejects values that cannot work.
/// </summary>
/// <remarks>
/// The rule: per recorded step, three statistics as logarithms: the largest over layers of ln RMS of the output
/// (RMS = sqrt(mean² + std²)), the largest over layers of ln gradient norm, and ln loss. Each has a fast exponential
/// moving average (span <see cref="Smoothing"/> records) and a slow one (span <see cref="TrendSpan"/>). Its level
/// growth is the fast average minus the lowest value that average has reached (after <see cref="WarmupRecords"/>
/// records); its trend is the fast average minus the slow one (a rise per record times the lag between the two). The
/// score is the weighted sum of the six (each weight per nat); a warning starts when the score is at least 1 on
/// <see cref="Patience"/> consecutive records (at once when a loss, activation or gradient is NaN or infinite) and
/// its episode ends after <see cref="ClearAfter"/> records below 1.
/// </remarks>
public sealed record ForecastOptions
{
    /// <summary>Span (in records) of the exponential moving averages: alpha = 2 / (span + 1). At least 1 (1 = no smoothing). Default 4.</summary>
    public double Smoothing { get; init; } = 4;

    /// <summary>Records before the lowest levels (the baselines) start to be tracked; the score is 0 until then. At least 1. Default 5.</summary>
    public int WarmupRecords { get; init; } = 5;

    /// <summary>Weight of the largest per-layer growth of ln RMS activation (per nat). Finite, &gt;= 0. Default 0.1.</summary>
    public double ActivationWeight { get; init; } = 0.1;

    /// <summary>Weight of the largest per-layer growth of ln gradient norm (per nat). Finite, &gt;= 0. Default 0.25.</summary>
    public double GradientWeight { get; init; } = 0.25;

    /// <summary>Weight of the growth of ln loss (per nat). Finite, &gt;= 0. Default 0.5.</summary>
    public double LossWeight { get; init; } = 0.5;

    /// <summary>Span (in records) of the slow moving averages the trends are measured against. Greater than <see cref="Smoothing"/>. Default 20.</summary>
    public double TrendSpan { get; init; } = 20;

    /// <summary>Weight of the largest per-layer trend of ln RMS activation (per nat). Finite, &gt;= 0. Default 0.5.</summary>
    public double ActivationTrendWeight { get; init; } = 0.5;

    /// <summary>Weight of the largest per-layer trend of ln gradient norm (per nat). Finite, &gt;= 0. Default 0.</summary>
    public double GradientTrendWeight { get; init; }

    /// <summary>Weight of the trend of ln loss (per nat). Finite, &gt;= 0. Default 0.</summary>
    public double LossTrendWeight { get; init; }

    /// <summary>Consecutive records with a score of at least 1 before a warning starts (a single spike does not warn). At least 1. Default 3.</summary>
    public int Patience { get; init; } = 3;

    /// <summary>Consecutive records with a score below 1 that end a warning episode (a new warning may start after it). At least 1. Default 50.</summary>
    public int ClearAfter { get; init; } = 50;

    /// <summary>The horizon a warning predicts: the run is expected to fail within this many steps. At least 1. Default 100.</summary>
    public int Horizon { get; init; } = 100;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid value and what is expected.</summary>
    public void Validate()
    {
        if (!(Smoothing >= 1) || double.IsInfinity(Smoothing))
            throw new ArgumentOutOfRangeException(nameof(Smoothing), Smoothing, $"Forecast Smoothing must be a finite span of at least 1 record; got {Smoothing}.");
        if (WarmupRecords < 1)
            throw new ArgumentOutOfRangeException(nameof(WarmupRecords), WarmupRecords, $"Forecast WarmupRecords must be at least 1; got {WarmupRecords}.");
        CheckWeight(ActivationWeight, nameof(ActivationWeight));
        CheckWeight(GradientWeight, nameof(GradientWeight));
        CheckWeight(LossWeight, nameof(LossWeight));
        CheckWeight(ActivationTrendWeight, nameof(ActivationTrendWeight));
        CheckWeight(GradientTrendWeight, nameof(GradientTrendWeight));
        CheckWeight(LossTrendWeight, nameof(LossTrendWeight));
        if (ActivationWeight + GradientWeight + LossWeight + ActivationTrendWeight + GradientTrendWeight + LossTrendWeight <= 0)
            throw new ArgumentOutOfRangeException(nameof(LossWeight), LossWeight, "Forecast weights must not all be 0 (nothing could ever warn); got 0 for all six.");
        if (!(TrendSpan > Smoothing) || double.IsInfinity(TrendSpan))
            throw new ArgumentOutOfRangeException(nameof(TrendSpan), TrendSpan, $"Forecast TrendSpan must be a finite span greater than Smoothing ({Smoothing}); got {TrendSpan}.");
        if (Patience < 1)
            throw new ArgumentOutOfRangeException(nameof(Patience), Patience, $"Forecast Patience must be at least 1 record; got {Patience}.");
        if (ClearAfter < 1)
            throw new ArgumentOutOfRangeException(nameof(ClearAfter), ClearAfter, $"Forecast ClearAfter must be at least 1 record; got {ClearAfter}.");
        if (Horizon < 1)
            throw new ArgumentOutOfRangeException(nameof(Horizon), Horizon, $"Forecast Horizon must be at least 1 step; got {Horizon}.");
    }

    private static void CheckWeight(double value, string name)
    {
        if (!(value >= 0) || double.IsInfinity(value))
            throw new ArgumentOutOfRangeException(name, value, $"Forecast {name} must be a finite number >= 0; got {value}.");
    }
}
