namespace CovariateShift.Forecast;

/// <summary>
/// Settings of the <see cref="DivergenceForecaster"/> (turn it on with <see cref="MonitorOptions.Forecast"/>). The
/// defaults are the weights tuned on the project's tuning runs (<c>models/forecast.json</c>, reproduced by
/// <c>covshift experiment forecast --tune</c>). <see cref="Validate"/> (called on attach) rejects values that cannot work.
/// </summary>
/// <remarks>
/// The rule: per recorded step, three growth signals in nats, each an exponential moving average (span
/// <see cref="Smoothing"/> records) of a logarithm minus the lowest value that average has reached so far (after
/// <see cref="WarmupRecords"/> records): the largest over layers of ln RMS of the output (RMS = sqrt(mean² + std²)),
/// the largest over layers of ln gradient norm, and ln loss. The score is
/// <c>ActivationWeight * activation growth + GradientWeight * gradient growth + LossWeight * loss growth</c>; a
/// warning starts when the score is at least 1 on <see cref="Patience"/> consecutive records (at once when a loss,
/// activation or gradient is NaN or infinite) and its episode ends after <see cref="ClearAfter"/> records below 1.
/// </remarks>
public sealed record ForecastOptions
{
    /// <summary>Span (in records) of the exponential moving averages: alpha = 2 / (span + 1). At least 1 (1 = no smoothing). Default 4.</summary>
    public double Smoothing { get; init; } = 4;

    /// <summary>Records before the lowest levels (the baselines) start to be tracked; the score is 0 until then. At least 1. Default 5.</summary>
    public int WarmupRecords { get; init; } = 5;

    /// <summary>Weight of the largest per-layer growth of ln RMS activation (per nat). Finite, &gt;= 0. Default 0.25.</summary>
    public double ActivationWeight { get; init; } = 0.25;

    /// <summary>Weight of the largest per-layer growth of ln gradient norm (per nat). Finite, &gt;= 0. Default 0.25.</summary>
    public double GradientWeight { get; init; } = 0.25;

    /// <summary>Weight of the growth of ln loss (per nat). Finite, &gt;= 0. Default 0.5.</summary>
    public double LossWeight { get; init; } = 0.5;

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
        if (ActivationWeight + GradientWeight + LossWeight <= 0)
            throw new ArgumentOutOfRangeException(nameof(LossWeight), LossWeight, "Forecast weights must not all be 0 (nothing could ever warn); got 0, 0, 0.");
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
