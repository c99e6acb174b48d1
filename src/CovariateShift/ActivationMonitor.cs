using CovariateShift.Building;
using CovariateShift.Capture;
using CovariateShift.Hooks;
using CovariateShift.Records;
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
/// A thin facade over four stages with typed hand-offs: the <see cref="HookSet"/> (registration, arming on recorded
/// steps, removal) hands (layer, output) to <see cref="OnLayerOutput"/>, which passes it to the
/// <see cref="IStatisticsEngine"/>; at <see cref="Step"/> the engine's <see cref="IStatisticsEngine.Collect"/> returns
/// an immutable <see cref="StepCapture"/> (possibly pending), the pure <see cref="RecordBuilder"/> turns it and its
/// per-layer history into a <see cref="StepRecord"/>, and the record goes to the sinks and observers.
/// Hooks fire only for layers invoked with <c>call()</c>; layers that a parent calls with <c>forward()</c> through a field are
/// recorded by the hook set's module wrappers instead. Hooks are registered only during recorded steps and only do
/// work while the layer is in training mode (evaluation passes are never mixed into training records). Per recorded step the hooks compute
/// their reductions where the activations live and keep no activation; the host receives at most one transfer for
/// all layers together. The monitor owns every tensor it keeps and disposes it; <see cref="Dispose"/> removes every hook.
/// </remarks>
public sealed class ActivationMonitor : IDisposable, IObservable<StepRecord>
{
    /// <summary>The Serilog source context (<c>SourceContext</c> property) of every event the monitor logs; filter with
    /// <c>Matching.FromSource(ActivationMonitor.LogSourceContext)</c>.</summary>
    public const string LogSourceContext = "CovariateShift.Monitor";

    private readonly nn.Module _model;
    private readonly MonitorOptions _options;
    private readonly List<MonitoredLayer> _layers;
    private readonly IReadOnlyList<MonitoredLayer> _layersWithParameters;
    private readonly HookSet _hooks;
    private readonly IStatisticsEngine _engine;
    private readonly RecordBuilder _builder;
    private readonly SinkFanOut _sinks;
    private readonly List<IObserver<StepRecord>> _observers = [];
    private readonly Queue<(PendingCapture Capture, WindowTiming Timing)> _pending = new();
    private readonly OverheadMeter _meter;
    private readonly RecordingInterval _interval;
    private long _windowEndStep = -1;
    private long? _lastRecordStep;
    private long _records;   // records published since step 0, those of the run this monitor continues included
    private readonly ILogger? _log;
    private readonly Probes.GradientIcsProbe? _ics;
    private readonly Forecast.DivergenceForecaster? _forecaster;
    private bool _warnedNothingRan;
    private bool _capturingReference;
    private bool _recordingThisStep;   // see BeginStep
    private bool _disposed;

    private ActivationMonitor(nn.Module model, MonitorOptions options, List<MonitoredLayer> layers, List<IStepSink> sinks, IReadOnlyList<string> skipped)
    {
        _model = model;
        _options = options;
        _layers = layers;
        _layersWithParameters = [.. layers.Where(l => l.HasParameters)];
        _meter = options.Clock is { } clock ? new OverheadMeter(clock.Now, clock.Frequency) : new OverheadMeter();
        _interval = new RecordingInterval(options.RecordEvery, options.MaxRecordEvery ?? (int)Math.Min(int.MaxValue, options.RecordEvery * 1024L), options.OverheadBudget);
        _log = options.Logger?.ForContext(Serilog.Core.Constants.SourceContextPropertyName, LogSourceContext);
        _sinks = new SinkFanOut(sinks, _log ?? Serilog.Log.Logger.ForContext(Serilog.Core.Constants.SourceContextPropertyName, LogSourceContext), options.StrictSinks);
        _engine = CreateEngine(options);
        _builder = new RecordBuilder(layers.Select(l => l.Descriptor), options);
        _hooks = new HookSet(model, layers, OnLayerOutput, _engine.DiscardActivations, OnBeforeInPlace);
        SkippedLayers = skipped;
        _ics = options.GradientIcs is { } ics ? new Probes.GradientIcsProbe(model, ics) : null;
        _forecaster = options.Forecast is { } forecast ? new Forecast.DivergenceForecaster(forecast) : null;
        Layers = layers.Select(l => l.Name).ToList().AsReadOnly();
        CallOnlyLayers = _hooks.WrapFallbacks.Select(f => f.Message).ToList().AsReadOnly();
        // Information, not Warning: such a layer is usually called with call() (then nothing is missed); one that is not
        // is reported as LayerNotCalled at the first recorded step.
        foreach (var f in _hooks.WrapFallbacks)
            _log?.Information("Layer {Layer} is recorded only when called with call(): {Reason}", f.Layer, f.Message);
        CurrentStep = options.FirstStep;
        _records = RecordsBefore(options);
        BeginStep();
    }

