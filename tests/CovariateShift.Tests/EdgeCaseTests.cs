using CovariateShift.Records;
using CovariateShift.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>Cases found in review: offsets, overflow, dead units, odd layers, models moved after attach.</summary>
[Collection(TorchGlobalState.Name)]
public sealed class EdgeCaseTests
{
    public static TheoryData<StatisticsEngineKind> Engines => new() { StatisticsEngineKind.Auto, StatisticsEngineKind.Device };

    private static LayerStatistics Once(nn.Module<Tensor, Tensor> model, Tensor x, MonitorOptions options, string layer)
    {
        using var monitor = ActivationMonitor.Attach(model, options);
        using (var scope = NewDisposeScope()) model.call(x);
        return monitor.Step()!.Layers.Single(l => l.Layer == layer).Statistics!;
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void Channels_with_large_offsets_and_tiny_spread_keep_their_variance(StatisticsEngineKind engine)
    {
        using var scope = NewDisposeScope();
        // Channel c = 1000 c + 0.01 N(0, 1): the channel variance is 1e-4, tiny next to the offsets.
        var x = arange(6).reshape(1, 6, 1, 1).to_type(ScalarType.Float32) * 1000 + randn([8, 6, 5, 5], generator: new Generator(1)) * 0.01f;
        var s = Once(nn.Sequential(("id", nn.Identity())), x, new MonitorOptions { Engine = engine }, "id");
        var v = TorchData.ToDoubles(x);
        var (sq, variance) = Reference.ChannelStatistics(v, 8, 6, 25);
        Assert.InRange(s.ChannelVariance!.Value / variance, 0.999, 1.001);
        Assert.InRange(s.ChannelSquaredMean!.Value / sq, 1 - 1e-6, 1 + 1e-6);
        Assert.InRange(s.Std / Reference.Std(v), 1 - 1e-6, 1 + 1e-6);
        Assert.InRange(s.Mean / Reference.Mean(v), 1 - 1e-6, 1 + 1e-6);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void Huge_finite_activations_give_a_finite_standard_deviation(StatisticsEngineKind engine)
    {
        using var scope = NewDisposeScope();
        var x = randn([16, 64], generator: new Generator(2)) * 1e20f;    // squares overflow float, not double
        var s = Once(nn.Sequential(("id", nn.Identity())), x, new MonitorOptions { Engine = engine }, "id");
        var v = TorchData.ToDoubles(x);
        Assert.InRange(s.Std / Reference.Std(v), 1 - 1e-5, 1 + 1e-5);
        Assert.Equal(0, s.NanCount + s.InfCount);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void Dead_units_are_the_features_or_channels_near_zero_for_the_whole_batch(StatisticsEngineKind engine)
    {
        using var scope = NewDisposeScope();
        var x = randn([32, 20], generator: new Generator(3));
        x[.., 3] = zeros(32);
        x[.., 11] = full(32, 0.04f);          // within 0.05 of zero everywhere: dead
        x[..31, 15] = zeros(31);              // one sample alive: not dead
        var s = Once(nn.Sequential(("id", nn.Identity())), x, new MonitorOptions { Engine = engine }, "id");
        Assert.Equal(2.0 / 20, s.DeadUnitFraction, 12);

        var conv = randn([4, 10, 3, 3], generator: new Generator(4));
        conv[.., ..6] = zeros(4, 6, 3, 3);     // 6 of 10 channels silent
        var c = Once(nn.Sequential(("id", nn.Identity())), conv, new MonitorOptions { Engine = engine }, "id");
        Assert.Equal(0.6, c.DeadUnitFraction, 12);
    }

    [Fact]
    public void A_healthy_batchnorm_relu_layer_is_not_flagged_but_a_dead_one_is()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(5);
        var dead = nn.Linear(16, 16);
        using (no_grad())
        {
            dead.weight!.zero_();
            dead.bias!.fill_(-1);
        }
        var model = nn.Sequential(("fc", nn.Linear(8, 16)), ("bn", nn.BatchNorm1d(16)), ("act", nn.ReLU()), ("fc2", dead), ("act2", nn.ReLU()));
        using var monitor = ActivationMonitor.Attach(model);
        model.call(randn(64, 8));
        var r = monitor.Step()!;
        Assert.InRange(r.Layers.Single(l => l.Layer == "act").Statistics!.NearZeroFraction, 0.45, 0.65);   // ~half the elements
        Assert.DoesNotContain(r.Anomalies, a => a.Layer == "act" && a.Kind == AnomalyKind.DeadUnits);
        var flagged = Assert.Single(r.Anomalies, a => a.Kind == AnomalyKind.DeadUnits);
        Assert.Equal("act2", flagged.Layer);
        Assert.Equal(1.0, flagged.Value);
    }

    [Fact]
    public void Device_and_CPU_engines_agree_on_sampled_percentiles_and_histograms()
    {
        using var scope = NewDisposeScope();
        var x = randn([64, 512], generator: new Generator(6));           // 32,768 values, sample 2,048
        var model = nn.Sequential(("id", nn.Identity()));
        var cpu = Once(model, x, new MonitorOptions { Engine = StatisticsEngineKind.Auto }, "id");
        var device = Once(model, x, new MonitorOptions { Engine = StatisticsEngineKind.Device }, "id");
        Assert.Equal(cpu.P15, device.P15);
        Assert.Equal(cpu.P50, device.P50);
        Assert.Equal(cpu.P85, device.P85);
        Assert.Equal(cpu.Histogram!.Counts.ToArray(), device.Histogram!.Counts.ToArray());
        Assert.Equal(cpu.Mean, device.Mean, 5);
        Assert.Equal(cpu.Std, device.Std, 5);
    }

    [Fact]
    public void An_empty_output_is_recorded_as_empty_not_as_a_layer_that_did_not_run()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("fc", nn.Linear(3, 2)), ("act", nn.ReLU()));
        using var monitor = ActivationMonitor.Attach(model);
        model.call(zeros(0, 3));
        var r = monitor.Step()!;
        Assert.Equal(0, r.Layers[0].Statistics!.Count);
        Assert.True(double.IsNaN(r.Layers[0].Statistics!.Mean));
        Assert.DoesNotContain(r.Anomalies, a => a.Kind == AnomalyKind.LayerNotCalled);
    }

