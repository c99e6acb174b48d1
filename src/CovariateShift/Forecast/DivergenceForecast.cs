namespace CovariateShift.Forecast;

/// <summary>A forecaster warning: the run is predicted to diverge (loss non-finite or exploding) within <see cref="Horizon"/> steps.</summary>
/// <param name="Step">The recorded step at which the warning started.</param>
/// <param name="Horizon">Steps within which the failure is predicted (<see cref="ForecastOptions.Horizon"/>).</param>
/// <param name="Score">The forecaster's score at that step (in (0, 1), at least the model's threshold; +Infinity for a value already NaN or infinite).</param>
/// <param name="Signals">What drove it, largest contribution first.</param>
public sealed record DivergenceForecast(long Step, int Horizon, double Score, IReadOnlyList<ForecastSignal> Signals)
{
    /// <summary>The layer of the largest contribution ("loss" when the loss drove it).</summary>
    public string Layer => Signals.Count > 0 ? Signals[0].Layer : ForecastSignal.LossLayer;
}

/// <summary>One signal behind a <see cref="DivergenceForecast"/>: a feature of the forecaster's model that pushed its score up.</summary>
/// <param name="Layer">The layer (the one with the extreme value for a per-layer feature), <see cref="ForecastSignal.LossLayer"/> for a
/// feature of the loss, <see cref="DivergenceForecaster.AllLayers"/> for a mean over layers.</param>
/// <param name="Statistic">Which feature (one of <see cref="ForecastFeatures.Names"/>), or <see cref="ForecastSignal.NonFinite"/>.</param>
/// <param name="Growth">The feature's value (in nats; +Infinity when non-finite): for a growth feature how far its smoothed
/// logarithm rose above its lowest level, for a level feature the smoothed logarithm itself (see <see cref="ForecastFeatures"/>).</param>
/// <param name="Contribution">Its share of the model's logit (weight x standardized value; +Infinity when non-finite).</param>
public sealed record ForecastSignal(string Layer, string Statistic, double Growth, double Contribution)
{
    /// <summary>The layer name used for the loss.</summary>
    public const string LossLayer = "loss";

    /// <summary>A NaN or infinite value (loss, activation or gradient).</summary>
    public const string NonFinite = "non_finite";
}