    /// <summary>
    /// Decides whether the step that begins now is recorded and arms or disarms the hooks for it. The decision holds for
    /// the whole step: an overhead budget that changes the interval while the step runs (a record finished by a later
    /// Step, Flush or ExportState) changes it from the next step on, so a step is recorded exactly when its forward pass
    /// was hooked.
    /// </summary>
    private void BeginStep()
    {
        _recordingThisStep = _interval.IsRecorded(CurrentStep);
        if (_recordingThisStep) _hooks.Arm();
        else _hooks.Disarm();
    }

    /// <summary>
    /// Attaches a monitor to <paramref name="model"/>: a forward hook on every leaf layer that passes the filters of
    /// <paramref name="options"/>, and, on recorded steps, a recording wrapper in every field (or ModuleList/ModuleDict element)
    /// through which a parent reaches such a layer, so that layers called with <c>forward()</c> are recorded too (on other
    /// steps the fields hold the original modules and the model runs as without a monitor). The model's
    /// registration (state_dict, parameters, named_modules) is not changed. Dispose the monitor to remove the hooks and
    /// put every original module back into its field.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range (the message names it and what is expected).</exception>
    /// <exception cref="ArgumentException">The model has no leaf layers, or none matched the filters.</exception>
    /// <exception cref="IOException">A metrics file or TensorBoard directory cannot be written; nothing is left behind.</exception>
    public static ActivationMonitor Attach(nn.Module model, MonitorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new MonitorOptions();
        List<(string Name, nn.Module<Tensor, Tensor> Module)> found;
        List<string> skipped;
        try
        {
            options.Validate();
            options.Forecast?.Validate();
            found = LayerDiscovery.Find(model, options, out skipped);
        }
        catch
        {
            foreach (var s in options.Sinks) s.Dispose();   // the monitor owns them, also when it cannot attach
            throw;
        }
        var sinks = OpenSinks(options);
        var layers = found.Select((f, i) => new MonitoredLayer(i, f.Name, f.Module)).ToList();
        return new ActivationMonitor(model, options, layers, sinks, skipped);
    }

    /// <summary>Records a monitor started at step 0 would have written before FirstStep at a fixed interval (the sinks'
    /// histogram cadence); <see cref="ImportState"/> replaces it with the saved count.</summary>
    private static long RecordsBefore(MonitorOptions options) => (options.FirstStep + options.RecordEvery - 1) / options.RecordEvery;

    private static List<IStepSink> OpenSinks(MonitorOptions options)
    {
        var sinks = new List<IStepSink>();
        var created = new List<string>();
        try
        {
            long recordsBefore = RecordsBefore(options);
            if (options.JsonLinesPath is { } path)
            {
                bool existed = File.Exists(path);
                var sink = new JsonLinesSink(path, options.JsonLinesHistogramEvery, options.JsonLinesAppend) { RecordsBefore = recordsBefore };
                sinks.Add(sink);
                if (!existed) created.Add(sink.Path);
            }
            if (options.TensorBoardDirectory is { } dir)
                sinks.Add(new TensorBoardSink(dir, options.TensorBoardHistogramEvery) { RecordsBefore = recordsBefore });
            if (options.Logger is { } logger)
                sinks.Add(new SerilogSink(logger));
            sinks.AddRange(options.Sinks);
            return sinks;
        }
        catch
        {
            foreach (var s in sinks.Concat(options.Sinks).Distinct()) s.Dispose();
            foreach (var f in created) File.Delete(f);
            throw;
        }
    }

    /// <summary>The engine for <paramref name="options"/> (the seam where other engines plug in).</summary>
    private static IStatisticsEngine CreateEngine(MonitorOptions options) => options.EngineFactory?.Invoke(options) ?? new StatisticsEngine(options);

