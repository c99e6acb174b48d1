using CovariateShift.Tests.Support;
using Serilog.Events;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>Faults found by probing with bad inputs: a forward pass that throws, gradients recorded in eval mode.</summary>
public sealed class ProbeTests
{
    /// <summary>A layer that throws while <see cref="Armed"/> (a bad batch, an out-of-memory...).</summary>
    private sealed class Bomb() : nn.Module<Tensor, Tensor>(nameof(Bomb))
    {
        public bool Armed { get; set; }

        public override Tensor forward(Tensor input) => Armed ? throw new InvalidOperationException("bad batch") : input.alias();
    }

    private static (nn.Module<Tensor, Tensor> Model, Bomb Bomb) Model()
    {
        var bomb = new Bomb();
        return (nn.Sequential(("fc1", nn.Linear(4, 6)), ("bomb", bomb), ("fc2", nn.Linear(6, 2))), bomb);
    }

    [Fact]
    public void What_a_forward_that_threw_captured_is_discarded_when_the_next_forward_begins()
    {
        using var scope = NewDisposeScope();
        var (model, bomb) = Model();
        using var monitor = ActivationMonitor.Attach(model);
        bomb.Armed = true;
        Assert.Throws<InvalidOperationException>(() => model.call(full(3, 4, 100f)));   // fc1 ran on the bad batch, then the forward threw
        bomb.Armed = false;
        var good = randn(3, 4);
        model.call(good);
        var r = monitor.Step()!;
        using var expected = ((nn.Module<Tensor, Tensor>)model.named_children().First().module).call(good);
        Assert.Equal(expected.mean().item<float>(), r.Layers[0].Statistics!.Mean, 1e-6);
        Assert.Equal(expected.max().item<float>(), r.Layers[0].Statistics!.Max, 5);
        Assert.NotNull(r.Layers[2].Statistics);
    }

    [Fact]
    public void What_a_forward_that_threw_captured_is_not_recorded_when_the_step_ends()
    {
        using var scope = NewDisposeScope();
        var (model, bomb) = Model();
        var (logger, log) = CollectingLogSink.Create(LogEventLevel.Warning);
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Logger = logger });
        bomb.Armed = true;
        Assert.Throws<InvalidOperationException>(() => model.call(randn(3, 4)));
        Assert.Null(monitor.Step());   // nothing of the aborted batch is reported
        Assert.Single(log.Events, e => e.MessageTemplate.Text.StartsWith("No monitored layer ran", StringComparison.Ordinal));
        bomb.Armed = false;
        var x = randn(3, 4);
        model.call(x);
        var r = monitor.Step()!;       // the next step is recorded normally
        Assert.Equal(1, r.Step);
        Assert.All(r.Layers, l => Assert.NotNull(l.Statistics));
    }

    [Fact]
    public void Gradients_recorded_on_an_eval_mode_model_warn_as_without_gradients()
    {
        using var scope = NewDisposeScope();
        var (model, _) = Model();
        var (logger, log) = CollectingLogSink.Create(LogEventLevel.Warning);
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Logger = logger });
        model.eval();
        var loss = model.call(randn(3, 4)).square().mean();
        loss.backward();
        monitor.RecordGradients();
        var r = monitor.Step(loss);
        var warning = Assert.Single(log.Events);
        Assert.StartsWith("No monitored layer ran in training mode", warning.MessageTemplate.Text, StringComparison.Ordinal);
        Assert.All(r!.Layers, l => Assert.Null(l.Statistics));   // the gradients are still reported
        Assert.NotNull(r.Layers[0].Gradients);
    }
}
