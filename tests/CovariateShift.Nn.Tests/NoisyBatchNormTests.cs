using CovariateShift.Nn.Normalization;
using TorchSharp;
using static CovariateShift.Nn.Tests.TestTensors;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Tests;

/// <summary>
/// Noisy batch norm (Santurkar et al. 2018): training output = s ⊙ BN(x) + m with the paper's noise; evaluation output
/// is plain BN with running statistics (checked against the formula in <see cref="RunningStatisticsTests"/>).
/// </summary>
[Collection(TorchGlobalState.Name)]
public sealed class NoisyBatchNormTests
{
    [Fact]
    public void TrainingOutputDiffersFromBatchNormAndEvalOutputEqualsIt()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var noisy = new NoisyBatchNorm(3);
        using var batchNorm = nn.BatchNorm2d(3);
        var input = Input(4, 2.0, 4, 3, 3, 3);
        var clean = Reference.Standardize(Values(input), Reference.PerChannel(4, 3, 9), 1e-5);

        var trained = Values(noisy.call(input));
        batchNorm.call(input);
        var maxDifference = clean.Zip(trained, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(maxDifference > 0.05, $"noise should move some activation by more than 0.05, max change {maxDifference}"); // m alone has |m| up to 0.6

        noisy.eval();
        batchNorm.eval();
        // Same running statistics (both saw one identical batch), so eval outputs agree to float32 rounding.
        AssertClose(Values(batchNorm.call(input)), Values(noisy.call(input)), 1e-5, "noisy BN eval vs BatchNorm2d eval");
    }

    [Fact]
    public void AdditiveNoiseIsUniformAroundOneMeanPerStep()
    {
        // γ = 0, β = 0 makes a = BN(x) = 0, so y = m ~ U(μ − 0.1, μ + 0.1) with one μ ~ U(−0.5, 0.5) for the whole step.
        var y = NoiseOnly(beta: 0.0, seed: 5);
        Assert.All(y, v => Assert.InRange(v, -0.6 - 1e-6, 0.6 + 1e-6));
        var spread = y.Max() - y.Min();
        Assert.InRange(spread, 0.19, 0.2 + 1e-6); // 4096 draws of a width-0.2 uniform cover > 95% of it
    }

    [Fact]
    public void MultiplicativeNoiseHasThePapersSpread()
    {
        // γ = 0, β = 1 makes a = 1, so y = s + m with s ~ N(σ, 0.1²), m ~ U(μ ± 0.1):
        // mean σ + μ ∈ [0.5, 1.75], standard deviation sqrt(0.1² + 0.2²/12) = 0.1155.
        var y = NoiseOnly(beta: 1.0, seed: 6);
        var mean = y.Average();
        var std = Math.Sqrt(y.Sum(v => (v - mean) * (v - mean)) / (y.Length - 1));
        Assert.InRange(mean, 0.5 - 0.01, 1.75 + 0.01); // ± 4 standard errors (0.1155/64 = 0.0018)
        var expectedStd = Math.Sqrt(0.01 + 0.04 / 12);
        Assert.InRange(std, expectedStd * 0.95, expectedStd * 1.05); // sampling error of the std over 4096 draws ≈ 1.1%
    }

    private static double[] NoiseOnly(double beta, int seed)
    {
        using var scope = NewDisposeScope();
        manual_seed(seed);
        using var noisy = new NoisyBatchNorm(4);
        Set(noisy.Weight, 0, 0, 0, 0);
        Set(noisy.Bias, beta, beta, beta, beta);
        return Values(noisy.call(Input(seed, 1.0, 16, 4, 8, 8)));
    }
}
