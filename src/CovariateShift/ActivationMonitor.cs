using System.Collections.Immutable;
using CovariateShift.Anomalies;
using CovariateShift.Hooks;
using CovariateShift.Records;
using CovariateShift.Shift;
using CovariateShift.Sinks;
using CovariateShift.Statistics;
using Serilog;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift;

/// <summary>
/// Watches every leaf layer of a TorchSharp model during training: forward hooks record per-layer activation
/// statistics, <see cref="Step"/> turns them into shift metrics and gradient health and hands the resulting
/// <see cref="StepRecord"/> to Serilog, JSON Lines, TensorBoard and in-memory observers.
/// </summary>
/// <example>
/// <code>
/// using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { RecordEvery = 10, Logger = log });
/// foreach (var (x, y) in batches)
/// {
///     using var scope = torch.NewDisposeScope();
///     optimizer.zero_grad();
///     var loss = lossFn(model.call(x), y);
///     loss.backward();
///     monitor.RecordGradients();   // optional: gradient norms and update size
///     optimizer.step();
///     monitor.Step(loss);          // advances the step; records every RecordEvery-th step
/// }
/// </code>
/// </example>
/// <remarks>
/// Hooks fire only for layers invoked with <c>call()</c>; they are registered only during recorded steps and only do
/// work while the layer is in training mode (evaluation passes are never mixed into training records). Per recorded step the hooks compute
/// their reductions where the activations live and keep no activation; the host receives at most one transfer for
/// all layers together. The monitor owns every tensor it keeps and disposes it; <see cref="Dispose"/> removes every hook.
/// </remarks>
public sealed class ActivationMonitor : IDisposable, IObservable<StepRecord>
{
    private static readonly double[] PercentileLevels = [0.15, 0.50, 0.85];

    private readonly nn.Module _model;
    private readonly MonitorOptions _options;
    private readonly List<MonitoredLayer> _layers;
    private readonly List<IStepSink> _sinks;
    private readonly List<IObserver<StepRecord>> _observers = [];
    private readonly StatisticsEngine _engine;
    private readonly ILogger? _log;
    private readonly Probes.GradientIcsProbe? _ics;
    private bool _warnedNothingRan;
    private bool _armed;
    private bool _disposed;

    private ActivationMonitor(nn.Module model, MonitorOptions options, List<MonitoredLayer> layers, List<IStepSink> sinks, IReadOnlyList<string> skipped)
    {
        _model = model;
        _options = options;
        _layers = layers;
        _sinks = sinks;
        _engine = new StatisticsEngine(options);
        _log = options.Logger?.ForContext(Serilog.Core.Constants.SourceContextPropertyName, "CovariateShift");
        SkippedLayers = skipped;
        _ics = options.GradientIcs is { } ics ? new Probes.GradientIcsProbe(model, ics) : null;
        Layers = layers.Select(l => l.Name).ToList().AsReadOnly();
        ArmHooks();   // step 0 is always recorded
    }

    /// <summary>
    /// Hooks are registered only for recorded steps (TorchSharp's call() is slower on a module with hooks even when the
    /// hook returns at once): armed when a recorded step begins, removed when it ends if the next step is not recorded.
    /// </summary>
    private void ArmHooks()
    {
        if (_armed) return;
        foreach (var layer in _layers)
        {
            var l = layer;
            var remover = l.Module.register_forward_hook((_, _, output) =>
            {
                OnForward(l, output);
                return output;
            });
            l.Hook = new HookHandle(remover.remove);
        }
        _armed = true;
    }

    private void DisarmHooks()
    {
        if (!_armed) return;
        foreach (var layer in _layers)
        {
            layer.Hook?.Dispose();
            layer.Hook = null;
        }
        _armed = false;
    }

