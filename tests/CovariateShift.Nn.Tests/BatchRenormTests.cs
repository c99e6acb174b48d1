using CovariateShift.Nn.Normalization;
using TorchSharp;
using static CovariateShift.Nn.Tests.TestTensors;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Tests;

/// <summary>
/// Batch Renormalization (Ioffe 2017, Algorithm 1) against a plain C# implementation of the algorithm.
/// Input [4, 3, 2, 2] (16 values per channel). Tolerance 1e-4 absolute on outputs and statistics (float32 rounding
/// on O(1) values); clipping errors would be O(1).
/// </summary>
[Collection(TorchGlobalState.Name)]
public sealed class BatchRenormTests
{
    private const double Tolerance = 1e-4;
    private const double Eps = 1e-5;
    private const int N = 4, C = 3, S = 4;
    private static readonly long[] Shape = [N, C, 2, 2];
    private static readonly double[] Gamma = [1.5, -0.5, 2.0];
    private static readonly double[] Beta = [0.25, 1.0, -2.0];
    private static readonly double[] FarMean = [3.0, -2.0, 0.5];
    private static readonly double[] FarStd = [0.2, 8.0, 1.0];

    [Fact]
    public void WithRMaxOneAndDMaxZeroTrainingOutputEqualsBatchNorm()
    {
        using var scope = NewDisposeScope();
        using var renorm = Create(new BatchRenormSchedule(RMax: 1, DMax: 0, WarmupSteps: 0));
        using var batchNorm = nn.BatchNorm2d(C);
        Set(batchNorm.weight, Gamma);
        Set(batchNorm.bias!, Beta);
        var input = Input(11, 2.0, Shape);
        var y = Values(renorm.call(input));

        var batchNormReference = Reference.Affine(Reference.Standardize(Values(input), Reference.PerChannel(N, C, S), Eps), C, S, Gamma, Beta);
        AssertClose(batchNormReference, y, Tolerance, "renorm(r_max=1, d_max=0) vs BN formula");
        AssertClose(Values(batchNorm.call(input)), y, Tolerance, "renorm(r_max=1, d_max=0) vs BatchNorm2d");
    }

