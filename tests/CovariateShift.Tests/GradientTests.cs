using CovariateShift.Records;
using CovariateShift.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

[Collection(TorchGlobalState.Name)]
public sealed class GradientTests
{
    public static TheoryData<StatisticsEngineKind> Engines => new() { StatisticsEngineKind.Auto, StatisticsEngineKind.Device };

    [Theory]
    [MemberData(nameof(Engines))]
    public void Gradient_norm_ratio_and_SGD_update_size_match_their_definitions(StatisticsEngineKind engine)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(1);
        var fc1 = nn.Linear(10, 8);
        var model = nn.Sequential(("fc1", fc1), ("act", nn.ReLU()), ("fc2", nn.Linear(8, 3)));
        const double lr = 0.1;
        var opt = optim.SGD(model.parameters(), lr);   // plain SGD: update = -lr * grad
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Engine = engine });
        var loss = nn.functional.cross_entropy(model.call(randn(16, 10)), randint(0, 3, [16]));
        loss.backward();
        monitor.RecordGradients();
        var grads = fc1.parameters().SelectMany(p => TorchData.ToDoubles(p.grad!)).ToArray();
        var weights = fc1.parameters().SelectMany(p => TorchData.ToDoubles(p)).ToArray();
        opt.step();
        var r = monitor.Step(loss)!;
        var g = r.Layers.Single(l => l.Layer == "fc1").Gradients!;
        double gradNorm = Math.Sqrt(grads.Sum(v => v * v)), weightNorm = Math.Sqrt(weights.Sum(v => v * v));
        Assert.Equal(gradNorm, g.GradNorm, 5);
        Assert.Equal(weightNorm, g.WeightNorm, 5);
        Assert.Equal(gradNorm / weightNorm, g.GradToWeightRatio, 5);
        Assert.Equal(lr * gradNorm, g.UpdateNorm!.Value, 5);
        Assert.Equal(10 * 8 + 8, g.Parameters);
        Assert.Null(r.Layers.Single(l => l.Layer == "act").Gradients);   // no parameters
        Assert.Equal(TorchData.ToDoubles(loss)[0], r.Loss!.Value, 6);
    }

    [Fact]
    public void Vanishing_exploding_and_non_finite_gradients_are_flagged()
    {
        using var scope = NewDisposeScope();
        var fc = nn.Linear(4, 4);
        var model = nn.Sequential(("fc", fc));
        using var monitor = ActivationMonitor.Attach(model);
        AnomalyKind? Run(float scale)
        {
            using var s = NewDisposeScope();
            fc.zero_grad();
            var y = model.call(ones(2, 4));
            (y.sum() * scale).backward();
            monitor.RecordGradients();
            var r = monitor.Step()!;
            return r.Anomalies.Where(a => a.Layer == "fc" && a.Kind is AnomalyKind.VanishingGradient or AnomalyKind.ExplodingGradient or AnomalyKind.NonFiniteGradient)
                .Select(a => (AnomalyKind?)a.Kind).SingleOrDefault();
        }
        Assert.Null(Run(1f));
        Assert.Equal(AnomalyKind.VanishingGradient, Run(1e-12f));
        Assert.Equal(AnomalyKind.ExplodingGradient, Run(1e6f));
        Assert.Equal(AnomalyKind.NonFiniteGradient, Run(float.NaN));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(37)]
    [InlineData(4096 * 3 + 29)]     // several chunks, an unrolled body and a tail
    public void Norm_kernels_match_double_precision_sums(int length)
    {
        var rng = new Random(length + 1);
        var a = Enumerable.Range(0, length).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var b = Enumerable.Range(0, length).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        double squares = a.Sum(v => (double)v * v);
        double differences = a.Zip(b, (x, y) => ((double)x - y) * ((double)x - y)).Sum();
        // Float partial sums over chunks of 4,096 values: relative error well under 1e-5.
        double tolerance = 1e-5 * Math.Max(1, squares);
        Assert.InRange(CovariateShift.Statistics.CpuNorms.SumSquares(a), squares - tolerance, squares + tolerance);
        var copy = new float[length];
        Assert.InRange(CovariateShift.Statistics.CpuNorms.SumSquaresAndCopy(a, copy), squares - tolerance, squares + tolerance);
        Assert.Equal(a, copy);
        // The fused pass over a gradient (b) and weights (a): each sum as the double reference, the weights copied.
        double bSquares = b.Sum(v => (double)v * v);
        var fusedCopy = new float[length];
        var (gradSquares, weightSquares) = CovariateShift.Statistics.CpuNorms.SumSquaresOfBothAndCopy(b, a, fusedCopy);
        Assert.InRange(gradSquares, bSquares - 1e-5 * Math.Max(1, bSquares), bSquares + 1e-5 * Math.Max(1, bSquares));
        Assert.InRange(weightSquares, squares - tolerance, squares + tolerance);
        Assert.Equal(a, fusedCopy);
        double dTolerance = 1e-5 * Math.Max(1, differences);
        Assert.InRange(CovariateShift.Statistics.CpuNorms.SumSquaredDifference(a, b), differences - dTolerance, differences + dTolerance);
    }
}
