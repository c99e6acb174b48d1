using CovariateShift.Records;
using Serilog;
using Serilog.Core;
using Serilog.Core.Enrichers;
using Serilog.Events;

namespace CovariateShift.Sinks;

/// <summary>
/// Structured Serilog events: per layer per recorded step at Debug, one summary per step at Information, and a
/// Warning when an anomaly starts (it is not repeated while it persists; it is warned again after it cleared and came back).
/// Every value is a named property (message templates, no string interpolation).
/// </summary>
public sealed class SerilogSink : IStepSink
{
    private readonly ILogger _log;

    /// <summary>The per-layer Debug event's message template: its property names are the record property names
    /// (<see cref="LayerRecord"/>, <see cref="LayerStatistics"/>, <see cref="ShiftMetrics"/>).</summary>
    internal const string LayerEventTemplate = "Step {Step} {Layer} ({LayerType}): mean {Mean} std {Std} near-zero {NearZeroFraction}, drift {MeanDrift} variance ratio {VarianceRatio} KL {KlDivergence}";
    private HashSet<(string Layer, AnomalyKind Kind)> _active = [];

    /// <summary>Logs to <paramref name="logger"/>, with SourceContext <see cref="ActivationMonitor.LogSourceContext"/>.</summary>
    public SerilogSink(ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(logger);
        _log = logger.ForContext(Constants.SourceContextPropertyName, ActivationMonitor.LogSourceContext);
    }

    /// <inheritdoc />
    public void Write(StepRecord record)
    {
        if (_log.IsEnabled(LogEventLevel.Debug))
        {
            foreach (var layer in record.Layers)
                LayerEvent(layer);
        }

        if (_log.IsEnabled(LogEventLevel.Information))
        {
            var withShift = record.Layers.Where(l => l.Shift is not null).ToList();
            var drift = withShift.MaxBy(l => l.Shift!.MeanDrift);
            var kl = withShift.Where(l => double.IsFinite(l.Shift!.KlDivergence)).MaxBy(l => l.Shift!.KlDivergence);
            // The monitor's own timing rides along as properties (MonitorMs, StepMs, StepsSincePrevious), not in the text.
            var info = record.MonitorMs is null ? _log : _log.ForContext([
                new PropertyEnricher(nameof(record.MonitorMs), record.MonitorMs), new PropertyEnricher(nameof(record.StepMs), record.StepMs),
                new PropertyEnricher(nameof(record.StepsSincePrevious), record.StepsSincePrevious)]);
            info.Information(
                "Step {Step}: loss {Loss}, {LayerCount} layers, largest mean drift {MaxMeanDrift} at {MaxMeanDriftLayer}, largest KL {MaxKlDivergence} at {MaxKlDivergenceLayer}, {AnomalyCount} anomalies",
                record.Step, record.Loss, record.Layers.Count(l => l.Statistics is not null),
                drift?.Shift!.MeanDrift, drift?.Layer, kl?.Shift!.KlDivergence, kl?.Layer, record.Anomalies.Count);
        }

        var now = new HashSet<(string, AnomalyKind)>();
        foreach (var a in record.Anomalies)
        {
            now.Add((a.Layer, a.Kind));
            if (a.Forecast is { } f)
                ForecastWarning(f);
            else if (!_active.Contains((a.Layer, a.Kind)))
                _log.Warning("{Layer}: {Kind} ({Value}) at step {Step}. {Hint}", a.Layer, a.Kind, a.Value, a.Step, a.Hint);
        }
        _active = now;
    }

    /// <summary>A forecast warning (the anomaly is on the episode's first record only), with its own named properties.</summary>
    private void ForecastWarning(Forecast.DivergenceForecast f)
    {
        var top = f.Signals.Count > 0 ? f.Signals[0] : null;
        _log.ForContext(nameof(AnomalyKind), AnomalyKind.DivergenceAhead).ForContext(nameof(Anomaly.Hint), Forecast.ForecastAnomaly.From(f).Hint).Warning(Forecast.ForecastAnomaly.WarningTemplate,
            f.Step, f.Horizon, f.Score, top?.Statistic, f.Layer, top?.Growth,
            f.Signals.Select(s => new Dictionary<string, object> { ["Layer"] = s.Layer, ["Statistic"] = s.Statistic, ["Growth"] = s.Growth }).ToList());
    }

    private void LayerEvent(LayerRecord r)
    {
        if (r.Statistics is not { } s) return;
        // Property names are the record's property names (the schema's; the JSON Lines file has them in snake_case).
        var extra = new List<ILogEventEnricher>
        {
            new PropertyEnricher(nameof(s.Count), s.Count),
            new PropertyEnricher(nameof(s.Min), s.Min), new PropertyEnricher(nameof(s.Max), s.Max),
            new PropertyEnricher(nameof(s.P15), s.P15), new PropertyEnricher(nameof(s.P50), s.P50), new PropertyEnricher(nameof(s.P85), s.P85),
            new PropertyEnricher(nameof(s.DeadUnitFraction), s.DeadUnitFraction),
            new PropertyEnricher(nameof(s.NanCount), s.NanCount), new PropertyEnricher(nameof(s.InfCount), s.InfCount),
        };
        if (s.SaturatedFraction is { } sat) extra.Add(new PropertyEnricher(nameof(s.SaturatedFraction), sat));
        if (s.ChannelSquaredMean is { } csm) extra.Add(new PropertyEnricher(nameof(s.ChannelSquaredMean), csm));
        if (s.ChannelVariance is { } cv) extra.Add(new PropertyEnricher(nameof(s.ChannelVariance), cv));
        if (r.Shift is { } sh)
        {
            extra.Add(new PropertyEnricher(nameof(sh.JensenShannon), sh.JensenShannon));
            extra.Add(new PropertyEnricher(nameof(sh.Wasserstein1), sh.Wasserstein1));
        }
        if (r.ReferenceShift is { } rs) extra.Add(new PropertyEnricher(nameof(r.ReferenceShift), rs, destructureObjects: true));
        if (r.Gradients is { } g)
        {
            extra.Add(new PropertyEnricher(nameof(g.GradNorm), g.GradNorm));
            extra.Add(new PropertyEnricher(nameof(g.WeightNorm), g.WeightNorm));
            extra.Add(new PropertyEnricher(nameof(g.GradToWeightRatio), g.GradToWeightRatio));
            if (g.UpdateNorm is { } u) extra.Add(new PropertyEnricher(nameof(g.UpdateNorm), u));
            if (g.UpdateToWeightRatio is { } ur) extra.Add(new PropertyEnricher(nameof(g.UpdateToWeightRatio), ur));
        }
        _log.ForContext(extra).Debug(
            LayerEventTemplate,
            r.Step, r.Layer, r.LayerType, s.Mean, s.Std, s.NearZeroFraction,
            r.Shift?.MeanDrift, r.Shift?.VarianceRatio, r.Shift?.KlDivergence);
    }

    /// <inheritdoc />
    public void Dispose() { }
}
