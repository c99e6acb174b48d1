using System.Globalization;
using CovariateShift.Records;

namespace CovariateShift.Forecast;

/// <summary>Turns a <see cref="DivergenceForecast"/> into the <see cref="AnomalyKind.DivergenceAhead"/> anomaly a record carries.</summary>
public static class ForecastAnomaly
{
    /// <summary>The Serilog message template of a forecast warning (named properties: Step, Horizon, Score, Layer, Statistic, Growth; the event also carries Signals, every signal, which the text does not render).</summary>
    public const string WarningTemplate = "Divergence ahead at step {Step}: predicted within {Horizon} steps (score {Score:F2}), driven by {Statistic} of {Layer} (value {Growth:F2}). Lower the learning rate, clip gradients or add normalization; checkpoint now.";

    /// <summary>The anomaly of <paramref name="forecast"/>: its layer is the top signal's, its value the score.</summary>
    public static Anomaly From(DivergenceForecast forecast)
    {
        ArgumentNullException.ThrowIfNull(forecast);
        var top = forecast.Signals.Count > 0 ? forecast.Signals[0] : null;
        string driver = top is null ? "the loss" : string.Create(CultureInfo.InvariantCulture, $"{top.Statistic} of {top.Layer}");
        return new Anomaly(forecast.Step, forecast.Layer, AnomalyKind.DivergenceAhead, forecast.Score,
            string.Create(CultureInfo.InvariantCulture, $"The run is predicted to diverge within {forecast.Horizon} steps (score {forecast.Score:G3}, driven by {driver}): lower the learning rate, clip gradients or add normalization; checkpoint now."))
        {
            Forecast = forecast,
        };
    }
}
