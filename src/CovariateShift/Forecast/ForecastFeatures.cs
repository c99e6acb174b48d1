using CovariateShift.Records;

namespace CovariateShift.Forecast;

/// <summary>
/// The per-record features the <see cref="DivergenceForecaster"/>'s model reads, computed from a record's layer
/// statistics, gradient health and loss with a few exponential moving averages (EMA, alpha = 2 / (span + 1)): constant
/// work per layer and record, no TorchSharp. Values are in nats (natural logarithms). <see cref="Names"/> lists them
/// in the order of <see cref="Values"/>.
/// </summary>
/// <remarks>
/// u/w below is a layer's update-to-weight ratio (<see cref="GradientStatistics.UpdateToWeightRatio"/>: the relative size
/// of the optimizer's step); "lowest" is the lowest value the EMA has reached since the warm-up ended (0 growth before).
/// <list type="bullet">
/// <item><c>update_ratio</c>: EMA (span 5) of the mean over layers of ln u/w; <c>update_ratio_min</c>, <c>update_ratio_max</c>:
/// the same of the smallest and the largest layer's.</item>
/// <item><c>update_ratio_growth</c>: <c>update_ratio</c> above its lowest; <c>update_ratio_trend</c>: <c>update_ratio</c>
/// minus its slow EMA (span 20; signed).</item>
/// <item><c>loss_growth</c>: EMA (span 4) of ln loss above its lowest; <c>loss_trend</c>: that EMA above its slow EMA (span 20, 0 when below).</item>
/// <item><c>loss_volatility</c>: EMA (span 10) of |ln loss - ln previous recorded loss|; <c>loss_volatility_ratio</c>:
/// ln of that EMA over the same with span 40 (how much more the loss jumps now than it used to).</item>
/// <item><c>grad_norm_growth</c>, <c>activation_rms_growth</c>: the largest over layers of the EMA (span 4) of ln gradient norm,
/// ln output RMS (sqrt(mean² + std²)) above that layer's lowest; <c>grad_norm_trend</c>, <c>activation_rms_trend</c>: the
/// largest over layers of that EMA above its slow EMA (span 20, 0 when below).</item>
/// </list>
/// A value that a record lacks (no update norms: RecordGradients not called; no loss) keeps its previous value (0 at first).
/// </remarks>
public sealed class ForecastFeatures
{
    /// <summary>Feature names, in the order of <see cref="Values"/>.</summary>
    public static IReadOnlyList<string> Names { get; } =
    [
        UpdateRatio, UpdateRatioMin, UpdateRatioMax, UpdateRatioGrowth, UpdateRatioTrend, LossGrowth, LossTrend, LossVolatility,
        LossVolatilityRatio, GradNormGrowth, GradNormTrend, ActivationRmsGrowth, ActivationRmsTrend,
    ];

    /// <summary>EMA of the mean over layers of ln update-to-weight ratio.</summary>
    public const string UpdateRatio = "update_ratio";
    /// <summary>EMA of the smallest layer's ln update-to-weight ratio.</summary>
    public const string UpdateRatioMin = "update_ratio_min";
    /// <summary>EMA of the largest layer's ln update-to-weight ratio.</summary>
    public const string UpdateRatioMax = "update_ratio_max";
    /// <summary><see cref="UpdateRatio"/> above its lowest level.</summary>
    public const string UpdateRatioGrowth = "update_ratio_growth";
    /// <summary><see cref="UpdateRatio"/> minus its slow EMA.</summary>
    public const string UpdateRatioTrend = "update_ratio_trend";
    /// <summary>EMA of ln loss above its lowest level.</summary>
    public const string LossGrowth = "loss_growth";
    /// <summary>EMA of ln loss above its slow EMA.</summary>
    public const string LossTrend = "loss_trend";
    /// <summary>EMA of the absolute change of ln loss between records.</summary>
    public const string LossVolatility = "loss_volatility";
    /// <summary>ln of the fast over the slow EMA of the absolute change of ln loss.</summary>
    public const string LossVolatilityRatio = "loss_volatility_ratio";
    /// <summary>Largest per-layer growth of the EMA of ln gradient norm.</summary>
    public const string GradNormGrowth = "grad_norm_growth";
    /// <summary>Largest per-layer trend of ln gradient norm.</summary>
    public const string GradNormTrend = "grad_norm_trend";
    /// <summary>Largest per-layer growth of the EMA of ln output RMS.</summary>
    public const string ActivationRmsGrowth = "activation_rms_growth";
    /// <summary>Largest per-layer trend of ln output RMS.</summary>
    public const string ActivationRmsTrend = "activation_rms_trend";

