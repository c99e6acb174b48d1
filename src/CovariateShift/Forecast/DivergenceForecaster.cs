using CovariateShift.Records;

namespace CovariateShift.Forecast;

/// <summary>
/// Predicts that a run is about to diverge from the records the monitor already builds (activation statistics,
/// gradient norms and the loss it was given): plain arithmetic on a few doubles per layer, constant work per record,
/// no TorchSharp. The rule is in <see cref="ForecastOptions"/>. <see cref="Observe"/> returns a
/// <see cref="DivergenceForecast"/> once per episode, at the record where the warning starts.
/// </summary>
/// <remarks>The monitor runs one when <see cref="MonitorOptions.Forecast"/> is set and adds the warning to the record as
/// an <see cref="AnomalyKind.DivergenceAhead"/> anomaly; it can also replay records read back from a metrics file.</remarks>
public sealed class DivergenceForecaster
{
    private readonly ForecastOptions _options;
    private readonly double _alpha;
    private readonly double _slowAlpha;
    private Signal[] _activations = [];
    private Signal[] _gradients = [];
    private string[] _names = [];
    private Signal _loss;
    private long _records;
    private int _above;
    private int _below;

    /// <summary>A forecaster with <paramref name="options"/> (null: the defaults).</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public DivergenceForecaster(ForecastOptions? options = null)
    {
        _options = options ?? new ForecastOptions();
        _options.Validate();
        _alpha = 2 / (_options.Smoothing + 1);
        _slowAlpha = 2 / (_options.TrendSpan + 1);
    }

    /// <summary>The options in use.</summary>
    public ForecastOptions Options => _options;

    /// <summary>The score of the last observed record (0 before the warm-up ends; +Infinity for a non-finite value).</summary>
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
        var layers = record.Layers;
        if (_activations.Length != layers.Count) Resize(layers);
        bool tracking = ++_records > _options.WarmupRecords;
        bool nonFinite = record.Loss is { } l && !double.IsFinite(l);
        double maxActivation = 0, maxGradient = 0, activationTrend = 0, gradientTrend = 0;
        for (int i = 0; i < layers.Count; i++)
        {
            var r = layers[i];
            if (r.Statistics is { } s)
            {
                if (s.HasNonFinite)
                {
                    nonFinite = true;
                }
                else
                {
                    ref var a = ref _activations[i];
                    a.Update(Math.Log(Math.Max(Math.Sqrt(s.Mean * s.Mean + s.Variance), 1e-30)), _alpha, _slowAlpha, tracking);
                    maxActivation = Math.Max(maxActivation, a.Growth);
                    activationTrend = Math.Max(activationTrend, a.Trend);
                }
            }
            if (r.Gradients is { } g)
            {
                if (g.IsNonFinite)
                {
                    nonFinite = true;
                }
                else if (g.GradNorm > 0)
                {
                    ref var d = ref _gradients[i];
                    d.Update(Math.Log(g.GradNorm), _alpha, _slowAlpha, tracking);
                    maxGradient = Math.Max(maxGradient, d.Growth);
                    gradientTrend = Math.Max(gradientTrend, d.Trend);
                }
            }
        }
        if (record.Loss is { } loss && double.IsFinite(loss) && loss > 0) _loss.Update(Math.Log(loss), _alpha, _slowAlpha, tracking);
        var o = _options;
        Score = nonFinite ? double.PositiveInfinity
            : o.ActivationWeight * maxActivation + o.GradientWeight * maxGradient + o.LossWeight * _loss.Growth
              + o.ActivationTrendWeight * activationTrend + o.GradientTrendWeight * gradientTrend + o.LossTrendWeight * _loss.Trend;

        if (Score >= 1)
        {
            _above++;
            _below = 0;
        }
        else
        {
            _above = 0;
            if (InEpisode && ++_below >= _options.ClearAfter) InEpisode = false;
        }
        if (InEpisode || (_above < _options.Patience && !nonFinite)) return null;
        InEpisode = true;
        Warnings++;
        return new DivergenceForecast(record.Step, _options.Horizon, Score, nonFinite ? NonFiniteSignals(record) : Signals());
    }

    private void Resize(IReadOnlyList<LayerRecord> layers)
    {
        Array.Resize(ref _activations, layers.Count);
        Array.Resize(ref _gradients, layers.Count);
        _names = [.. layers.Select(l => l.Layer)];
    }

    /// <summary>The top contributions (at most three layers per statistic, and the loss), largest first.</summary>
    private List<ForecastSignal> Signals()
    {
        var o = _options;
        var signals = new List<ForecastSignal>();
        Add(_activations, ForecastSignal.ActivationRms, o.ActivationWeight, trend: false);
        Add(_gradients, ForecastSignal.GradientNorm, o.GradientWeight, trend: false);
        Add(_activations, ForecastSignal.ActivationRmsTrend, o.ActivationTrendWeight, trend: true);
        Add(_gradients, ForecastSignal.GradientNormTrend, o.GradientTrendWeight, trend: true);
        if (_loss.Growth * o.LossWeight > 0)
            signals.Add(new ForecastSignal(ForecastSignal.LossLayer, ForecastSignal.Loss, _loss.Growth, _loss.Growth * o.LossWeight));
        if (_loss.Trend * o.LossTrendWeight > 0)
            signals.Add(new ForecastSignal(ForecastSignal.LossLayer, ForecastSignal.LossTrend, _loss.Trend, _loss.Trend * o.LossTrendWeight));
        signals.Sort((a, b) => b.Contribution.CompareTo(a.Contribution));
        return signals;

        void Add(Signal[] values, string statistic, double weight, bool trend)
        {
            if (weight <= 0) return;
            double Of(int i) => trend ? values[i].Trend : values[i].Growth;
            foreach (int i in Enumerable.Range(0, values.Length).Where(i => Of(i) > 0).OrderByDescending(Of).Take(3))
                signals.Add(new ForecastSignal(_names[i], statistic, Of(i), Of(i) * weight));
        }
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

    /// <summary>One smoothed logarithm (fast and slow moving averages) and the lowest level the fast one has reached.</summary>
    private struct Signal
    {
        private double _average;
        private double _slow;
        private double _lowest;
        private bool _started;
        private bool _tracking;

        /// <summary>The smoothed value above the lowest level (0 before tracking started).</summary>
        public readonly double Growth => _tracking ? Math.Max(0, _average - _lowest) : 0;

        /// <summary>The fast average above the slow one (0 before tracking started): the recent rise, a slope times the lag between them.</summary>
        public readonly double Trend => _tracking ? Math.Max(0, _average - _slow) : 0;

        public void Update(double value, double alpha, double slowAlpha, bool track)
        {
            _average = _started ? _average + alpha * (value - _average) : value;
            _slow = _started ? _slow + slowAlpha * (value - _slow) : value;
            _started = true;
            if (track)
            {
                _lowest = _tracking ? Math.Min(_lowest, _average) : _average;
                _tracking = true;
            }
        }
    }
}