    /// <summary>Dotted names of the monitored layers, in model order.</summary>
    public IReadOnlyList<string> Layers { get; }

    /// <summary>Leaf layers that could not be hooked, with the reason.</summary>
    public IReadOnlyList<string> SkippedLayers { get; }

    /// <summary>
    /// Monitored layers that a parent module holds in a field that cannot take a recording wrapper (typed with a concrete
    /// class such as <c>Conv2d</c>), one line each with the layer, the field and why: they are recorded only when called
    /// with <c>call()</c>, not when the parent calls <c>forward()</c> through that field. Each is also logged once at attach
    /// (Information); if the layer then does not run through <c>call()</c>, the first recorded step reports it as
    /// <see cref="AnomalyKind.LayerNotCalled"/> (a Warning).
    /// </summary>
    public IReadOnlyList<string> CallOnlyLayers { get; }

    /// <summary>The options in use.</summary>
    public MonitorOptions Options => _options;

    /// <summary>Index of the current training step (0-based; advanced by <see cref="Step"/>).</summary>
    public long CurrentStep { get; private set; }

    /// <summary>Whether the current step is recorded (every <see cref="CurrentRecordEvery"/>-th step, starting at step 0;
    /// decided when the step begins, so an interval the budget changes during the step applies from the next one).</summary>
    public bool IsRecordingStep => _recordingThisStep;

    /// <summary>The recording interval in use: <see cref="MonitorOptions.RecordEvery"/>, or with
    /// <see cref="MonitorOptions.OverheadBudget"/> the power-of-two multiple of it that the budget chose last.</summary>
    public int CurrentRecordEvery => _interval.Current;

    /// <summary>The monitor's own wall time on the training thread since attach (hooks and wrappers, RecordGradients,
    /// Step, records and sinks; see <see cref="StepRecord.MonitorMs"/> for what it covers).</summary>
    public TimeSpan MonitorTime => TimeSpan.FromSeconds((double)_meter.TotalMonitorTicks / _meter.Frequency);

    /// <summary><see cref="MonitorTime"/> split by what the monitor was doing (hooks, gradients, collection, records,
    /// sinks, probes, the rest); take two and subtract (<see cref="MonitorTimeBreakdown.Since"/>) for an interval.</summary>
    public MonitorTimeBreakdown MonitorTimeByPart => new(_meter.PartTicks(), _meter.Frequency);

    /// <summary>The most recent record, or null before the first recorded step.</summary>
    public StepRecord? LastRecord { get; private set; }

    /// <summary>Whether a reference snapshot is set (see <see cref="CaptureReference()"/>).</summary>
    public bool HasReference => _builder.HasReference;

    /// <summary>Device-to-host transfers made so far (at most one per recorded step; zero for CPU float32 models).</summary>
    public int HostTransfers => _engine.HostTransfers;

    /// <summary>
    /// The one entry point for a layer's output: forward hooks (and anything else that sees a monitored layer's output,
    /// such as a module wrapper) call it with the layer and its output. Captures the output on recorded steps while the
    /// model is in training mode; keeps no reference to <paramref name="output"/>.
    /// </summary>
    internal void OnLayerOutput(MonitoredLayer layer, Tensor output)
    {
        // Training mode is the model's, not the layer's: a frozen (eval-mode) layer inside a training model is still part
        // of the training step, and a layer switched to training during an evaluation pass (MC dropout) is not.
        if (_disposed || !_model.training || !(IsRecordingStep || _capturingReference)) return;
        _meter.Enter(MonitorPart.Activations);
        try
        {
            _engine.CaptureActivation(layer, output);
        }
        finally
        {
            _meter.Exit();
        }
    }

    /// <summary>An in-place module is about to overwrite <paramref name="input"/> (recorded steps, training mode).</summary>
    private void OnBeforeInPlace(Tensor input)
    {
        if (_disposed || !_model.training || !(IsRecordingStep || _capturingReference)) return;
        _meter.Enter(MonitorPart.Activations);
        try
        {
            _engine.BeforeInPlace(input);
        }
        finally
        {
            _meter.Exit();
        }
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
        _meter.Enter(MonitorPart.Gradients);
        try
        {
            _engine.CaptureGradients(_layersWithParameters);
            _ics?.Capture();
        }
        finally
        {
            _meter.Exit();
        }
    }

