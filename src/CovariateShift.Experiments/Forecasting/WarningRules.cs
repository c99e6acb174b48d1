using System.Globalization;
using CovariateShift.Anomalies;
using CovariateShift.Forecast;
using CovariateShift.Records;

namespace CovariateShift.Experiments.Forecasting;

/// <summary>A way to warn about divergence, evaluated on recorded runs: the step of its first warning in a run.</summary>
public interface IWarningRule
{
    /// <summary>The rule's name in tables (with its parameters).</summary>
    string Name { get; }

    /// <summary>The step of the first warning in <paramref name="run"/>, or null when it never warns.</summary>
    long? FirstWarning(RunTrace run);
}

/// <summary>The trainer's own check: warns when the loss is NaN or infinite (lead time 0 by definition).</summary>
public sealed class NanCheckRule : IWarningRule
{
    /// <inheritdoc />
    public string Name => "NaN check";

    /// <inheritdoc />
    public long? FirstWarning(RunTrace run) => run.Losses.Where(l => !double.IsFinite(l.Loss)).Select(l => (long?)l.Step).FirstOrDefault();
}

/// <summary>The monitor's existing <see cref="AnomalyKind.ExplodingGradient"/> anomaly (gradient norm above
/// <see cref="MonitorOptions.ExplodingGradientThreshold"/>, default 1e3), recomputed on the records with <see cref="AnomalyDetector"/>.</summary>
public sealed class ExplodingGradientRule(MonitorOptions? options = null) : IWarningRule
{
    private readonly MonitorOptions _options = options ?? new MonitorOptions();

    /// <inheritdoc />
    public string Name => string.Create(CultureInfo.InvariantCulture, $"exploding-gradient anomaly (> {_options.ExplodingGradientThreshold:G3})");

    /// <inheritdoc />
    public long? FirstWarning(RunTrace run) => run.Records
        .Where(r => r.Layers.Any(l => AnomalyDetector.Detect(l, _options).Any(a => a.Kind == AnomalyKind.ExplodingGradient)))
        .Select(r => (long?)r.Step).FirstOrDefault();
}

/// <summary>A plain loss-spike rule: warns at the first step (after <paramref name="warmup"/> steps) whose loss is above
/// <paramref name="k"/> times the lowest loss so far, or is not finite.</summary>
public sealed class LossSpikeRule(double k, int warmup = 10) : IWarningRule
{
    /// <summary>The factor.</summary>
    public double K => k;

    /// <inheritdoc />
    public string Name => string.Create(CultureInfo.InvariantCulture, $"loss spike (k = {k:G3})");

    /// <inheritdoc />
    public long? FirstWarning(RunTrace run)
    {
        double lowest = double.PositiveInfinity;
        foreach (var (step, loss) in run.Losses)
        {
            if (!double.IsFinite(loss)) return step;
            if (step >= warmup && loss > k * lowest) return step;
            lowest = Math.Min(lowest, loss);
        }
        return null;
    }
}

/// <summary>The <see cref="DivergenceForecaster"/> with <paramref name="options"/>, replayed over the run's records.</summary>
public sealed class ForecasterRule(ForecastOptions options, string? name = null) : IWarningRule
{
    /// <summary>The options replayed.</summary>
    public ForecastOptions Options => options;

    /// <inheritdoc />
    public string Name => name ?? "forecaster";

    /// <inheritdoc />
    public long? FirstWarning(RunTrace run)
    {
        var forecaster = new DivergenceForecaster(options);
        foreach (var r in run.Records)
        {
            if (forecaster.Observe(r) is { } w) return w.Step;
        }
        return null;
    }
}

/// <summary>The warnings the run's own forecaster wrote to forecast.jsonl while it trained.</summary>
public sealed class RecordedForecastRule : IWarningRule
{
    /// <inheritdoc />
    public string Name => "forecaster (forecast.jsonl)";

    /// <inheritdoc />
    public long? FirstWarning(RunTrace run) => run.RecordedForecasts.Count > 0 ? run.RecordedForecasts[0].Step : null;
}

/// <summary>A rule given by a function (for instance one forecaster per grid point).</summary>
public sealed class DelegateRule(string name, Func<RunTrace, long?> firstWarning) : IWarningRule
{
    /// <inheritdoc />
    public string Name => name;

    /// <inheritdoc />
    public long? FirstWarning(RunTrace run) => firstWarning(run);
}
