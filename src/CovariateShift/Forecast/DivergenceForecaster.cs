using CovariateShift.Records;

namespace CovariateShift.Forecast;

/// <summary>
/// Predicts that a run is about to diverge from the records the monitor already builds (update-to-weight ratios,
/// gradient norms, activation statistics and the loss it was given): <see cref="ForecastFeatures"/> and a logistic
/// <see cref="ForecastModel"/>, plain arithmetic on a few doubles per layer, constant work per record, no TorchSharp.
/// <see cref="Observe"/> returns a <see cref="DivergenceForecast"/> once per episode, at the record where the warning starts.
/// </summary>
/// <remarks>The monitor runs one when <see cref="MonitorOptions.Forecast"/> is set and adds the warning to the record as
/// an <see cref="AnomalyKind.DivergenceAhead"/> anomaly; it can also replay records read back from a metrics file.</remarks>
public sealed class DivergenceForecaster
{
    /// <summary>The layer name of a signal that is a mean over layers.</summary>
    public const string AllLayers = "all";

    private readonly ForecastOptions _options;
    private readonly ForecastModel _model;
    private readonly int[] _index;
    private readonly double[] _contributions;
    private readonly ForecastFeatures _features;
    private string[] _names = [];
    private long _records;
    private int _above;
    private int _below;

    /// <summary>A forecaster with <paramref name="options"/> (null: the defaults).</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public DivergenceForecaster(ForecastOptions? options = null)
    {
        _options = options ?? new ForecastOptions();
        _options.Validate();
        _model = _options.Model;
        _index = _model.FeatureIndex();
        _contributions = new double[ForecastFeatures.Names.Count];
        _features = new ForecastFeatures(_options.WarmupRecords);
    }

    /// <summary>The options in use.</summary>
    public ForecastOptions Options => _options;

    /// <summary>The features of the last observed record.</summary>
    public ForecastFeatures Features => _features;

    /// <summary>The score of the last observed record, in (0, 1) (0 during the warm-up; +Infinity for a non-finite value).</summary>
    public double Score { get; private set; }

    /// <summary>Whether a warning episode is open (it started and has not yet cleared).</summary>
    public bool InEpisode { get; private set; }

    /// <summary>Warnings started so far (episodes).</summary>
    public int Warnings { get; private set; }

    /// <summary>
    /// Takes the next record (in step order) and returns the warning that starts at it, or null (no warning, or the
    /// episode that is already open goes on).
    /// </summary>
    public DivergenceForecast? Observe(StepRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (_names.Length < record.Layers.Count) _names = [.. record.Layers.Select(l => l.Layer)];
        bool nonFinite = ForecastFeatures.IsNonFinite(record);
        _features.Observe(record);
        bool scoring = ++_records > _options.WarmupRecords;
        if (nonFinite)
        {
            Score = double.PositiveInfinity;
        }
        else if (scoring)
        {
            double z = _model.Logit(_features.Values, _contributions, _index);
            Score = 1 / (1 + Math.Exp(-z));
        }
        else
        {
            Score = 0;
        }

        if (Score >= _model.Threshold)
        {
            _above++;
            _below = 0;
        }
        else
        {
            _above = 0;
            if (InEpisode && ++_below >= _options.ClearAfter) InEpisode = false;
        }
        if (InEpisode || (_above < _model.Patience && !nonFinite)) return null;
        InEpisode = true;
        Warnings++;
        return new DivergenceForecast(record.Step, _options.Horizon, Score, nonFinite ? NonFiniteSignals(record) : Signals());
    }

    /// <summary>What the next warnings depend on: save it with a checkpoint and <see cref="ImportState"/> it into the
    /// forecaster of the resumed run (the monitor does both through <see cref="ActivationMonitor.ExportState"/>).</summary>
    public ForecastState ExportState() => new(_records, _above, _below, InEpisode, Warnings, Score, _features.ExportState());

    /// <summary>Restores what <see cref="ExportState"/> saved.</summary>
    /// <exception cref="ArgumentException">The state was saved by another version (a different feature count).</exception>
    public void ImportState(ForecastState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        _features.ImportState(state.Features);
        (_records, _above, _below) = (state.Records, state.Above, state.Below);
        (InEpisode, Warnings, Score) = (state.InEpisode, state.Warnings, state.Score);
    }

    /// <summary>The features that pushed the score up (positive contribution to the logit), largest first.</summary>
    private List<ForecastSignal> Signals()
    {
        var names = ForecastFeatures.Names;
        var signals = new List<ForecastSignal>();
        foreach (int k in _index)
        {
            if (!(_contributions[k] > 0)) continue;
            string statistic = names[k];
            int layer = _features.LayerOf(k);
            string where = layer >= 0 && layer < _names.Length ? _names[layer]
                : statistic.StartsWith("loss", StringComparison.Ordinal) ? ForecastSignal.LossLayer : AllLayers;
            signals.Add(new ForecastSignal(where, statistic, _features.Values[k], _contributions[k]));
        }
        signals.Sort((a, b) => b.Contribution.CompareTo(a.Contribution));
        return signals;
    }

    private static List<ForecastSignal> NonFiniteSignals(StepRecord record)
    {
        var signals = new List<ForecastSignal>();
        if (record.Loss is { } l && !double.IsFinite(l))
            signals.Add(new ForecastSignal(ForecastSignal.LossLayer, ForecastSignal.NonFinite, double.PositiveInfinity, double.PositiveInfinity));
        foreach (var r in record.Layers)
        {
            if (r.Statistics?.HasNonFinite == true || r.Gradients?.IsNonFinite == true)
                signals.Add(new ForecastSignal(r.Layer, ForecastSignal.NonFinite, double.PositiveInfinity, double.PositiveInfinity));
        }
        return signals;
    }
}