    [Fact]
    public void A_frozen_eval_mode_layer_inside_a_training_model_is_recorded()
    {
        using var scope = NewDisposeScope();
        var bn = nn.BatchNorm1d(4);
        var model = nn.Sequential(("fc", nn.Linear(3, 4)), ("bn", bn));
        using var monitor = ActivationMonitor.Attach(model);
        model.train();
        bn.eval();
        model.call(randn(8, 3));
        var r = monitor.Step()!;
        Assert.NotNull(r.Layers.Single(l => l.Layer == "bn").Statistics);
        Assert.DoesNotContain(r.Anomalies, a => a.Kind == AnomalyKind.LayerNotCalled);
    }

    [Fact]
    public void Moving_the_model_after_attaching_keeps_gradient_recording_working()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(7);
        var fc = nn.Linear(5, 3);
        var model = nn.Sequential(("fc", fc));
        using var monitor = ActivationMonitor.Attach(model);
        model.to(ScalarType.Float64).to(ScalarType.Float32);          // replaces every Parameter object
        var opt = optim.SGD(model.parameters(), 0.5);
        var loss = model.call(randn(4, 5)).square().sum();
        loss.backward();
        monitor.RecordGradients();
        var grad = fc.parameters().SelectMany(p => TorchData.ToDoubles(p.grad!)).ToArray();
        opt.step();
        var g = monitor.Step(loss)!.Layers[0].Gradients!;
        double norm = Math.Sqrt(grad.Sum(v => v * v));
        Assert.Equal(norm, g.GradNorm, 5);
        Assert.Equal(0.5 * norm, g.UpdateNorm!.Value, 5);
    }

    [Fact]
    public void An_all_zero_first_output_does_not_pin_the_histogram_range()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("id", nn.Identity()));
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { HistogramBins = 10 });
        model.call(zeros(50));
        monitor.Step();
        model.call(linspace(-1, 1, 101));
        var h = monitor.Step()!.Layers[0].Statistics!.Histogram!;
        Assert.Equal(-2.0, h.Low, 6);
        Assert.Equal(2.0, h.High, 6);
        Assert.Equal(0, h.Underflow + h.Overflow);
    }

    [Fact]
    public void Each_recorded_step_sees_its_own_batch()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("id", nn.Identity()));
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { RecordEvery = 3 });
        var means = new List<(long, double)>();
        for (int i = 0; i < 10; i++)
        {
            model.call(full(7, (float)i));
            if (monitor.Step() is { } r) means.Add((r.Step, r.Layers[0].Statistics!.Mean));
        }
        Assert.Equal([(0L, 0.0), (3L, 3.0), (6L, 6.0), (9L, 9.0)], means);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void Conv_outputs_with_long_blocks_non_finite_and_huge_values_match_a_double_computation(StatisticsEngineKind engine)
    {
        using var scope = NewDisposeScope();
        // Blocks of 50 x 50 = 2,500 values: more than one 2,048-value chunk, and a tail past the last whole vector.
        var x = randn([3, 4, 50, 50], generator: new Generator(7));
        x[.., 1] = zeros(3, 50, 50);                        // channel 1 silent in every sample: one dead unit of 4
        x[0, 0, 10, 10] = tensor(float.NaN);
        x[2, 3, 49, 49] = tensor(float.PositiveInfinity);   // in a block's tail
        x[1, 2, 0, 5] = tensor(float.NegativeInfinity);
        x[0, 2] = x[0, 2] * 1e20f;                           // squares overflow float: that block takes the masked path
        var s = Once(nn.Sequential(("id", nn.Identity())), x, new MonitorOptions { Engine = engine }, "id");

        var all = TorchData.ToDoubles(x);
        var finite = Reference.Finite(all);
        Assert.Equal(all.Length, s.Count);
        Assert.Equal(1, s.NanCount);
        Assert.Equal(2, s.InfCount);
        Assert.InRange(s.Mean / Reference.Mean(finite), 1 - 1e-6, 1 + 1e-6);
        Assert.InRange(s.Std / Reference.Std(finite), 1 - 1e-6, 1 + 1e-6);
        Assert.Equal(finite.Min(), s.Min);
        Assert.Equal(finite.Max(), s.Max);
        Assert.Equal(all.Count(v => Math.Abs(v) <= 0.05) / (double)all.Length, s.NearZeroFraction, 12);
        Assert.Equal(0.25, s.DeadUnitFraction, 12);

        // Brock et al. over the finite values of each channel: mean of the squared channel means and of the variances.
        double sq = 0, variance = 0;
        for (int c = 0; c < 4; c++)
        {
            var values = Enumerable.Range(0, 3).SelectMany(n => all.Skip((n * 4 + c) * 2500).Take(2500)).Where(double.IsFinite).ToArray();
            double mean = values.Average();
            sq += mean * mean / 4;
            variance += values.Select(v => (v - mean) * (v - mean)).Average() / 4;
        }
        Assert.InRange(s.ChannelSquaredMean!.Value / sq, 1 - 1e-6, 1 + 1e-6);
        Assert.InRange(s.ChannelVariance!.Value / variance, 1 - 1e-6, 1 + 1e-6);
    }
}
