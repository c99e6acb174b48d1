using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using CovariateShift.Tests.Support;
using CovariateShift.Training.Data;
using CovariateShift.Training.FineTuning;
using CovariateShift.Training.Shifts;
using CovariateShift.Training.Training;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace CovariateShift.Training.Tests;

/// <summary>Fine-tuning pieces on real Fashion-MNIST: bn-modes, freezing, the reference snapshot.</summary>
public sealed class FineTuningTests(ITestOutputHelper output)
{
    private static ImageDataset Source => TorchData.FashionMnist512;

    private static PixelStandardization FashionStandardization
    {
        get
        {
            var (mean, std) = MnistFormat.TrainingPixelStatistics(MnistFormat.FashionMnistDirectory);
            return new PixelStandardization(mean, std);
        }
    }

    /// <summary>784-32(BN)-32(BN)-10 ReLU MLP, trained for a few steps so the running statistics are not the initial ones.</summary>
    private static nn.Module<Tensor, Tensor> TrainedBnMlp()
    {
        torch.manual_seed(7);
        var model = ModelZoo.Create(new ModelSpec
        {
            Architecture = "mlp", InputShape = [1, 28, 28], Depth = 2, Width = 32, Norm = NormKind.Batch, Init = WeightInit.He,
        });
        new Trainer(new TrainerOptions { Steps = 30, BatchSize = 64, LearningRate = 0.05, Seed = 7, RecordEvery = 10 }).Train(model, Source);
        return model;
    }

    private static Dictionary<string, double[]> Parameters(nn.Module model) =>
        model.named_parameters().ToDictionary(p => p.name, p => TorchData.ToDoubles(p.parameter));

    private static Dictionary<string, double[]> Buffers(nn.Module model) =>
        model.named_buffers().ToDictionary(b => b.name, b => TorchData.ToDoubles(b.buffer));

