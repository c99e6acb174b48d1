using CovariateShift.Capture;
using CovariateShift.Records;
using CovariateShift.Statistics;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>The facade with an engine whose captures complete later (as an asynchronous device engine's would).</summary>
public sealed class PendingCaptureTests
{
    /// <summary>The built-in engine, with every capture held back until <see cref="Release"/>.</summary>
    private sealed class DelayedEngine(MonitorOptions options) : IStatisticsEngine
    {
        private readonly StatisticsEngine _inner = new(options);
        private bool _released;

        public int HostTransfers => _inner.HostTransfers;

        public void Release() => _released = true;

        public void CaptureActivation(MonitoredLayer layer, Tensor output) => _inner.CaptureActivation(layer, output);

        public void CaptureGradients(IReadOnlyList<MonitoredLayer> layers) => _inner.CaptureGradients(layers);

        public void CaptureLoss(Tensor loss) => _inner.CaptureLoss(loss);

        public void DiscardActivations() => _inner.DiscardActivations();

        public PendingCapture Collect(long step, int layerCount)
        {
            var done = _inner.Collect(step, layerCount).Wait();
            return new PendingCapture(step, () => _released, () => done);
        }

        public void Dispose() => _inner.Dispose();
    }

    [Fact]
    public void Pending_captures_are_published_in_order_when_complete_or_flushed()
    {
        using var scope = NewDisposeScope();
        DelayedEngine? engine = null;
        var model = nn.Sequential(("fc", nn.Linear(3, 4)));
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { EngineFactory = o => engine = new DelayedEngine(o) });
        var seen = new List<StepRecord>();
        using var _ = monitor.Subscribe(new Observer(seen.Add));
        var inputs = Enumerable.Range(0, 3).Select(i => torch.full(2, 3, i + 1.0f)).ToList();

        model.call(inputs[0]);
        Assert.Null(monitor.Step());          // step 0 pending
        model.call(inputs[1]);
        Assert.Null(monitor.Step());          // step 1 pending
        Assert.Empty(seen);
        engine!.Release();
        model.call(inputs[2]);
        var returned = monitor.Step();        // steps 0, 1 and 2 complete now: published in order, the last returned
        Assert.Equal([0L, 1, 2], seen.Select(r => r.Step));
        Assert.Same(seen[^1], returned);
        Assert.Same(returned, monitor.LastRecord);
        // Each record holds its own step's statistics: the Linear output's mean moves with the constant input.
        for (int i = 0; i < 3; i++)
        {
            using var expected = model.call(inputs[i]);
            // float32 mean by torch vs the kernel's double accumulation: equal within float32 rounding (a tolerance, not
            // decimal rounding, which flips at a boundary such as -0.777725).
            Assert.Equal(expected.mean().item<float>(), seen[i].Layers[0].Statistics!.Mean, 1e-6);
        }
    }

    [Fact]
    public void Flush_and_dispose_finish_what_is_pending()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("fc", nn.Linear(3, 4)));
        var seen = new List<StepRecord>();
        var monitor = ActivationMonitor.Attach(model, new MonitorOptions { EngineFactory = o => new DelayedEngine(o) });
        monitor.Subscribe(new Observer(seen.Add));
        model.call(torch.ones(2, 3));
        Assert.Null(monitor.Step());
        Assert.Equal(0, monitor.Flush()!.Step);
        model.call(torch.ones(2, 3));
        Assert.Null(monitor.Step());
        monitor.Dispose();
        Assert.Equal([0L, 1], seen.Select(r => r.Step));
    }

    private sealed class Observer(Action<StepRecord> onNext) : IObserver<StepRecord>
    {
        public void OnCompleted() { }

        public void OnError(Exception error) { }

        public void OnNext(StepRecord value) => onNext(value);
    }
}