    /// <summary>
    /// Attaches a monitor to <paramref name="model"/>: a forward hook on every leaf layer that passes the filters of
    /// <paramref name="options"/>. The model is not changed otherwise. Dispose the monitor to remove the hooks.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range (the message names it and what is expected).</exception>
    /// <exception cref="ArgumentException">The model has no leaf layers, or none matched the filters.</exception>
    /// <exception cref="IOException">A metrics file or TensorBoard directory cannot be written; nothing is left behind.</exception>
    public static ActivationMonitor Attach(nn.Module model, MonitorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new MonitorOptions();
        options.Validate();
        var found = LayerDiscovery.Find(model, options, out var skipped);
        var sinks = OpenSinks(options);
        var layers = found.Select((f, i) => new MonitoredLayer(i, f.Name, f.Module)).ToList();
        return new ActivationMonitor(model, options, layers, sinks, skipped);
    }

    private static List<IStepSink> OpenSinks(MonitorOptions options)
    {
        var sinks = new List<IStepSink>();
        var created = new List<string>();
        try
        {
            if (options.JsonLinesPath is { } path)
            {
                bool existed = File.Exists(path);
                var sink = new JsonLinesSink(path);
                sinks.Add(sink);
                if (!existed) created.Add(sink.Path);
            }
            if (options.TensorBoardDirectory is { } dir)
                sinks.Add(new TensorBoardSink(dir, options.TensorBoardHistogramEvery));
            if (options.Logger is { } logger)
                sinks.Add(new SerilogSink(logger));
            return sinks;
        }
        catch
        {
            foreach (var s in sinks) s.Dispose();
            foreach (var f in created) File.Delete(f);
            throw;
        }
    }

    /// <summary>Dotted names of the monitored layers, in model order.</summary>
    public IReadOnlyList<string> Layers { get; }

    /// <summary>Leaf layers that could not be hooked, with the reason.</summary>
    public IReadOnlyList<string> SkippedLayers { get; }

    /// <summary>The options in use.</summary>
    public MonitorOptions Options => _options;

    /// <summary>Index of the current training step (0-based; advanced by <see cref="Step"/>).</summary>
    public long CurrentStep { get; private set; }

    /// <summary>Whether the current step is recorded (every <see cref="MonitorOptions.RecordEvery"/>-th step, starting at step 0).</summary>
    public bool IsRecordingStep => CurrentStep % _options.RecordEvery == 0;

    /// <summary>The most recent record, or null before the first recorded step.</summary>
    public StepRecord? LastRecord { get; private set; }

    /// <summary>Whether a reference snapshot is set (see <see cref="CaptureReference"/>).</summary>
    public bool HasReference => _layers.Any(l => l.Reference is not null);

    /// <summary>Device-to-host transfers made so far (at most one per recorded step; zero for CPU float32 models).</summary>
    public int HostTransfers => _engine.HostTransfers;

    private void OnForward(MonitoredLayer layer, Tensor output)
    {
        // Training mode is the model's, not the layer's: a frozen (eval-mode) layer inside a training model is still part
        // of the training step, and a layer switched to training during an evaluation pass (MC dropout) is not.
        if (_disposed || !_model.training || layer.FiredThisStep || !IsRecordingStep) return;
        layer.FiredThisStep = true;
        _engine.CaptureActivation(layer, output);
    }

