using CovariateShift.Nn.Models;
using CovariateShift.Records;
using CovariateShift.Training.Benchmarks;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>The batched device engine, run on CPU tensors (Engine = Device): operation counts, agreement with the CPU kernel, deferred records.</summary>
public sealed class DeviceEngineTests(ITestOutputHelper output)
{
    private sealed record StepCost(int Layers, long Launches, long HookLaunches, long Handles);

    /// <summary>Operations of one steady-state recorded training step (forward, backward, RecordGradients, step, Step).</summary>
    private static StepCost MeasureStep(nn.Module<Tensor, Tensor> model, Tensor x, Tensor y)
    {
        var opt = optim.SGD(model.parameters(), 0.01, momentum: 0.9);
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Engine = StatisticsEngineKind.Device, SampleSize = 256 });
        void Step()
        {
            using var scope = NewDisposeScope();
            opt.zero_grad();
            var loss = nn.functional.cross_entropy(model.call(x), y);
            loss.backward();
            monitor.RecordGradients();
            opt.step();
            Assert.NotNull(monitor.Step(loss));
        }
        Step();   // first recorded step builds the layouts
        Step();
        var ops = monitor.DeviceOps!;
        long launches = ops.Launches, hooks = ops.HookLaunches, handles = ops.Handles;
        Step();
        return new StepCost(monitor.Layers.Count, ops.Launches - launches - (ops.HookLaunches - hooks), ops.HookLaunches - hooks, ops.Handles - handles);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Operations_per_recorded_step_are_the_same_for_17_and_59_layers()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(1);
        var mlp = ModelZoo.Create(OverheadBenchmark.SpecFor("mlp"));
        var resnet = ModelZoo.Create(OverheadBenchmark.SpecFor("resnet20"));
        var mlpCost = MeasureStep(mlp, randn(16, 1, 28, 28), randint(0, 10, [16]));
        var resnetCost = MeasureStep(resnet, randn(4, 1, 32, 32), randint(0, 10, [4]));

        output.WriteLine($"mlp: {mlpCost}; resnet20: {resnetCost}");
        Assert.Equal(17, mlpCost.Layers);
        Assert.Equal(59, resnetCost.Layers);   // stem 3, 3 stages x 3 blocks x 6, pool, head (identity shortcuts have no layer)
        // The step's reductions, pack and transfer: the same number of operations whatever the number of layers, and fewer
        // than the engine that copied each output in its hook (31 fixed + one per layer: 48 and 90).
        Assert.Equal(mlpCost.Launches, resnetCost.Launches);
        Assert.InRange(mlpCost.Launches, 1, 31 + 17 - 1);
        // Inside the hooks: a handle per layer, no device work at all (no in-place module in either model).
        Assert.Equal(0, mlpCost.HookLaunches);
        Assert.Equal(0, resnetCost.HookLaunches);
    }

    [Fact]
    public void An_in_place_ReLU_after_a_norm_does_not_change_what_is_recorded_for_the_norm()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(4);
        // As TorchSharp's VGG example: conv, batch norm, ReLU(inplace: true), in a Sequential (call()).
        var bn = nn.BatchNorm2d(4);
        var model = nn.Sequential(("conv", nn.Conv2d(2, 4, 3, padding: 1)), ("bn", bn), ("relu", nn.ReLU(inplace: true)),
            ("flat", nn.Flatten()), ("fc", nn.Linear(4 * 6 * 6, 3)));
        var x = randn(8, 2, 6, 6);
        var y = randint(0, 3, [8]);
        // Both monitors see the same outputs: the CPU kernel reads them in the hook, before the ReLU overwrites the norm's.
        using var cpu = ActivationMonitor.Attach(model, new MonitorOptions { SampleSize = 64 });
        using var device = ActivationMonitor.Attach(model, new MonitorOptions { SampleSize = 64, Engine = StatisticsEngineKind.Device });
        var opt = optim.SGD(model.parameters(), 0.1);
        for (int step = 0; step < 3; step++)
        {
            using var s = NewDisposeScope();
            long hooksBefore = device.DeviceOps!.HookLaunches;
            opt.zero_grad();
            var loss = nn.functional.cross_entropy(model.call(x), y);
            loss.backward();
            opt.step();
            var a = cpu.Step(loss)!;
            var b = device.Step(loss)!;
            var (p, q) = (a.Layers[1].Statistics!, b.Layers[1].Statistics!);
            Assert.Equal("bn", a.Layers[1].Layer);
            Assert.True(p.Min < 0, $"the norm's own output has negative values (min {p.Min})");
            Assert.Equal(p.Min, q.Min);
            Assert.Equal(p.Max, q.Max);
            Assert.Equal(p.NearZeroFraction, q.NearZeroFraction);
            AssertClose(p.Mean, q.Mean, 1e-6, "bn mean", Math.Abs(p.Mean) + p.Std);
            AssertClose(p.Std, q.Std, 1e-5, "bn std");
            Assert.Equal(p.P15, q.P15);
            // The ReLU's output is the overwritten tensor: non-negative in both.
            Assert.Equal(0, b.Layers[2].Statistics!.Min);
            // One copy per recorded step, for the norm's output only (the layer the ReLU overwrites).
            Assert.Equal(1, device.DeviceOps.HookLaunches - hooksBefore);
        }
    }

    /// <summary>A model with every kind of output the engines distinguish: 2-D features, 4-D channels, bounded layers,
    /// a large offset with a small spread, and channels silent for the whole batch.</summary>
    private static nn.Module<Tensor, Tensor> MixedModel()
    {
        var conv = nn.Conv2d(3, 6, 3, padding: 1);
        return nn.Sequential(
            ("conv", conv), ("bn", nn.BatchNorm2d(6)), ("relu", nn.ReLU()), ("pool", nn.AdaptiveAvgPool2d(2)),
            ("flat", nn.Flatten()), ("fc", nn.Linear(24, 40)), ("tanh", nn.Tanh()), ("fc2", nn.Linear(40, 30)), ("sig", nn.Sigmoid()),
            ("head", nn.Linear(30, 5)));
    }

    private static void AssertClose(double expected, double actual, double relative, string what, double? scaleOf = null)
    {
        if (double.IsNaN(expected))
        {
            Assert.True(double.IsNaN(actual), $"{what}: expected NaN, got {actual}");
            return;
        }
        double scale = scaleOf ?? Math.Max(Math.Abs(expected), 1e-30);
        Assert.True(Math.Abs(actual - expected) <= relative * scale, $"{what}: CPU kernel {expected:R}, device engine {actual:R} (relative tolerance {relative})");
    }

    [Fact]
    public void Device_engine_statistics_equal_the_cpu_kernel_on_the_same_activations()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(5);
        var model = MixedModel();
        var opt = optim.SGD(model.parameters(), 0.1);
        var records = new List<StepRecord>[2];
        // Both monitors hook the same model, so both engines see exactly the same activations and gradients.
        using var cpu = ActivationMonitor.Attach(model, new MonitorOptions { SampleSize = 128 });
        using var device = ActivationMonitor.Attach(model, new MonitorOptions { SampleSize = 128, Engine = StatisticsEngineKind.Device });
        var x = randn(24, 3, 9, 9) * 3 + 1000;    // a large offset with a small spread: moments need their pivots
        x[.., 2] = zeros(24, 9, 9);              // an input channel silent everywhere
        var y = randint(0, 5, [24]);
        for (int step = 0; step < 3; step++)
        {
            using var s = NewDisposeScope();
            opt.zero_grad();
            var loss = nn.functional.cross_entropy(model.call(x), y);
            loss.backward();
            cpu.RecordGradients();
            device.RecordGradients();
            opt.step();
            var a = cpu.Step(loss)!;
            var b = device.Step(loss)!;
            Assert.Equal(a.Step, b.Step);
            Assert.Equal(a.Loss!.Value, b.Loss!.Value, 6);
            for (int i = 0; i < a.Layers.Count; i++)
            {
                var (p, q) = (a.Layers[i].Statistics!, b.Layers[i].Statistics!);
                string layer = a.Layers[i].Layer;
                Assert.Equal(p.Count, q.Count);
                Assert.Equal(p.NanCount, q.NanCount);
                Assert.Equal(p.InfCount, q.InfCount);
                Assert.Equal(p.Min, q.Min);
                Assert.Equal(p.Max, q.Max);
                Assert.Equal(p.NearZeroFraction, q.NearZeroFraction);
                Assert.Equal(p.DeadUnitFraction, q.DeadUnitFraction);
                Assert.Equal(p.SaturatedFraction, q.SaturatedFraction);
                AssertClose(p.Mean, q.Mean, 1e-6, $"{layer} mean", Math.Abs(p.Mean) + p.Std);   // relative to |mean| + std
                AssertClose(p.Std, q.Std, 1e-5, $"{layer} std");
                if (p.ChannelVariance is { } cv)
                {
                    AssertClose(cv, q.ChannelVariance!.Value, 1e-5, $"{layer} channel variance");
                    // Relative to the channels' mean square (squared mean + variance): a batch-normalized channel's mean is rounding noise.
                    AssertClose(p.ChannelSquaredMean!.Value, q.ChannelSquaredMean!.Value, 1e-6, $"{layer} channel squared mean", p.ChannelSquaredMean.Value + cv);
                }
                else
                {
                    Assert.Null(q.ChannelVariance);
                }
                // The same sample positions: identical percentiles and histograms.
                Assert.Equal(p.P15, q.P15);
                Assert.Equal(p.P50, q.P50);
                Assert.Equal(p.P85, q.P85);
                var (ph, qh) = (p.Histogram!, q.Histogram!);
                Assert.True(ph.Counts.SequenceEqual(qh.Counts),
                    $"{layer} step {a.Step} histogram [{ph.Low}, {ph.High}] vs [{qh.Low}, {qh.High}]: {string.Join(",", ph.Counts)} vs {string.Join(",", qh.Counts)}");

                var (g, h) = (a.Layers[i].Gradients, b.Layers[i].Gradients);
                Assert.Equal(g is null, h is null);
                if (g is null) continue;
                AssertClose(g.GradNorm, h!.GradNorm, 1e-5, $"{layer} grad norm");
                AssertClose(g.WeightNorm, h.WeightNorm, 1e-5, $"{layer} weight norm");
                AssertClose(g.UpdateNorm!.Value, h.UpdateNorm!.Value, 1e-4, $"{layer} update norm");
                Assert.Equal(g.Parameters, h.Parameters);
            }
        }
        Assert.Equal(3, device.HostTransfers);
        Assert.Equal(0, cpu.HostTransfers);
    }

    [Fact]
    public void Deferred_records_are_finished_at_the_next_step_in_order_and_flushed()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(2);
        var fc = nn.Linear(6, 8);
        var model = nn.Sequential(("fc", fc), ("act", nn.ReLU()));
        var seen = new List<long>();
        var path = Path.Combine(Path.GetTempPath(), $"covshift-deferred-{Environment.ProcessId}.jsonl");
        try
        {
            using (var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Engine = StatisticsEngineKind.Device, RecordEvery = 2, DeferRecords = true, JsonLinesPath = path }))
            {
                monitor.Subscribe(new Observer(r => seen.Add(r.Step)));
                var inputs = Enumerable.Range(0, 5).Select(i => randn(4, 6) + i).ToArray();
                var returned = new List<long?>();
                foreach (var x in inputs)
                {
                    using var s = NewDisposeScope();
                    model.call(x);
                    returned.Add(monitor.Step()?.Step);
                }
                // Steps 0, 2, 4 are recorded; each record is finished by the following Step() call.
                Assert.Equal([null, 0L, null, 2L, null], returned);
                Assert.Equal(1, monitor.PendingRecords);
                Assert.Equal(2, monitor.LastRecord!.Step);
                var flushed = monitor.Flush()!;
                Assert.Equal(4, flushed.Step);
                Assert.Equal(0, monitor.PendingRecords);

                // The deferred record holds the statistics of its own step, not of a later one.
                var mean = fc.call(inputs[4]);
                Assert.Equal(mean.mean().item<float>(), flushed.Layers[0].Statistics!.Mean, 1e-5);

                using var t = NewDisposeScope();
                model.call(inputs[0]);
                monitor.Step();   // step 5: not recorded
                model.call(inputs[0]);
                Assert.Null(monitor.Step());   // step 6: recorded, pending until Dispose
            }
            Assert.Equal([0L, 2L, 4L, 6L], seen);
            Assert.Equal(4 * 2, File.ReadAllLines(path).Length);   // Dispose finished step 6 into the sink too
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>A model whose own forward code overwrites a layer's output in place (no module: <c>x.relu_()</c>).</summary>
    private sealed class InPlaceInForward : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> _lin = nn.Linear(6, 8);
        private readonly nn.Module<Tensor, Tensor> _head = nn.Linear(8, 3);

        public InPlaceInForward() : base(nameof(InPlaceInForward)) => RegisterComponents();

        public override Tensor forward(Tensor input) => _head.call(_lin.call(input).relu_());
    }

    [Fact]
    public void An_in_place_operation_in_the_models_own_forward_is_seen_by_the_device_engine_as_documented()
    {
        // The documented limit (README, GPU section): the device engine keeps a handle to each output until Step(), and an
        // in-place tensor operation in the model's own forward code (not a module, so no pre-hook sees it) changes what
        // that handle holds. The CPU kernel reads the output inside the hook, before the operation.
        using var scope = NewDisposeScope();
        torch.manual_seed(5);
        var model = new InPlaceInForward();
        var x = randn(32, 6);
        using var cpu = ActivationMonitor.Attach(model, new MonitorOptions { SampleSize = 64 });
        using var device = ActivationMonitor.Attach(model, new MonitorOptions { SampleSize = 64, Engine = StatisticsEngineKind.Device });
        using var expected = model.named_children().Single(c => c.name == "_lin").module is nn.Module<Tensor, Tensor> lin ? lin.forward(x) : throw new InvalidOperationException();
        model.call(x);
        var a = cpu.Step()!.Layers.Single(l => l.Layer == "_lin").Statistics!;
        var b = device.Step()!.Layers.Single(l => l.Layer == "_lin").Statistics!;
        double min = expected.min().item<float>();
        Assert.True(min < 0, $"the linear layer's own output has negative values (min {min})");
        Assert.Equal(min, a.Min, 6);                                   // CPU kernel: the layer's own output
        Assert.Equal(0, b.Min);                                        // device engine: the values after relu_()
        Assert.Equal(expected.relu().mean().item<float>(), b.Mean, 5);
    }

    private sealed class Observer(Action<StepRecord> next) : IObserver<StepRecord>
    {
        public void OnCompleted() { }
        public void OnError(Exception error) { }
        public void OnNext(StepRecord value) => next(value);
    }
}