    private const double RatioSpan = 5, FastSpan = 4, SlowSpan = 20, VolatilitySpan = 10, SlowVolatilitySpan = 40;
    private const double VolatilityFloor = 1e-6;

    private readonly int _warmup;
    private readonly double[] _values = new double[Names.Count];
    private readonly int[] _layerOf = new int[Names.Count];
    private Ema _ratio = new(RatioSpan), _ratioMin = new(RatioSpan), _ratioMax = new(RatioSpan), _ratioSlow = new(SlowSpan);
    private Ema _loss = new(FastSpan), _lossSlow = new(SlowSpan), _volatility = new(VolatilitySpan), _volatilitySlow = new(SlowVolatilitySpan);
    private double _lowestRatio = double.PositiveInfinity, _lowestLoss = double.PositiveInfinity, _previousLoss = double.NaN;
    private Level[] _gradients = [];
    private Level[] _activations = [];
    private long _records;

    /// <summary>Features whose lowest levels (the baselines of the growth features) are tracked from record <paramref name="warmupRecords"/> + 1 on.</summary>
    public ForecastFeatures(int warmupRecords)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(warmupRecords, 1);
        _warmup = warmupRecords;
        Array.Fill(_layerOf, -1);
    }

    /// <summary>The features of the last observed record, in the order of <see cref="Names"/>.</summary>
    public IReadOnlyList<double> Values => _values;

    /// <summary>Whether the warm-up is over (the growth features have baselines).</summary>
    public bool Tracking => _records > _warmup;

    /// <summary>The layer index behind feature <paramref name="feature"/> (the layer with the extreme value), or -1 when it is
    /// not one layer's (means over layers, the loss).</summary>
    public int LayerOf(int feature) => _layerOf[feature];

    /// <summary>Whether the record holds a NaN or infinite loss, activation or gradient norm.</summary>
    public static bool IsNonFinite(StepRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (record.Loss is { } l && !double.IsFinite(l)) return true;
        foreach (var r in record.Layers)
        {
            if (r.Statistics?.HasNonFinite == true || r.Gradients?.IsNonFinite == true) return true;
        }
        return false;
    }

    /// <summary>Takes the next record (in step order) and updates <see cref="Values"/>. Non-finite values are skipped.</summary>
    public void Observe(StepRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var layers = record.Layers;
        if (_gradients.Length < layers.Count)
        {
            Array.Resize(ref _gradients, layers.Count);
            Array.Resize(ref _activations, layers.Count);
        }
        bool tracking = ++_records > _warmup;
        double sum = 0, min = double.PositiveInfinity, max = double.NegativeInfinity;
        int ratios = 0, minLayer = -1, maxLayer = -1;
        double gradGrowth = 0, gradTrend = 0, rmsGrowth = 0, rmsTrend = 0;
        int gradGrowthLayer = -1, gradTrendLayer = -1, rmsGrowthLayer = -1, rmsTrendLayer = -1;
        for (int i = 0; i < layers.Count; i++)
        {
            var r = layers[i];
            if (r.Gradients is { } g && !g.IsNonFinite)
            {
                if (g.UpdateToWeightRatio is { } uw && uw > 0 && double.IsFinite(uw))
                {
                    double v = Math.Log(uw);
                    sum += v;
                    ratios++;
                    if (v < min) (min, minLayer) = (v, i);
                    if (v > max) (max, maxLayer) = (v, i);
                }
                if (g.GradNorm > 0)
                {
                    ref var d = ref _gradients[i];
                    d.Update(Math.Log(g.GradNorm), tracking);
                    if (d.Growth > gradGrowth) (gradGrowth, gradGrowthLayer) = (d.Growth, i);
                    if (d.Trend > gradTrend) (gradTrend, gradTrendLayer) = (d.Trend, i);
                }
            }
            if (r.Statistics is { HasNonFinite: false } s)
            {
                ref var a = ref _activations[i];
                a.Update(Math.Log(Math.Max(Math.Sqrt(s.Mean * s.Mean + s.Variance), 1e-30)), tracking);
                if (a.Growth > rmsGrowth) (rmsGrowth, rmsGrowthLayer) = (a.Growth, i);
                if (a.Trend > rmsTrend) (rmsTrend, rmsTrendLayer) = (a.Trend, i);
            }
        }
        if (ratios > 0)
        {
            _ratio.Update(sum / ratios);
            _ratioMin.Update(min);
            _ratioMax.Update(max);
            _ratioSlow.Update(sum / ratios);
            if (tracking) _lowestRatio = Math.Min(_lowestRatio, _ratio.Value);
            Set(UpdateRatioMinIndex, _ratioMin.Value, minLayer);
            Set(UpdateRatioMaxIndex, _ratioMax.Value, maxLayer);
        }
        if (_ratio.Started)
        {
            Set(UpdateRatioIndex, _ratio.Value, -1);
            Set(UpdateRatioGrowthIndex, double.IsFinite(_lowestRatio) ? _ratio.Value - _lowestRatio : 0, -1);
            Set(UpdateRatioTrendIndex, _ratio.Value - _ratioSlow.Value, -1);
        }
        if (record.Loss is { } loss && double.IsFinite(loss) && loss > 0)
        {
            double ln = Math.Log(loss);
            _loss.Update(ln);
            _lossSlow.Update(ln);
            if (tracking) _lowestLoss = Math.Min(_lowestLoss, _loss.Value);
            if (!double.IsNaN(_previousLoss))
            {
                _volatility.Update(Math.Abs(ln - _previousLoss));
                _volatilitySlow.Update(Math.Abs(ln - _previousLoss));
            }
            _previousLoss = ln;
            Set(LossGrowthIndex, double.IsFinite(_lowestLoss) ? _loss.Value - _lowestLoss : 0, -1);
            Set(LossTrendIndex, Math.Max(0, _loss.Value - _lossSlow.Value), -1);
            if (_volatility.Started)
            {
                Set(LossVolatilityIndex, _volatility.Value, -1);
                Set(LossVolatilityRatioIndex, Math.Log((_volatility.Value + VolatilityFloor) / (_volatilitySlow.Value + VolatilityFloor)), -1);
            }
        }
        Set(GradNormGrowthIndex, gradGrowth, gradGrowthLayer);
        Set(GradNormTrendIndex, gradTrend, gradTrendLayer);
        Set(ActivationRmsGrowthIndex, rmsGrowth, rmsGrowthLayer);
        Set(ActivationRmsTrendIndex, rmsTrend, rmsTrendLayer);
    }

    /// <summary>What the next values depend on (see <see cref="ForecastFeaturesState"/>).</summary>
    public ForecastFeaturesState ExportState() => new(
        _records,
        [.. _values],
        [.. _layerOf],
        [_ratio.Export(), _ratioMin.Export(), _ratioMax.Export(), _ratioSlow.Export(), _loss.Export(), _lossSlow.Export(), _volatility.Export(), _volatilitySlow.Export()],
        _lowestRatio,
        _lowestLoss,
        _previousLoss,
        [.. _gradients.Select(l => l.Export())],
        [.. _activations.Select(l => l.Export())]);

    /// <summary>Restores what <see cref="ExportState"/> saved.</summary>
    /// <exception cref="ArgumentException">The state does not have this version's number of features or averages.</exception>
    public void ImportState(ForecastFeaturesState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Values.Count != Names.Count || state.LayerOf.Count != Names.Count || state.Averages.Count != 8 || state.Gradients.Count != state.Activations.Count)
            throw new ArgumentException($"The forecast state has {state.Values.Count} features and {state.Averages.Count} averages; expected {Names.Count} and 8 (a state saved by another version).", nameof(state));
        _records = state.Records;
        for (int k = 0; k < Names.Count; k++) (_values[k], _layerOf[k]) = (state.Values[k], state.LayerOf[k]);
        _ratio.Import(state.Averages[0]);
        _ratioMin.Import(state.Averages[1]);
        _ratioMax.Import(state.Averages[2]);
        _ratioSlow.Import(state.Averages[3]);
        _loss.Import(state.Averages[4]);
        _lossSlow.Import(state.Averages[5]);
        _volatility.Import(state.Averages[6]);
        _volatilitySlow.Import(state.Averages[7]);
        _lowestRatio = state.LowestRatio;
        _lowestLoss = state.LowestLoss;
        _previousLoss = state.PreviousLoss;
        _gradients = [.. state.Gradients.Select(Level.Import)];
        _activations = [.. state.Activations.Select(Level.Import)];
    }

    private void Set(int feature, double value, int layer)
    {
        _values[feature] = value;
        _layerOf[feature] = layer;
    }

    private const int UpdateRatioIndex = 0, UpdateRatioMinIndex = 1, UpdateRatioMaxIndex = 2, UpdateRatioGrowthIndex = 3, UpdateRatioTrendIndex = 4,
        LossGrowthIndex = 5, LossTrendIndex = 6, LossVolatilityIndex = 7, LossVolatilityRatioIndex = 8, GradNormGrowthIndex = 9,
        GradNormTrendIndex = 10, ActivationRmsGrowthIndex = 11, ActivationRmsTrendIndex = 12;

    /// <summary>An exponential moving average that starts at its first value.</summary>
    private struct Ema(double span)
    {
        private readonly double _alpha = 2 / (span + 1);

        public double Value { get; private set; }

        public bool Started { get; private set; }

        public readonly AverageState Export() => new(Value, Started);

        public void Import(AverageState state)
        {
            Value = state.Value;
            Started = state.Started;
        }

        public void Update(double x)
        {
            Value = Started ? Value + _alpha * (x - Value) : x;
            Started = true;
        }
    }

    /// <summary>One layer's smoothed logarithm: fast and slow EMAs and the lowest level the fast one has reached.</summary>
    private struct Level
    {
        private const double Fast = 2 / (FastSpan + 1), Slow = 2 / (SlowSpan + 1);
        private double _average, _slow, _lowest;
        private bool _started, _tracking;

        /// <summary>The fast EMA above its lowest level (0 before tracking started).</summary>
        public readonly double Growth => _tracking ? Math.Max(0, _average - _lowest) : 0;

        /// <summary>The fast EMA above the slow one (0 before tracking started, or when below).</summary>
        public readonly double Trend => _tracking ? Math.Max(0, _average - _slow) : 0;

        public readonly LevelState Export() => new(_average, _slow, _lowest, _started, _tracking);

        public static Level Import(LevelState state) => new()
        {
            _average = state.Average,
            _slow = state.Slow,
            _lowest = state.Lowest,
            _started = state.Started,
            _tracking = state.Tracking,
        };

        public void Update(double value, bool track)
        {
            _average = _started ? _average + Fast * (value - _average) : value;
            _slow = _started ? _slow + Slow * (value - _slow) : value;
            _started = true;
            if (track)
            {
                _lowest = _tracking ? Math.Min(_lowest, _average) : _average;
                _tracking = true;
            }
        }
    }
}
