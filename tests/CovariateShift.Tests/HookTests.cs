using System.Text.RegularExpressions;
using CovariateShift.Records;
using CovariateShift.Tests.Support;
using Serilog.Events;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>A custom module with registered children, one of them a nested Sequential.</summary>
internal sealed class Block : nn.Module<Tensor, Tensor>
{
    // Registered submodules: the field name is the module name (state_dict prefix), so no underscore.
#pragma warning disable IDE1006
    private readonly nn.Module<Tensor, Tensor> fc;
    private readonly nn.Module<Tensor, Tensor> inner;
#pragma warning restore IDE1006
    private readonly bool _forwardDirectly;

    public Block(bool forwardDirectly = false) : base(nameof(Block))
    {
        fc = nn.Linear(6, 5);
        inner = nn.Sequential(("norm", nn.LayerNorm(5)), ("act", nn.Tanh()));
        _forwardDirectly = forwardDirectly;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) =>
        _forwardDirectly ? inner.call(fc.forward(x)) : inner.call(fc.call(x));   // forward() bypasses hooks
}

public sealed class HookTests
{
    private static nn.Module<Tensor, Tensor> Nested() =>
        nn.Sequential(("stem", nn.Linear(4, 6)), ("block", new Block()), ("head", nn.Linear(5, 2)));

    [Fact]
    public void Hooks_cover_Sequential_custom_and_nested_modules_with_dotted_names()
    {
        using var scope = NewDisposeScope();
        var model = Nested();
        using var monitor = ActivationMonitor.Attach(model);
        Assert.Equal(["stem", "block.fc", "block.inner.norm", "block.inner.act", "head"], monitor.Layers);
        model.call(randn(8, 4));
        var record = monitor.Step()!;
        Assert.All(record.Layers, l => Assert.NotNull(l.Statistics));
        Assert.Equal(["Linear", "Linear", "LayerNorm", "Tanh", "Linear"], record.Layers.Select(l => l.LayerType));
        Assert.Equal(8 * 5, record.Layers[1].Statistics!.Count);
        Assert.DoesNotContain(record.Anomalies, a => a.Kind == AnomalyKind.LayerNotCalled);
    }

    [Fact]
    public void Filters_select_layers_by_type_and_name()
    {
        using var scope = NewDisposeScope();
        var model = Nested();
        using (var byType = ActivationMonitor.Attach(model, new MonitorOptions { LayerTypes = ["linear"] }))
            Assert.Equal(["stem", "block.fc", "head"], byType.Layers);
        using (var byName = ActivationMonitor.Attach(model, new MonitorOptions { LayerNamePattern = new Regex(@"^block\.") }))
            Assert.Equal(["block.fc", "block.inner.norm", "block.inner.act"], byName.Layers);
        var e = Assert.Throws<ArgumentException>(() => ActivationMonitor.Attach(model, new MonitorOptions { LayerTypes = ["Conv2d"] }));
        Assert.Contains("Conv2d", e.Message);
        Assert.Contains("block.fc (Linear)", e.Message);
    }

