namespace CovariateShift.Forecast;

/// <summary>A forecaster warning: the run is predicted to diverge (loss non-finite or exploding) within <see cref="Horizon"/> steps.</summary>
/// <param name="Step">The recorded step at which the warning started.</param>
/// <param name="Horizon">Steps within which the failure is predicted (<see cref="ForecastOptions.Horizon"/>).</param>
/// <param name="Score">The forecaster's score at that step (at least 1; +Infinity for a value already NaN or infinite).</param>
/// <param name="Signals">What drove it, largest contribution first.</param>
public sealed record DivergenceForecast(long Step, int Horizon, double Score, IReadOnlyList<ForecastSignal> Signals)
{
    /// <summary>The layer of the largest contribution ("loss" when the loss drove it).</summary>
    public string Layer => Signals.Count > 0 ? Signals[0].Layer : ForecastSignal.LossLayer;
}

/// <summary>One signal behind a <see cref="DivergenceForecast"/>.</summary>
/// <param name="Layer">The layer, or <see cref="ForecastSignal.LossLayer"/> for the loss.</param>
/// <param name="Statistic">Which statistic: <see cref="ForecastSignal.ActivationRms"/>, <see cref="ForecastSignal.GradientNorm"/>,
/// <see cref="ForecastSignal.Loss"/>, their trends (<see cref="ForecastSignal.ActivationRmsTrend"/>, <see cref="ForecastSignal.GradientNormTrend"/>,
/// <see cref="ForecastSignal.LossTrend"/>) or <see cref="ForecastSignal.NonFinite"/>.</param>
/// <param name="Growth">In nats (e^Growth is the factor; +Infinity when non-finite): for a level statistic how far its smoothed logarithm rose
/// above its lowest level, for a trend how far the fast moving average of the logarithm is above the slow one.</param>
/// <param name="Contribution">Its share of the score (weight x growth).</param>
public sealed record ForecastSignal(string Layer, string Statistic, double Growth, double Contribution)
{
    /// <summary>The layer name used for the loss.</summary>
    public const string LossLayer = "loss";

    /// <summary>ln RMS of a layer's output (RMS = sqrt(mean² + std²)).</summary>
    public const string ActivationRms = "activation_rms";

    /// <summary>ln of a layer's gradient norm.</summary>
    public const string GradientNorm = "grad_norm";

    /// <summary>ln of the training loss.</summary>
    public const string Loss = "loss";

    /// <summary>Trend of ln RMS of a layer's output: its fast moving average above its slow one.</summary>
    public const string ActivationRmsTrend = "activation_rms_trend";

    /// <summary>Trend of ln of a layer's gradient norm: its fast moving average above its slow one.</summary>
    public const string GradientNormTrend = "grad_norm_trend";

    /// <summary>Trend of ln of the training loss: its fast moving average above its slow one.</summary>
    public const string LossTrend = "loss_trend";

    /// <summary>A NaN or infinite value (loss, activation or gradient).</summary>
    public const string NonFinite = "non_finite";
}
