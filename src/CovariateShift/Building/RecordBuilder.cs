using System.Collections.Immutable;
using System.Runtime.InteropServices;
using CovariateShift.Anomalies;
using CovariateShift.Capture;
using CovariateShift.Records;
using CovariateShift.Shift;
using CovariateShift.Statistics;

namespace CovariateShift.Building;

/// <summary>
/// The pure stage of the monitor: (<see cref="StepCapture"/>, per-layer <see cref="LayerHistory"/>) -> records.
/// Percentiles and the histogram from each layer's sample, the layer's fixed histogram range, shift against the
/// previous record and the reference, gradient norms, anomalies. No TorchSharp, no I/O; it owns the histories.
/// </summary>
internal sealed class RecordBuilder
{
    private static readonly double[] PercentileLevels = [0.15, 0.50, 0.85];

    private readonly ImmutableArray<LayerDescriptor> _layers;
    private readonly LayerHistory[] _history;
    private readonly MonitorOptions _options;

    public RecordBuilder(IEnumerable<LayerDescriptor> layers, MonitorOptions options)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(options);
        _layers = [.. layers];
        for (int i = 0; i < _layers.Length; i++)
        {
            if (_layers[i].Index != i)
                throw new ArgumentException($"Layer '{_layers[i].Name}' has index {_layers[i].Index}; expected {i} (layers in index order).", nameof(layers));
        }
        _history = [.. _layers.Select(_ => new LayerHistory())];
        _options = options;
    }

    /// <summary>The per-layer history (read-only use: tests and diagnostics).</summary>
    public IReadOnlyList<LayerHistory> History => _history;

    /// <summary>Whether a reference snapshot is set.</summary>
    public bool HasReference => _history.Any(h => h.Reference is not null);

    /// <summary>
    /// The record of <paramref name="capture"/>, or null when it holds nothing at all (no layer ran and no gradients).
    /// Updates the histories (previous statistics, histogram ranges, warned-once flags).
    /// </summary>
    public StepRecord? Build(StepCapture capture)
    {
        ArgumentNullException.ThrowIfNull(capture);
        if (capture.Activations.Length != _layers.Length || capture.Gradients.Length != _layers.Length)
            throw new ArgumentException($"The capture has {capture.Activations.Length} activation and {capture.Gradients.Length} gradient slots; expected {_layers.Length} (one per layer).", nameof(capture));
        bool anyActivation = capture.AnyActivation;
        if (!anyActivation && !capture.AnyGradients) return null;

        var records = ImmutableArray.CreateBuilder<LayerRecord>(_layers.Length);
        var anomalies = ImmutableArray.CreateBuilder<Anomaly>();
        for (int i = 0; i < _layers.Length; i++)
        {
            var layer = _layers[i];
            var history = _history[i];
            var stats = capture.Activations[i] is { } summary ? BuildStatistics(layer, history, summary) : null;
            var record = new LayerRecord(
                capture.Step, layer.Name, layer.LayerType, stats,
                Shift: Compare(stats, history.Previous),
                ReferenceShift: Compare(stats, history.Reference),
                Gradients: capture.Gradients[i] is { } g ? BuildGradients(g) : null);
            records.Add(record);
            anomalies.AddRange(AnomalyDetector.Detect(record, _options));
            if (stats is not null)
            {
                history.Previous = stats;
            }
            else if (anyActivation && !history.WarnedNotCalled)
            {
                history.WarnedNotCalled = true;
                anomalies.Add(AnomalyDetector.NotCalled(capture.Step, layer.Name));
            }
        }
        return new StepRecord(capture.Step, capture.Loss, records.MoveToImmutable(), anomalies.ToImmutable());
    }

    /// <summary>Makes every layer's latest statistics its reference.</summary>
    /// <exception cref="InvalidOperationException">No layer has been recorded yet.</exception>
    public void CaptureReference()
    {
        if (_history.All(h => h.Previous is null))
            throw new InvalidOperationException("There is nothing to capture yet: record at least one training step (Step() on a recorded step after a forward pass) before CaptureReference().");
        foreach (var h in _history) h.Reference = h.Previous;
    }

    /// <summary>Layer <paramref name="index"/>'s percentile brackets (tests).</summary>
    internal PercentileBrackets BracketsOf(int index) => _history[index].Brackets;

    /// <summary>Forgets the reference snapshot.</summary>
    public void ClearReference()
    {
        foreach (var h in _history) h.Reference = null;
    }

    /// <summary>The histories as plain data (see <see cref="ActivationMonitor.ExportState"/>).</summary>
    public MonitorState ExportState() => new(MonitorState.CurrentVersion,
        [.. _layers.Select((l, i) => new LayerState(l.Name, _history[i].Previous, _history[i].Reference,
            _history[i].HistogramRange?.Low, _history[i].HistogramRange?.High, _history[i].WarnedNotCalled))]);

    /// <summary>Restores <paramref name="state"/> into the histories of the layers it names.</summary>
    public void ImportState(MonitorState state)
    {
        if (state.Version != MonitorState.CurrentVersion)
            throw new ArgumentException($"Monitor state version {state.Version} is not supported; expected {MonitorState.CurrentVersion}.", nameof(state));
        var byName = new Dictionary<string, LayerState>(StringComparer.Ordinal);
        foreach (var l in state.Layers ?? []) byName[l.Layer] = l;
        for (int i = 0; i < _layers.Length; i++)
        {
            var h = _history[i];
            if (!byName.TryGetValue(_layers[i].Name, out var l))
            {
                h.Previous = h.Reference = null;
                h.HistogramRange = null;
                h.WarnedNotCalled = false;
                continue;
            }
            h.Previous = l.Previous;
            h.Reference = l.Reference;
            h.HistogramRange = l.HistogramLow is { } low && l.HistogramHigh is { } high ? (low, high) : null;
            h.WarnedNotCalled = l.WarnedNotCalled;
        }
    }

    private LayerStatistics BuildStatistics(LayerDescriptor layer, LayerHistory history, LayerSummary s)
    {
        var sample = s.Sample.AsSpan();
        var percentiles = SampleStatistics.Percentiles(sample, PercentileLevels, history.Brackets);
        (double Low, double High) range;
        if (history.HistogramRange is { } fixedRange)
        {
            range = fixedRange;
        }
        else
        {
            range = SampleStatistics.ChooseRange(s.Min, s.Max, layer.Saturation, layer.NonNegative);
            // Fixed from the first record whose finite values have a spread (an all-zero first output, e.g. a
            // zero-initialized layer, would otherwise pin the range to a sliver).
            if (s.FiniteCount > 0 && s.Max > s.Min) history.HistogramRange = range;
        }
        var counts = SampleStatistics.Histogram(sample, range.Low, range.High, _options.HistogramBins);
        return new LayerStatistics
        {
            Count = s.Count,
            Mean = s.Mean,
            Std = Math.Sqrt(s.Variance),
            Min = s.Min,
            Max = s.Max,
            P15 = percentiles[0],
            P50 = percentiles[1],
            P85 = percentiles[2],
            NearZeroFraction = s.Count > 0 ? (double)s.NearZero / s.Count : double.NaN,
            DeadUnitFraction = s.Units > 0 ? (double)s.DeadUnits / s.Units : double.NaN,
            SaturatedFraction = layer.Saturation is null ? null : s.Count > 0 ? (double)s.Saturated / s.Count : double.NaN,
            NanCount = s.Nan,
            InfCount = s.Inf,
            ChannelSquaredMean = s.ChannelSquaredMean,
            ChannelVariance = s.ChannelVariance,
            Histogram = new Histogram(range.Low, range.High, ImmutableCollectionsMarshal.AsImmutableArray(counts)),   // counts is ours alone
        };
    }

    private static ShiftMetrics? Compare(LayerStatistics? current, LayerStatistics? earlier)
    {
        if (current?.Histogram is not { } a || earlier?.Histogram is not { } b) return null;
        if (a.Low != b.Low || a.High != b.High || a.Counts.Length != b.Counts.Length) return null;
        return ShiftCalculator.Compute(current, earlier);
    }

    private static GradientStatistics BuildGradients(GradientSums g)
    {
        double grad = Math.Sqrt(g.GradSquares), weight = Math.Sqrt(g.WeightSquares);
        return new GradientStatistics(
            GradNorm: grad,
            WeightNorm: weight,
            GradToWeightRatio: weight > 0 ? grad / weight : double.NaN,
            UpdateNorm: g.UpdateSquares is { } u ? Math.Sqrt(u) : null,
            Parameters: g.Elements);
    }
}