    /// <summary>
    /// Records the gradient norm, weight norm and a snapshot of the parameters of every monitored layer with trainable
    /// parameters. Call it after <c>backward()</c> and before <c>optimizer.step()</c>; <see cref="Step"/> then also
    /// measures the size of the update. Does nothing on steps that are not recorded.
    /// </summary>
    public void RecordGradients()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!IsRecordingStep) return;
        _engine.CaptureGradients(_layers.Where(l => l.HasParameters).ToList());
        _ics?.Capture();
    }

    /// <summary>
    /// With <see cref="MonitorOptions.GradientIcs"/> set, on a recorded step: after <c>optimizer.step()</c> and before
    /// <see cref="Step"/>, measures the gradient ICS of every probed layer by recomputing <paramref name="loss"/> on the
    /// same batch (see <see cref="Probes.GradientIcsProbe"/>). Empty on other steps or without the option.
    /// </summary>
    public IReadOnlyList<Probes.GradientIcsMeasurement> MeasureGradientIcs(Func<Tensor> loss)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _ics is not null && IsRecordingStep ? _ics.Measure(CurrentStep, loss) : [];
    }

    /// <summary>
    /// Ends the current training step and advances to the next. On a recorded step it collects what the hooks
    /// captured (one host transfer at most), computes shift metrics and anomalies, writes the record to every sink
    /// and observer and returns it; otherwise it returns null. Pass the step's loss to have it recorded too (read in
    /// the same transfer).
    /// </summary>
    public StepRecord? Step(Tensor? loss = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        try
        {
            if (!IsRecordingStep) return null;
            if (loss is not null) _engine.CaptureLoss(loss);
            _engine.Collect(_layers);
            return Finish();
        }
        finally
        {
            foreach (var layer in _layers) layer.ResetStep();
            _engine.ResetLoss();
            CurrentStep++;
            if (IsRecordingStep) ArmHooks();
            else DisarmHooks();
        }
    }

    private StepRecord? Finish()
    {
        bool anyFired = _layers.Any(l => l.FiredThisStep);
        bool anyGradients = _layers.Any(l => l.PendingGradients is not null);
        if (!anyFired && !anyGradients)
        {
            if (!_warnedNothingRan)
            {
                _warnedNothingRan = true;
                _log?.Warning("No monitored layer ran in training mode during step {Step}: call the model with call() in training mode between Step() calls (eval-mode passes are not recorded).", CurrentStep);
            }
            return null;
        }

        // Per-layer work runs on the training thread. Spreading it over the thread pool gains nothing measurable: right
        // after each operation libtorch's OpenMP workers keep spinning on the other cores, so pool threads compete with
        // them (measured with covshift bench on 2 cores: equal without gradients, slower with them).
        var records = new LayerRecord[_layers.Count];
        var found = new List<Anomaly>[_layers.Count];
        void Build(int i)
        {
            var layer = _layers[i];
            var stats = layer.Pending is { } p ? BuildStatistics(layer, p) : null;
            records[i] = new LayerRecord(
                CurrentStep, layer.Name, layer.LayerType, stats,
                Shift: Compare(stats, layer.Previous),
                ReferenceShift: Compare(stats, layer.Reference),
                Gradients: layer.PendingGradients is { } g ? BuildGradients(g) : null);
            found[i] = AnomalyDetector.Detect(records[i], _options).ToList();
        }
        for (int i = 0; i < _layers.Count; i++) Build(i);

        var anomalies = new List<Anomaly>();
        for (int i = 0; i < _layers.Count; i++)
        {
            var layer = _layers[i];
            anomalies.AddRange(found[i]);
            if (records[i].Statistics is { } stats)
            {
                layer.Previous = stats;
            }
            else if (anyFired && !layer.WarnedNotCalled)
            {
                layer.WarnedNotCalled = true;
                anomalies.Add(AnomalyDetector.NotCalled(CurrentStep, layer.Name));
            }
        }

        var step = new StepRecord(CurrentStep, _engine.Loss, records, anomalies);
        LastRecord = step;
        foreach (var sink in _sinks) sink.Write(step);
        foreach (var observer in _observers.ToArray()) observer.OnNext(step);
        return step;
    }

    private LayerStatistics BuildStatistics(MonitoredLayer layer, ActivationSummary s)
    {
        var sample = s.Sample.AsSpan(0, s.SampleCount);
        var percentiles = SampleStatistics.Percentiles(sample, PercentileLevels);
        (double Low, double High) range;
        if (layer.HistogramRange is { } fixedRange)
        {
            range = fixedRange;
        }
        else
        {
            range = SampleStatistics.ChooseRange(s.Min, s.Max, layer.Saturation, layer.NonNegative);
            // Fixed from the first record whose finite values have a spread (an all-zero first output, e.g. a
            // zero-initialized layer, would otherwise pin the range to a sliver).
            if (s.FiniteCount > 0 && s.Max > s.Min) layer.HistogramRange = range;
        }
        var counts = SampleStatistics.Histogram(sample, range.Low, range.High, _options.HistogramBins);
        return new LayerStatistics(
            Count: s.Count,
            Mean: s.Mean,
            Std: Math.Sqrt(s.Variance),
            Min: s.Min,
            Max: s.Max,
            P15: percentiles[0],
            P50: percentiles[1],
            P85: percentiles[2],
            NearZeroFraction: (double)s.NearZero / s.Count,
            DeadUnitFraction: s.Units > 0 ? (double)s.DeadUnits / s.Units : double.NaN,
            SaturatedFraction: layer.Saturation is null ? null : (double)s.Saturated / s.Count,
            NanCount: s.Nan,
            InfCount: s.Inf,
            ChannelSquaredMean: s.ChannelSquaredMean,
            ChannelVariance: s.ChannelVariance,
            Histogram: new Histogram(range.Low, range.High, ImmutableArray.Create(counts)));
    }

    private static ShiftMetrics? Compare(LayerStatistics? current, LayerStatistics? earlier)
    {
        if (current is null || earlier is null) return null;
        var (a, b) = (current.Histogram, earlier.Histogram);
        if (a.Low != b.Low || a.High != b.High || a.Counts.Length != b.Counts.Length) return null;
        return ShiftCalculator.Compute(current, earlier);
    }

    private static GradientStatistics BuildGradients(GradientCapture g)
    {
        double grad = Math.Sqrt(g.GradSquares), weight = Math.Sqrt(g.WeightSquares);
        return new GradientStatistics(
            GradNorm: grad,
            WeightNorm: weight,
            GradToWeightRatio: weight > 0 ? grad / weight : double.NaN,
            UpdateNorm: g.UpdateSquares is { } u ? Math.Sqrt(u) : null,
            Parameters: g.Elements);
    }

    /// <summary>
    /// Makes the latest recorded statistics of every layer the reference snapshot: from now on every record also
    /// carries <see cref="LayerRecord.ReferenceShift"/> against it (e.g. capture before fine-tuning on a new domain).
    /// </summary>
    /// <exception cref="InvalidOperationException">No step has been recorded yet.</exception>
    public void CaptureReference()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_layers.All(l => l.Previous is null))
            throw new InvalidOperationException("There is nothing to capture yet: record at least one training step (Step() on a recorded step after a forward pass) before CaptureReference().");
        foreach (var layer in _layers) layer.Reference = layer.Previous;
    }

    /// <summary>Forgets the reference snapshot.</summary>
    public void ClearReference()
    {
        foreach (var layer in _layers) layer.Reference = null;
    }

    /// <summary>Receives every record from now on (in-memory consumers). Dispose the returned handle to unsubscribe.</summary>
    public IDisposable Subscribe(IObserver<StepRecord> observer)
    {
        ArgumentNullException.ThrowIfNull(observer);
        ObjectDisposedException.ThrowIf(_disposed, this);
        _observers.Add(observer);
        return new HookHandle(() => _observers.Remove(observer));
    }

    /// <summary>Removes every hook, releases every tensor the monitor holds, closes the sinks and completes the observers.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        DisarmHooks();
        foreach (var layer in _layers) layer.Dispose();
        _engine.Dispose();
        _ics?.Dispose();
        foreach (var sink in _sinks) sink.Dispose();
        foreach (var observer in _observers.ToArray()) observer.OnCompleted();
        _observers.Clear();
    }

    private sealed class HookHandle(Action remove) : IDisposable
    {
        private Action? _remove = remove;

        public void Dispose()
        {
            _remove?.Invoke();
            _remove = null;
        }
    }
}