    [Fact]
    public void A_layer_called_with_forward_is_reported_once_as_a_warning()
    {
        using var scope = NewDisposeScope();
        var (logger, sink) = CollectingLogSink.Create(LogEventLevel.Warning);
        var model = nn.Sequential(("stem", nn.Linear(4, 6)), ("block", new Block(forwardDirectly: true)));
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Logger = logger });
        var records = new List<StepRecord>();
        for (int i = 0; i < 3; i++)
        {
            using var s = NewDisposeScope();
            model.call(randn(3, 4));
            records.Add(monitor.Step()!);
        }
        Assert.Null(records[0].Layers.Single(l => l.Layer == "block.fc").Statistics);
        var notCalled = records.SelectMany(r => r.Anomalies).Where(a => a.Kind == AnomalyKind.LayerNotCalled).ToList();
        Assert.Single(notCalled);
        Assert.Equal("block.fc", notCalled[0].Layer);
        Assert.Contains("forward()", notCalled[0].Hint);
        var warnings = sink.Events.Where(e => CollectingLogSink.Text(e, "Kind") == nameof(AnomalyKind.LayerNotCalled)).ToList();
        Assert.Single(warnings);
        Assert.Equal("block.fc", CollectingLogSink.Text(warnings[0], "Layer"));
    }

    [Fact]
    public void Records_are_taken_every_N_steps_and_hooks_do_no_work_in_between()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("fc", nn.Linear(3, 3)));
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { RecordEvery = 4 });
        var recorded = new List<long>();
        for (int i = 0; i < 10; i++)
        {
            using var s = NewDisposeScope();
            model.call(randn(2, 3));
            if (monitor.Step() is { } r) recorded.Add(r.Step);
        }
        Assert.Equal([0L, 4L, 8L], recorded);
        Assert.Equal(10, monitor.CurrentStep);
    }

    [Fact]
    public void Evaluation_passes_are_not_recorded()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("fc", nn.Linear(3, 3)));
        using var monitor = ActivationMonitor.Attach(model);
        model.eval();
        model.call(randn(2, 3));
        Assert.Null(monitor.Step());                  // nothing ran in training mode
        model.train();
        model.call(ones(5, 3));
        model.eval();
        model.call(randn(100, 3) * 1000);            // an eval pass inside a training step
        var r = monitor.Step()!;
        Assert.Equal(15, r.Layers[0].Statistics!.Count);
        Assert.True(r.Layers[0].Statistics!.Max < 100);
    }

    [Fact]
    public void Disposing_the_monitor_removes_every_hook()
    {
        using var scope = NewDisposeScope();
        var model = Nested();
        var monitor = ActivationMonitor.Attach(model);
        var seen = new List<StepRecord>();
        using var subscription = monitor.Subscribe(new Observer(seen.Add));
        model.call(randn(2, 4));
        monitor.Step();
        Assert.Single(seen);
        monitor.Dispose();
        model.call(randn(2, 4));   // hooks gone: nothing is captured, nothing throws
        Assert.Throws<ObjectDisposedException>(() => monitor.Step());
        Assert.Single(seen);
        // A fresh monitor on the same model sees a clean model: no stale hooks fire into the old one.
        using var again = ActivationMonitor.Attach(model);
        model.call(randn(2, 4));
        Assert.Equal(5, again.Step()!.Layers.Count(l => l.Statistics is not null));
        Assert.Single(seen);
    }

    [Fact]
    public void The_module_form_forwards_unchanged_and_advances_on_training_forwards()
    {
        using var scope = NewDisposeScope();
        var inner = nn.Sequential(("fc", nn.Linear(3, 2)), ("act", nn.ReLU()));
        using var wrapped = new MonitoredModule(inner);
        var seen = new List<StepRecord>();
        using var sub = wrapped.Monitor.Subscribe(new Observer(seen.Add));
        var x = randn(4, 3);
        Tensor direct;
        using (no_grad()) direct = inner.forward(x);
        var viaWrapper = wrapped.call(x);
        Assert.True(direct.allclose(viaWrapper));
        Assert.Equal(["fc", "act"], wrapped.Monitor.Layers);
        wrapped.call(x);          // starts step 1: step 0 is finished and recorded
        wrapped.eval();
        wrapped.call(x);          // eval: no advance
        wrapped.train();
        Assert.Equal([0L], seen.Select(r => r.Step));
        Assert.Equal(1, wrapped.FinishStep()!.Step);
        Assert.Equal([0L, 1L], seen.Select(r => r.Step));
    }

    private sealed class Observer(Action<StepRecord> onNext) : IObserver<StepRecord>
    {
        public void OnCompleted() { }
        public void OnError(Exception error) { }
        public void OnNext(StepRecord value) => onNext(value);
    }
}