    [Fact]
    public void ClippedCorrectionsMatchTheAlgorithm()
    {
        using var scope = NewDisposeScope();
        const double rMax = 2.0, dMax = 0.5, momentum = 0.1;
        using var renorm = Create(new BatchRenormSchedule(rMax, dMax, WarmupSteps: 0));
        var input = Input(12, 2.0, Shape);
        var x = Values(input);
        var y = Values(renorm.call(input));

        var (expected, r, d) = RenormReference(x, FarMean, FarStd, rMax, dMax);
        Assert.Contains(r, v => v == rMax);       // the test only means something if clipping is active:
        Assert.Contains(r, v => v == 1 / rMax);   // r clipped from above and from below,
        Assert.Contains(d, v => Math.Abs(v) == dMax); // d clipped,
        Assert.Contains(d, v => Math.Abs(v) < dMax);  // and one d inside the limits.
        AssertClose(expected, y, Tolerance, "renorm output");

        var (mean, variance) = Reference.ChannelMoments(x, N, C, S);
        var newMean = FarMean.Select((mu, c) => mu + momentum * (mean[c] - mu)).ToArray();
        var newStd = FarStd.Select((sigma, c) => sigma + momentum * (Math.Sqrt(variance[c] + Eps) - sigma)).ToArray();
        AssertClose(newMean, Values(renorm.RunningMean), Tolerance, "running_mean");
        AssertClose(newStd, Values(renorm.RunningStd), Tolerance, "running_std");
        Assert.Equal(1L, renorm.NumBatchesTracked.item<long>());
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    [InlineData(2L)]
    [InlineData(4L)]
    [InlineData(10L)]
    public void ClippingLimitsGrowLinearlyOverTheWarmup(long step)
    {
        using var scope = NewDisposeScope();
        var schedule = new BatchRenormSchedule(RMax: 3, DMax: 5, WarmupSteps: 4);
        using var renorm = Create(schedule);
        Set(renorm.NumBatchesTracked, step);
        var input = Input(13, 2.0, Shape);

        var progress = Math.Min(1.0, step / 4.0);
        var (expected, _, _) = RenormReference(Values(input), FarMean, FarStd, 1 + 2 * progress, 5 * progress);
        AssertClose(expected, Values(renorm.call(input)), Tolerance, $"renorm output at step {step}");
        Assert.Equal(step + 1, renorm.NumBatchesTracked.item<long>());
    }

    [Fact]
    public void EvalUsesTheRunningMeanAndStd()
    {
        using var scope = NewDisposeScope();
        const double momentum = 0.25;
        using var renorm = new BatchRenorm(C, Eps, momentum, new BatchRenormSchedule(WarmupSteps: 0));
        double[] mu = [0, 0, 0], sigma = [1, 1, 1];
        for (var step = 0; step < 3; step++)
        {
            var batch = Input(20 + step, 1.0 + step, Shape);
            renorm.call(batch);
            var (mean, variance) = Reference.ChannelMoments(Values(batch), N, C, S);
            for (var c = 0; c < C; c++)
            {
                mu[c] += momentum * (mean[c] - mu[c]);
                sigma[c] += momentum * (Math.Sqrt(variance[c] + Eps) - sigma[c]);
            }
        }

        Set(renorm.Weight, Gamma);
        Set(renorm.Bias, Beta);
        renorm.eval();
        var input = Input(30, 2.0, Shape);
        var expected = Values(input).Select((v, i) => Gamma[i / S % C] * (v - mu[i / S % C]) / sigma[i / S % C] + Beta[i / S % C]).ToArray();
        AssertClose(expected, Values(renorm.call(input)), Tolerance, "renorm eval output");
        Assert.Equal(3L, renorm.NumBatchesTracked.item<long>());
    }

    [Fact]
    public void RAndDAreConstantsInTheBackwardPass()
    {
        // With r and d treated as constants, y = γ·(r·x̂ + d) + β with x̂ the batch-normalized input, so
        // dL/dx = γ·r/σ_B · (g − mean(g) − x̂·mean(g·x̂)) per channel, for upstream gradient g.
        using var scope = NewDisposeScope();
        const double rMax = 2.0, dMax = 0.5;
        using var renorm = Create(new BatchRenormSchedule(rMax, dMax, WarmupSteps: 0));
        var input = Input(14, 2.0, Shape).requires_grad_();
        var upstream = Input(15, 1.0, Shape);
        renorm.call(input).mul(upstream).sum().backward();

        var x = Values(input);
        var g = Values(upstream);
        var (_, r, _) = RenormReference(x, FarMean, FarStd, rMax, dMax);
        var expected = new double[x.Length];
        foreach (var (group, c) in Reference.PerChannel(N, C, S).Select((group, c) => (group, c)))
        {
            var (mean, variance) = Reference.Moments(x, group);
            var std = Math.Sqrt(variance + Eps);
            var xHat = group.ToDictionary(i => i, i => (x[i] - mean) / std);
            var meanG = group.Average(i => g[i]);
            var meanGxHat = group.Average(i => g[i] * xHat[i]);
            foreach (var i in group)
            {
                expected[i] = Gamma[c] * r[c] / std * (g[i] - meanG - xHat[i] * meanGxHat);
            }
        }

        AssertClose(expected, Values(input.grad!), Tolerance, "dL/dx");
    }

    private static BatchRenorm Create(BatchRenormSchedule schedule)
    {
        var renorm = new BatchRenorm(C, Eps, momentum: 0.1, schedule);
        Set(renorm.Weight, Gamma);
        Set(renorm.Bias, Beta);
        Set(renorm.RunningMean, FarMean);
        Set(renorm.RunningStd, FarStd);
        return renorm;
    }

    /// <summary>Algorithm 1 of Ioffe (2017) in training mode, with γ = <see cref="Gamma"/>, β = <see cref="Beta"/>.</summary>
    private static (double[] Output, double[] R, double[] D) RenormReference(double[] x, double[] mu, double[] sigma, double rMax, double dMax)
    {
        var (mean, variance) = Reference.ChannelMoments(x, N, C, S);
        var std = variance.Select(v => Math.Sqrt(v + Eps)).ToArray();
        var r = Enumerable.Range(0, C).Select(c => Math.Clamp(std[c] / sigma[c], 1 / rMax, rMax)).ToArray();
        var d = Enumerable.Range(0, C).Select(c => Math.Clamp((mean[c] - mu[c]) / sigma[c], -dMax, dMax)).ToArray();
        var output = x.Select((v, i) =>
        {
            var c = i / S % C;
            return Gamma[c] * ((v - mean[c]) / std[c] * r[c] + d[c]) + Beta[c];
        }).ToArray();
        return (output, r, d);
    }
}
