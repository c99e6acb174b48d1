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
    private HashSet<(string Layer, AnomalyKind Kind)> _active = [];

    /// <summary>Logs to <paramref name="logger"/>, with SourceContext CovariateShift.</summary>
    public SerilogSink(ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(logger);
        _log = logger.ForContext(Constants.SourceContextPropertyName, "CovariateShift");
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
            _log.Information(
                "Step {Step}: loss {Loss}, {LayerCount} layers, largest mean drift {MaxMeanDrift} at {MaxDriftLayer}, largest KL {MaxKL} at {MaxKLLayer}, {AnomalyCount} anomalies",
                record.Step, record.Loss, record.Layers.Count(l => l.Statistics is not null),
                drift?.Shift!.MeanDrift, drift?.Layer, kl?.Shift!.KlDivergence, kl?.Layer, record.Anomalies.Count);
        }

        var now = new HashSet<(string, AnomalyKind)>();
        foreach (var a in record.Anomalies)
        {
            now.Add((a.Layer, a.Kind));
            if (!_active.Contains((a.Layer, a.Kind)))
                _log.Warning("{Layer}: {AnomalyKind} ({Value}) at step {Step}. {Hint}", a.Layer, a.Kind, a.Value, a.Step, a.Hint);
        }
        _active = now;
    }

    private void LayerEvent(LayerRecord r)
    {
        if (r.Statistics is not { } s) return;
        var extra = new List<ILogEventEnricher>
        {
            new PropertyEnricher("Min", s.Min), new PropertyEnricher("Max", s.Max),
            new PropertyEnricher("P15", s.P15), new PropertyEnricher("P50", s.P50), new PropertyEnricher("P85", s.P85),
            new PropertyEnricher("Count", s.Count), new PropertyEnricher("DeadUnits", s.DeadUnitFraction), new PropertyEnricher("NanCount", s.NanCount), new PropertyEnricher("InfCount", s.InfCount),
        };
        if (s.SaturatedFraction is { } sat) extra.Add(new PropertyEnricher("Saturated", sat));
        if (s.ChannelSquaredMean is { } csm) extra.Add(new PropertyEnricher("ChannelSquaredMean", csm));
        if (s.ChannelVariance is { } cv) extra.Add(new PropertyEnricher("ChannelVariance", cv));
        if (r.Shift is { } sh)
        {
            extra.Add(new PropertyEnricher("JS", sh.JensenShannon));
            extra.Add(new PropertyEnricher("Wasserstein1", sh.Wasserstein1));
        }
        if (r.ReferenceShift is { } rs)
        {
            extra.Add(new PropertyEnricher("RefMeanDrift", rs.MeanDrift));
            extra.Add(new PropertyEnricher("RefVarianceRatio", rs.VarianceRatio));
            extra.Add(new PropertyEnricher("RefKL", rs.KlDivergence));
        }
        if (r.Gradients is { } g)
        {
            extra.Add(new PropertyEnricher("GradNorm", g.GradNorm));
            extra.Add(new PropertyEnricher("GradToWeight", g.GradToWeightRatio));
            if (g.UpdateNorm is { } u) extra.Add(new PropertyEnricher("UpdateNorm", u));
        }
        _log.ForContext(extra).Debug(
            "Step {Step} {Layer} ({LayerType}): mean {Mean} std {Std} near-zero {NearZero}, drift {MeanDrift} variance ratio {VarianceRatio} KL {KL}",
            r.Step, r.Layer, r.LayerType, s.Mean, s.Std, s.NearZeroFraction,
            r.Shift?.MeanDrift, r.Shift?.VarianceRatio, r.Shift?.KlDivergence);
    }

    /// <inheritdoc />
    public void Dispose() { }
}