    [Fact]
    [Trait("Category", "Slow")]
    public void Frozen_bn_mode_and_frozen_layers_stay_bit_identical_while_the_rest_trains()
    {
        using var model = TrainedBnMlp();
        using var target = DomainShift.Parse("noise:0.3").Apply(Source, FashionStandardization, seed: 1);
        var frozen = FineTuningSetup.Freeze(model, @"^layers\.0\.linear$");
        Assert.Equal(["layers.0.linear.weight"], frozen);   // followed by batch norm: built without a bias
        var paramsBefore = Parameters(model);
        var buffersBefore = Buffers(model);
        Assert.Contains(buffersBefore.Keys, k => k.EndsWith("running_mean", StringComparison.Ordinal));
        using (FineTuningSetup.FreezeBatchNorm(model))
        {
            new Trainer(new TrainerOptions { Steps = 20, BatchSize = 64, LearningRate = 0.05, Seed = 2, RecordEvery = 5, EvaluateEvery = 10 })
                .Train(model, target, Source.Take(200));
        }

        var paramsAfter = Parameters(model);
        foreach (var (name, values) in Buffers(model)) Assert.Equal(buffersBefore[name], values);
        Assert.Equal(paramsBefore["layers.0.linear.weight"], paramsAfter["layers.0.linear.weight"]);
        Assert.NotEqual(paramsBefore["head.weight"], paramsAfter["head.weight"]);
        Assert.NotEqual(paramsBefore["layers.1.linear.weight"], paramsAfter["layers.1.linear.weight"]);
        Assert.NotEqual(paramsBefore["layers.0.norm.weight"], paramsAfter["layers.0.norm.weight"]);   // BN's affine parameters still train
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Recalibrate_recomputes_the_running_statistics_as_the_average_over_target_batches_and_changes_nothing_else()
    {
        using var model = TrainedBnMlp();
        using var target = DomainShift.Parse("invert").Apply(Source, FashionStandardization, seed: 1);
        var paramsBefore = Parameters(model);
        var buffersBefore = Buffers(model);
        int batches = FineTuningSetup.Recalibrate(model, target, batchSize: 128);
        Assert.Equal(4, batches);

        foreach (var (name, values) in Parameters(model)) Assert.Equal(paramsBefore[name], values);
        var after = Buffers(model);
        Assert.NotEqual(buffersBefore["layers.0.norm.running_mean"], after["layers.0.norm.running_mean"]);
        Assert.NotEqual(buffersBefore["layers.1.norm.running_var"], after["layers.1.norm.running_var"]);
        Assert.True(model.training);

        // Independent: the first BN sees the first linear layer's output; its running mean and (unbiased) variance are the
        // averages over the 4 batches of the batch mean and the batch variance.
        var linear = (TorchSharp.Modules.Linear)model.named_modules().Single(m => m.name == "layers.0.linear").module;
        var w = TorchData.ToDoubles(linear.weight!);
        var x = TorchData.ToDoubles(target.Images);
        const int features = 784, units = 32, n = 128;
        var mean = new double[units];
        var variance = new double[units];
        for (int b = 0; b < 4; b++)
        {
            for (int u = 0; u < units; u++)
            {
                var z = new double[n];
                for (int i = 0; i < n; i++)
                {
                    double s = 0;
                    for (int f = 0; f < features; f++) s += w[u * features + f] * x[(b * n + i) * features + f];
                    z[i] = s;
                }

                double m = z.Average();
                mean[u] += m / 4;
                variance[u] += z.Sum(v => (v - m) * (v - m)) / (n - 1) / 4;
            }
        }

        for (int u = 0; u < units; u++)
        {
            Assert.Equal(mean[u], after["layers.0.norm.running_mean"][u], 3);
            Assert.True(Math.Abs(variance[u] - after["layers.0.norm.running_var"][u]) <= 1e-4 * Math.Max(1, variance[u]), $"unit {u}: {variance[u]} vs {after["layers.0.norm.running_var"][u]}");
        }
    }

    private static ReferenceShiftTracker RunWithReference(nn.Module<Tensor, Tensor> model, ImageDataset target)
    {
        var tracker = new ReferenceShiftTracker();
        var capture = FineTuningSetup.ReferenceCapture(FineTuningSetup.SaveState(model), Source, batchSize: 256, seed: 3);
        var options = new TrainerOptions { Steps = 1, BatchSize = 256, LearningRate = 1e-3, Seed = 4, RecordEvery = 1, BeforeFirstStep = capture, MonitorObservers = [tracker] };
        new Trainer(options).Train(model, target);
        return tracker;
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void The_reference_shift_is_at_the_sampling_floor_when_the_target_is_the_source_and_large_when_it_is_inverted()
    {
        using var model = TrainedBnMlp();
        var same = RunWithReference(model, Source).Layers;
        using var model2 = TrainedBnMlp();
        using var inverted = DomainShift.Parse("invert").Apply(Source, FashionStandardization, seed: 1);
        var shifted = RunWithReference(model2, inverted).Layers;
        Assert.Equal(same.Select(l => l.Layer), shifted.Select(l => l.Layer));
        foreach (var (a, b) in same.Zip(shifted))
        {
            output.WriteLine($"{a.Layer,-18} same: step {a.FirstStep} KL {a.First.KlDivergence:F4} JS {a.First.JensenShannon:F4} drift {a.First.MeanDrift:F4} | inverted: KL {b.First.KlDivergence:F4} JS {b.First.JensenShannon:F4}");
            Assert.Equal(0, a.FirstStep);   // the first fine-tuning step, recorded before its update, in the run's numbering
            Assert.True(a.First.KlDivergence < 0.1, $"{a.Layer}: KL {a.First.KlDivergence} nats for the same domain (floor ~0.03)");
            Assert.True(a.First.JensenShannon < 0.03, $"{a.Layer}: JS {a.First.JensenShannon} bits for the same domain");
        }

        Assert.True(shifted[0].First.KlDivergence > 10 * same[0].First.KlDivergence, "the inverted domain moves the first layer far from the reference");
    }

    [Fact]
    public void Reference_capture_leaves_parameters_and_running_statistics_as_they_were()
    {
        torch.manual_seed(1);
        using var model = ModelZoo.Create(new ModelSpec { Architecture = "mlp", InputShape = [1, 28, 28], Depth = 1, Width = 16, Norm = NormKind.Batch });
        var before = Buffers(model);
        var paramsBefore = Parameters(model);
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { RecordEvery = 3 });
        FineTuningSetup.ReferenceCapture(FineTuningSetup.SaveState(model), Source, 64, seed: 0)(monitor, model);
        Assert.True(monitor.HasReference);
        Assert.Equal(0, monitor.CurrentStep);   // no training step is taken: the run's steps are the monitor's
        foreach (var (name, values) in Buffers(model)) Assert.Equal(before[name], values);
        foreach (var (name, values) in Parameters(model)) Assert.Equal(paramsBefore[name], values);
    }

    [Fact]
    public void A_freeze_pattern_matching_nothing_is_an_error_listing_the_layers()
    {
        torch.manual_seed(1);
        using var model = ModelZoo.Create(new ModelSpec { Architecture = "mlp", InputShape = [1, 28, 28], Depth = 2, Width = 8 });
        var e = Assert.Throws<ArgumentException>(() => FineTuningSetup.Freeze(model, "^conv"));
        Assert.Contains("'^conv' matches no layer", e.Message, StringComparison.Ordinal);
        foreach (var layer in new[] { "layers.0.linear", "layers.1.linear", "head" }) Assert.Contains(layer, e.Message, StringComparison.Ordinal);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));
        e = Assert.Throws<ArgumentException>(() => FineTuningSetup.Freeze(model, "(unclosed"));
        Assert.Contains("not a valid regular expression", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Reset_head_reinitializes_only_the_last_linear_layer()
    {
        torch.manual_seed(1);
        using var model = ModelZoo.Create(new ModelSpec { Architecture = "mlp", InputShape = [1, 28, 28], Depth = 1, Width = 8 });
        var before = Parameters(model);
        Assert.Equal("head", FineTuningSetup.ResetHead(model, seed: 5));
        var after = Parameters(model);
        Assert.NotEqual(before["head.weight"], after["head.weight"]);
        Assert.Equal(before["layers.0.linear.weight"], after["layers.0.linear.weight"]);
        torch.manual_seed(5);
        using var fresh = nn.Linear(8, 10);
        Assert.Equal(TorchData.ToDoubles(fresh.weight!), after["head.weight"]);
    }
}