    /// <summary>
    /// With <see cref="MonitorOptions.GradientIcs"/> set, on a recorded step: after <c>optimizer.step()</c> and before
    /// <see cref="Step"/>, measures the gradient ICS of every probed layer by recomputing <paramref name="loss"/> on the
    /// same batch (see <see cref="Probes.GradientIcsProbe"/>). Empty on other steps or without the option.
    /// </summary>
    public IReadOnlyList<Probes.GradientIcsMeasurement> MeasureGradientIcs(Func<Tensor> loss)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_ics is null || !IsRecordingStep) return [];
        _meter.Enter(MonitorPart.Probes);
        try
        {
            return _ics.Measure(CurrentStep, loss);
        }
        finally
        {
            _meter.Exit();
        }
    }

    /// <summary>
    /// Ends the current training step and advances to the next. On a recorded step it collects what the hooks
    /// captured (one host transfer at most), computes shift metrics and anomalies, writes the record to every sink
    /// and observer and returns it; otherwise it returns null. Pass the step's loss to have it recorded too (read in
    /// the same transfer). What a forward pass that did not return (it threw) captured is not recorded.
    /// <para>On a CUDA device the step's statistics travel to the host asynchronously, so the training loop never waits
    /// for the GPU: a recorded step's record is finished by a later <see cref="Step"/> call (recorded or not) as soon
    /// as its data has arrived, usually the next one; at most <see cref="MaxRecordsInFlight"/> records wait at a time
    /// (Step waits for the oldest beyond that), and <see cref="Flush"/> / <see cref="Dispose"/> finish the rest. Step
    /// returns the newest record it finished (its <see cref="StepRecord.Step"/> tells which), or null. On the CPU
    /// records are finished within their own Step call.</para>
    /// </summary>
    public StepRecord? Step(Tensor? loss = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _meter.Enter(MonitorPart.Other);
        try
        {
            var finished = Drain(wait: false);
            if (!IsRecordingStep) return finished;
            if (_hooks.ForwardInProgress) _engine.DiscardActivations();
            if (loss is not null) _engine.CaptureLoss(loss);
            PendingCapture capture;
            _meter.Enter(MonitorPart.Collection);
            try
            {
                capture = _engine.Collect(CurrentStep, _layers.Count);
            }
            finally
            {
                _meter.Exit();
            }
            // The window of this record ends here: building and writing it counts in the next one.
            var (monitorTicks, wallTicks) = _meter.CloseWindow();
            _pending.Enqueue((capture, new WindowTiming(monitorTicks, wallTicks, CurrentStep - _windowEndStep)));
            _windowEndStep = CurrentStep;
            while (_pending.Count > MaxRecordsInFlight)
            {
                var (head, timing) = _pending.Dequeue();
                finished = Publish(WaitFor(head), timing) ?? finished;
            }
            return Drain(wait: false) ?? finished;
        }
        finally
        {
            try
            {
                _hooks.ForgetForward();
                CurrentStep++;
                BeginStep();
            }
            finally
            {
                _meter.Exit();   // whatever happened, the part is closed: later training time is not the monitor's
            }
        }
    }

    /// <summary>Records whose statistics may be on their way from the device at once (see <see cref="Step"/>).</summary>
    public const int MaxRecordsInFlight = 2;

    /// <summary>Recorded steps whose record is not finished yet (asynchronous device statistics; 0 on the CPU).</summary>
    public int PendingRecords => _pending.Count;

    /// <summary>The device engine's operation counter (tests and the cost model); null for an engine from a factory.</summary>
    internal Statistics.Batched.DeviceOpCounter? DeviceOps => (_engine as StatisticsEngine)?.DeviceOps;

    /// <summary>The built-in engine's pool of sample buffers (tests); null for an engine from a factory.</summary>
    internal Capture.SamplePool? SamplePool => (_engine as StatisticsEngine)?.Samples;

    /// <summary>
    /// Finishes every capture still on its way to the host (engines that copy asynchronously) and writes its records;
    /// returns the last record written, or null. The built-in engine completes captures within <see cref="Step"/> on the
    /// CPU; on CUDA a record is pending until its statistics have arrived (see <see cref="Step"/>).
    /// </summary>
    public StepRecord? Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _meter.Enter(MonitorPart.Other);
        try
        {
            return Drain(wait: true);
        }
        finally
        {
            _meter.Exit();
        }
    }

    /// <summary>Turns the completed captures at the head of the queue (all of them when <paramref name="wait"/>) into records.</summary>
    private StepRecord? Drain(bool wait)
    {
        StepRecord? last = null;
        while (_pending.TryPeek(out var head) && (wait || head.Capture.IsCompleted))
        {
            _pending.Dequeue();
            last = Publish(WaitFor(head.Capture), head.Timing) ?? last;
        }
        return last;
    }

    /// <summary>A capture's statistics on the host (waiting for a device transfer counts as collection).</summary>
    private StepCapture WaitFor(PendingCapture capture)
    {
        _meter.Enter(MonitorPart.Collection);
        try
        {
            return capture.Wait();
        }
        finally
        {
            _meter.Exit();
        }
    }

    /// <summary>One record's window: the monitor's time and the wall time since the previous window, and its steps.</summary>
    private readonly record struct WindowTiming(long MonitorTicks, long WallTicks, long Steps);

    private StepRecord? Publish(StepCapture capture, WindowTiming timing)
    {
        if (!capture.AnyActivation && !_warnedNothingRan)
        {
            _warnedNothingRan = true;
            _log?.Warning("No monitored layer ran in training mode during step {Step}: call the model with call() in training mode between Step() calls (eval-mode passes are not recorded).", capture.Step);
        }
        StepRecord? built;
        _meter.Enter(MonitorPart.Records);
        try
        {
            built = _builder.Build(capture);
        }
        finally
        {
            try
            {
                capture.ReleaseSamples();
            }
            finally
            {
                _meter.Exit();
            }
        }
        if (built is null) return null;
        long steps = Math.Max(1, timing.Steps);
        var record = built with
        {
            MonitorMs = _meter.Milliseconds(timing.MonitorTicks) / steps,
            StepMs = _meter.Milliseconds(timing.WallTicks) / steps,
            StepsSincePrevious = capture.Step - _lastRecordStep,
        };
        _lastRecordStep = capture.Step;
        AdaptInterval(timing);
        if (_forecaster is not null)
        {
            _meter.Enter(MonitorPart.Records);
            try
            {
                if (_forecaster.Observe(record) is { } forecast) record = record with { Anomalies = [.. record.Anomalies, Forecast.ForecastAnomaly.From(forecast)] };
            }
            finally
            {
                _meter.Exit();
            }
        }
        LastRecord = record;
        _records++;
        _meter.Enter(MonitorPart.Sinks);
        try
        {
            _sinks.Write(record);
            foreach (var observer in _observers.ToArray()) observer.OnNext(record);
        }
        finally
        {
            _meter.Exit();
        }
        return record;
    }

    /// <summary>With an overhead budget: feeds the record's window to the interval and logs a change once.</summary>
    private void AdaptInterval(WindowTiming timing)
    {
        int before = _interval.Current;
        if (_interval.Observe(timing.MonitorTicks, timing.WallTicks, timing.Steps) is not { } after) return;
        _log?.Information(
            "Recording every {RecordEvery} steps (was {PreviousRecordEvery}): the monitor took {OverheadShare:P2} of the step time over the last {WindowSteps} steps; budget {OverheadBudget:P2}",
            after, before, _interval.LastShare, _interval.LastWindowSteps, _options.OverheadBudget);
    }

    /// <summary>
    /// Makes the latest recorded statistics of every layer the reference snapshot: from now on every record also
    /// carries <see cref="LayerRecord.ReferenceShift"/> against it (e.g. capture before fine-tuning on a new domain).
    /// </summary>
    /// <exception cref="InvalidOperationException">No step has been recorded yet.</exception>
    public void CaptureReference()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _builder.CaptureReference();
    }

    /// <summary>Forgets the reference snapshot.</summary>
    public void ClearReference() => _builder.ClearReference();

    /// <summary>
    /// Makes the statistics of one forward pass the reference snapshot without a training step: the layers' outputs
    /// during <paramref name="forwardPass"/> (training mode, e.g. the model before fine-tuning on a batch of its source
    /// domain) become the reference and the previous statistics of the next record's <see cref="LayerRecord.Shift"/>;
    /// nothing is written to the sinks or observers and <see cref="CurrentStep"/> does not advance.
    /// </summary>
    /// <exception cref="InvalidOperationException">No monitored layer ran during <paramref name="forwardPass"/>.</exception>
    public void CaptureReference(Action forwardPass)
    {
        ArgumentNullException.ThrowIfNull(forwardPass);
        ObjectDisposedException.ThrowIf(_disposed, this);
        Drain(wait: true);
        _capturingReference = true;
        try
        {
            _hooks.Arm();
            forwardPass();
            if (_hooks.ForwardInProgress) _engine.DiscardActivations();
            var capture = _engine.Collect(CurrentStep, _layers.Count).Wait();
            bool built;
            try
            {
                built = capture.AnyActivation && _builder.Build(capture) is not null;
            }
            finally
            {
                capture.ReleaseSamples();
            }
            if (!built)
                throw new InvalidOperationException("No monitored layer ran in training mode during the reference pass: call the model with call() in training mode inside it.");
            _builder.CaptureReference();
        }
        finally
        {
            _capturingReference = false;
            _hooks.ForgetForward();
            if (_recordingThisStep) _hooks.Arm();   // the current step goes on as it began
            else _hooks.Disarm();
        }
    }

    /// <summary>
    /// What the next records depend on besides the model (per layer: the previous statistics, the reference snapshot,
    /// the fixed histogram range; the forecaster's averages and episode; the recording interval an overhead budget chose): save it with a checkpoint and <see cref="ImportState"/> it into the monitor of the
    /// resumed run, so that its records equal those of a run that was never stopped (with an overhead budget: while the
    /// interval holds; later changes follow the share the resumed process measures).
    /// </summary>
    public MonitorState ExportState()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Drain(wait: true);
        return _builder.ExportState() with { LastRecordStep = _lastRecordStep, RecordEvery = _interval.Current, Records = _records, Forecast = _forecaster?.ExportState() };
    }

    /// <summary>Restores what <see cref="ExportState"/> saved (layers matched by name; layers it does not know start afresh).
    /// With <see cref="MonitorOptions.OverheadBudget"/> set, the monitor goes on at the saved interval when it is
    /// RecordEvery * 2^k (at most <see cref="MonitorOptions.MaxRecordEvery"/>) and measures its share afresh from there;
    /// without a budget the interval is RecordEvery whatever the state says.</summary>
    /// <exception cref="ArgumentException">The state's version is not one this monitor reads.</exception>
    public void ImportState(MonitorState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        ObjectDisposedException.ThrowIf(_disposed, this);
        _builder.ImportState(state);
        if (state.LastRecordStep is { } last) _lastRecordStep = last;
        if (state.Forecast is { } forecast) _forecaster?.ImportState(forecast);
        if (state.Records is { } records)
        {
            // The histogram cadence of the metrics file and TensorBoard this monitor opened counts the records written
            // before (with a budget they are not FirstStep / RecordEvery).
            _records = records;
            foreach (var sink in _sinks.Sinks.Except(_options.Sinks))
            {
                if (sink is JsonLinesSink json) json.RecordsBefore = records;
                else if (sink is TensorBoardSink board) board.RecordsBefore = records;
            }
        }
        // With an overhead budget the interval it had chosen goes on (the hooks follow it for the current step).
        if (state.RecordEvery is { } every && _interval.Resume(every)) BeginStep();
    }

    /// <summary>Receives every record from now on (in-memory consumers). Dispose the returned handle to unsubscribe.</summary>
    public IDisposable Subscribe(IObserver<StepRecord> observer)
    {
        ArgumentNullException.ThrowIfNull(observer);
        ObjectDisposedException.ThrowIf(_disposed, this);
        _observers.Add(observer);
        return new Unsubscriber(() => _observers.Remove(observer));
    }

    /// <summary>Removes every hook, releases every tensor the monitor holds, closes the sinks and completes the observers.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        try
        {
            Drain(wait: true);
        }
        finally
        {
            _disposed = true;
            _hooks.Dispose();
            _engine.Dispose();
            _ics?.Dispose();
            _sinks.Dispose();
            foreach (var observer in _observers.ToArray()) observer.OnCompleted();
            _observers.Clear();
        }
    }

    private sealed class Unsubscriber(Action remove) : IDisposable
    {
        private Action? _remove = remove;

        public void Dispose()
        {
            _remove?.Invoke();
            _remove = null;
        }
    }
}
