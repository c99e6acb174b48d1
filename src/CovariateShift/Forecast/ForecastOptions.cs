namespace CovariateShift.Forecast;

/// <summary>
/// Settings of the <see cref="DivergenceForecaster"/> (turn it on with <see cref="MonitorOptions.Forecast"/>): the model
/// (<see cref="ForecastModel.Default"/> = models/forecast/forecast-model.json, trained by <c>covshift experiment forecast</c> on its
/// tuning runs) and the episode rule. <see cref="Validate"/> (called on attach) rejects values that cannot work.
/// </summary>
/// <remarks>
/// Per recorded step the forecaster computes <see cref="ForecastFeatures"/> (update-to-weight ratios, the loss's growth,
/// trend and volatility, the growth and trend of gradient norms and activation RMS) and the model's score; the score is 0
/// for the first <see cref="WarmupRecords"/> records. A warning starts when the score is at least the model's threshold on
/// its patience's consecutive records (at once when a loss, activation or gradient is NaN or infinite); its episode ends
/// after <see cref="ClearAfter"/> records below the threshold.
/// </remarks>
public sealed record ForecastOptions
{
    /// <summary>The model (features, weights, threshold, patience). Default: <see cref="ForecastModel.Default"/>.</summary>
    public ForecastModel Model { get; init; } = ForecastModel.Default;

    /// <summary>Records before the score is computed (the growth features' baselines start after them). At least 1. Default 10.</summary>
    public int WarmupRecords { get; init; } = 10;

    /// <summary>Consecutive records with a score below the threshold that end a warning episode (a new warning may start after it). At least 1. Default 50.</summary>
    public int ClearAfter { get; init; } = 50;

    /// <summary>The horizon a warning predicts: the run is expected to fail within this many steps. At least 1. Default 100.</summary>
    public int Horizon { get; init; } = 100;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid value and what is expected.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Model, nameof(Model));
        Model.Validate();
        if (WarmupRecords < 1)
            throw new ArgumentOutOfRangeException(nameof(WarmupRecords), WarmupRecords, $"Forecast WarmupRecords must be at least 1; got {WarmupRecords}.");
        if (ClearAfter < 1)
            throw new ArgumentOutOfRangeException(nameof(ClearAfter), ClearAfter, $"Forecast ClearAfter must be at least 1 record; got {ClearAfter}.");
        if (Horizon < 1)
            throw new ArgumentOutOfRangeException(nameof(Horizon), Horizon, $"Forecast Horizon must be at least 1 step; got {Horizon}.");
    }
}
