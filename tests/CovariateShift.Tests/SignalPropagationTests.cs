using System.Text.RegularExpressions;
using CovariateShift.Nn.Models;
using CovariateShift.Records;
using CovariateShift.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>
/// He et al. 2015 (Delving Deep into Rectifiers, section 2.2), measured with the monitor: in a plain ReLU network the
/// pre-activation variance obeys Var[y_l] = n_l · Var[w_l] · ½ Var[y_{l−1}] (zero biases, symmetric zero-mean weights).
/// With He init (Var[w] = 2/n) the factor is 1 and the variance is the same at every depth; with LeCun init
/// (Var[w] = 1/n) it is ½ and the variance halves per layer, 2^−29 from layer 1 to layer 30.
/// </summary>
/// <remarks>
/// The theory is about the expectation over initializations. One finite-width network deviates from it by a random
/// walk in log-variance (per-layer spread about √(5/n), Hanin &amp; Rolnick 2018): measured on these 512 images, single
/// 30 × 256 He networks (12 seeds) ended up to 5.6× above their first layer. So the tests average the recorded variance
/// of every layer over 8 independently initialized 30 × 512 networks; measured over 8 such groups of 8 (seeds 0..63),
/// the averaged He variance stayed within 0.73× to 1.19× of the first layer and the log2 slope within ±0.02 per layer.
/// </remarks>
[Trait("Category", "Slow")]
[Collection(TorchGlobalState.Name)]
public sealed class SignalPropagationTests(ITestOutputHelper output)
{
    private const int Depth = 30;
    private const int Width = 512;
    private const int Networks = 8;

    /// <summary>
    /// Pre-activation variance of hidden layers 1..30 (the Linear outputs) as recorded by the monitor from one
    /// training-mode forward of 512 standardized Fashion-MNIST images, averaged over <see cref="Networks"/> initializations.
    /// Also checks the first network's layer-1 variance against a computation by hand.
    /// </summary>
    private static double[] AveragedRecordedVariances(WeightInit init)
    {
        var sum = new double[Depth];
        var images = TorchData.FashionMnist512.Images;
        for (int seed = 0; seed < Networks; seed++)
        {
            using var scope = NewDisposeScope();
            torch.manual_seed(seed);
            using var model = ModelZoo.Create(new ModelSpec
            {
                Architecture = "mlp", InputShape = [1, 28, 28], Depth = Depth, Width = Width, Activation = ActivationKind.Relu, Init = init,
            });
            var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            Assert.All(parameters.Where(p => p.Key.EndsWith(".bias", StringComparison.Ordinal)), p => Assert.Equal(0f, p.Value.abs().max().item<float>()));

            using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { LayerTypes = ["Linear"], LayerNamePattern = new Regex(@"^layers\.") });
            Assert.Equal(Enumerable.Range(0, Depth).Select(i => $"layers.{i}.linear"), monitor.Layers);
            model.train();
            using (no_grad()) model.call(images);
            StepRecord record = monitor.Step()!;
            var variances = record.Layers.Select(l => l.Statistics!.Variance).ToArray();
            Assert.All(record.Layers, l => Assert.Equal(512L * Width, l.Statistics!.Count));

            if (seed == 0)
            {
                // Layer 1 by hand: y = x Wᵀ (bias 0), population variance over all 512 × 512 values, in doubles.
                var y = TorchData.ToDoubles(images.flatten(1).matmul(parameters["layers.0.linear.weight"].t()));
                double byHand = Math.Pow(Reference.Std(y), 2);
                Assert.Equal(byHand, variances[0], byHand * 1e-5);
            }

            for (int i = 0; i < Depth; i++) sum[i] += variances[i];
        }
        return sum.Select(s => s / Networks).ToArray();
    }

    /// <summary>Least-squares slope of log2(variance) against the layer index.</summary>
    private static double Log2Slope(double[] variances)
    {
        var xs = Enumerable.Range(1, variances.Length).Select(i => (double)i).ToArray();
        var ys = variances.Select(Math.Log2).ToArray();
        double mx = xs.Average(), my = ys.Average();
        return xs.Zip(ys, (x, v) => (x - mx) * (v - my)).Sum() / xs.Sum(x => (x - mx) * (x - mx));
    }

    [Fact]
    public void He_init_keeps_the_pre_activation_variance_of_all_30_layers_within_2x_of_the_first()
    {
        var v = AveragedRecordedVariances(WeightInit.He);
        double slope = Log2Slope(v);
        output.WriteLine($"he: layer 1 {v[0]:G4}, layer 30 {v[^1]:G4}, min/first {v.Min() / v[0]:F3}, max/first {v.Max() / v[0]:F3}, log2 slope {slope:F4}");
        // Layer 1 sees the standardized pixels: Var[y_1] = 784 · (2/784) · E[x²] ≈ 2.
        Assert.InRange(v[0], 1.5, 2.5);
        Assert.All(v, x => Assert.InRange(x / v[0], 0.5, 2.0));
        Assert.InRange(slope, -0.05, 0.05);
    }

    [Fact]
    public void LeCun_init_halves_the_pre_activation_variance_per_layer()
    {
        var v = AveragedRecordedVariances(WeightInit.Lecun);
        double slope = Log2Slope(v);
        output.WriteLine($"lecun: layer 1 {v[0]:G4}, layer 30 {v[^1]:G4}, ratio {v[^1] / v[0]:G3} (theory 2^-29 = {Math.Pow(2, -29):G3}), log2 slope {slope:F4}");
        // Layer 1: Var[y_1] = 784 · (1/784) · E[x²] ≈ 1.
        Assert.InRange(v[0], 0.75, 1.25);
        Assert.True(v[^1] < 1e-3 * v[0], $"layer 30 variance {v[^1]} is not below 1e-3 × layer 1's {v[0]}");
        Assert.InRange(slope, -1.2, -0.8);
    }
}
