using CovariateShift.Records;
using Serilog;
using Serilog.Core;
using Serilog.Core.Enrichers;
using Serilog.Events;

namespace CovariateShift.Sinks;

/// <summary>
/// Structured Serilog events: per layer per recorded step at Debug, one summary per step at Information, and per
/// anomaly kind one Warning listing the layers where it started at that step (not repeated while it persists; the
/// advice on the kind's first warning of the run; the per-layer detail at Debug; a warning identical to an earlier one
/// is counted and summarized when the sink closes). Every value is a named property (message templates, no string
/// interpolation), named as in <see cref="LogProperties"/>.
/// </summary>
public sealed class SerilogSink : IStepSink
{
    private readonly ILogger _log;

    /// <summary>The per-layer Debug event's message template: its property names are the record property names
    /// (<see cref="LayerRecord"/>, <see cref="LayerStatistics"/>, <see cref="ShiftMetrics"/>).</summary>
    internal const string LayerEventTemplate = "Step {Step} {Layer} ({LayerType}): mean {Mean} std {Std} near-zero {NearZeroFraction}, drift {MeanDrift} variance ratio {VarianceRatio} KL {KlDivergence}";
    private HashSet<(string Layer, AnomalyKind Kind)> _active = [];
    private readonly HashSet<AnomalyKind> _advised = [];
    private readonly Dictionary<string, (AnomalyKind Kind, string[] Layers, long Repeats, long LastStep)> _warned = new(StringComparer.Ordinal);

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

        WarnAnomalies(record);
    }

    /// <summary>
    /// One Warning per anomaly kind per record for the layers where it started (it is not repeated while it persists),
    /// naming the layers and the most extreme value, with the advice on the kind's first warning of the run; the
    /// per-layer detail at Debug. A warning identical to an earlier one (same kind, same layers) is counted instead of
    /// logged again and summarized when the sink closes.
    /// </summary>
    private void WarnAnomalies(StepRecord record)
    {
        var now = new HashSet<(string, AnomalyKind)>();
        var started = new List<Anomaly>();
        foreach (var a in record.Anomalies)
        {
            now.Add((a.Layer, a.Kind));
            if (a.Forecast is { } f)
                ForecastWarning(f);
            else if (!_active.Contains((a.Layer, a.Kind)))
                started.Add(a);
        }
        _active = now;
        foreach (var group in started.GroupBy(a => a.Kind))
        {
            var kind = group.Key;
            var layers = group.Select(a => a.Layer).Distinct(StringComparer.Ordinal).ToArray();
            var worst = group.MaxBy(a => Extremity(kind, a.Value))!;
            if (_log.IsEnabled(LogEventLevel.Debug))
            {
                foreach (var a in group)
                    _log.Debug("{Layer}: {Kind} ({Value}) at step {Step}. {Hint}", a.Layer, a.Kind, a.Value, a.Step, a.Hint);
            }
            var key = kind + "\n" + string.Join('\n', layers);
            if (_warned.TryGetValue(key, out var seen))
            {
                _warned[key] = (seen.Kind, seen.Layers, seen.Repeats + 1, record.Step);
                continue;
            }
            _warned[key] = (kind, layers, 0, record.Step);
            string advice = _advised.Add(kind) ? " " + worst.Hint : "";
            _log.ForContext(LogProperties.Layers, layers).Warning(
                "{Kind} at step {Step} in {LayerCount} {LayerNoun:l} ({Extreme:l} {Value:G3} at {Layer:l}): {LayerList:l}.{Hint:l}",
                kind, record.Step, layers.Length, layers.Length == 1 ? "layer" : "layers", kind == AnomalyKind.VanishingGradient ? "smallest" : "largest",
                worst.Value, worst.Layer, Join(layers), advice);
        }
    }

    /// <summary>How far from normal an anomaly's value is, for picking the one a warning names.</summary>
    private static double Extremity(AnomalyKind kind, double value) => kind switch
    {
        AnomalyKind.VarianceShift => Math.Abs(Math.Log(value)),
        AnomalyKind.VanishingGradient => -value,
        _ => double.IsNaN(value) ? double.PositiveInfinity : value,
    };

    /// <summary>The layers of a warning as text: all of them up to 8, else the first 8 and how many more.</summary>
    private static string Join(string[] layers) =>
        layers.Length <= 8 ? string.Join(", ", layers) : string.Join(", ", layers.Take(8)) + $" and {layers.Length - 8} more";

    /// <summary>A forecast warning (the anomaly is on the episode's first record only), with its own named properties.</summary>
    private void ForecastWarning(Forecast.DivergenceForecast f)
    {
        var top = f.Signals.Count > 0 ? f.Signals[0] : null;
        // Every signal goes into the event as the Signals property; the message text names only the top one.
        var signals = f.Signals.Select(s => new Dictionary<string, object> { ["Layer"] = s.Layer, ["Statistic"] = s.Statistic, ["Growth"] = s.Growth }).ToList();
        _log.ForContext(LogProperties.Kind, AnomalyKind.DivergenceAhead).ForContext(LogProperties.Hint, Forecast.ForecastAnomaly.From(f).Hint)
            .ForContext("Signals", signals, destructureObjects: true)
            .Warning(Forecast.ForecastAnomaly.WarningTemplate, f.Step, f.Horizon, f.Score, top?.Statistic, f.Layer, top?.Growth);
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

    /// <summary>Summarizes the warnings that were raised again and not repeated (one Warning each).</summary>
    public void Dispose()
    {
        foreach (var (kind, layers, repeats, last) in _warned.Values)
        {
            if (repeats == 0) continue;
            _log.ForContext(LogProperties.Layers, layers).Warning(
                "{Kind} in {LayerCount} {LayerNoun:l} ({LayerList:l}) came back {Repeats} more times after it first cleared, last at step {LastStep}",
                kind, layers.Length, layers.Length == 1 ? "layer" : "layers", Join(layers), repeats, last);
        }
        _warned.Clear();
    }
}
