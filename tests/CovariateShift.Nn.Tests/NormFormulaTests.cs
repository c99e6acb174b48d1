using CovariateShift.Nn.Normalization;
using TorchSharp;
using static CovariateShift.Nn.Tests.TestTensors;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Tests;

/// <summary>
/// Training-mode output of every normalization built by <see cref="Norms.Create"/> against the paper's formula,
/// computed in double precision from the same input values. Affine parameters are at their initial values (γ = 1,
/// β = 0). Tolerance 1e-4 absolute: the layers compute in float32 on O(1) values over at most a few hundred
/// elements (rounding ~1e-6), while any formula error (wrong axes, unbiased variance, missing eps) is ≥ 1e-3.
/// </summary>
[Collection(TorchGlobalState.Name)]
public sealed class NormFormulaTests
{
    private const double Tolerance = 1e-4;
    private const double Eps = 1e-5;

    [Fact]
    public void BatchNormOnChannelsNormalizesEachChannelOverBatchAndSpace()
    {
        var y = TrainOutput(NormKind.Batch, NormTarget.Channels, [4, 3, 5, 5], out var x);
        AssertClose(Reference.Standardize(x, Reference.PerChannel(4, 3, 25), Eps), y, Tolerance, "batch norm [N,C,H,W]");
        foreach (var group in Reference.PerChannel(4, 3, 25))
        {
            var (mean, variance) = Reference.Moments(y, group);
            Assert.InRange(mean, -Tolerance, Tolerance);
            Assert.InRange(variance, 1 - 1e-3, 1 + Tolerance); // biased variance is 1 − eps/σ² ≈ 1
        }
    }

    [Fact]
    public void BatchNormOnFeaturesNormalizesEachFeatureOverTheBatch()
    {
        var y = TrainOutput(NormKind.Batch, NormTarget.Features, [8, 6], out var x);
        AssertClose(Reference.Standardize(x, Reference.PerChannel(8, 6, 1), Eps), y, Tolerance, "batch norm [N,F]");
    }

    [Fact]
    public void LayerNormOnFeaturesNormalizesEachSample()
    {
        var y = TrainOutput(NormKind.Layer, NormTarget.Features, [4, 10], out var x);
        AssertClose(Reference.Standardize(x, Reference.PerSample(4, 10, 1), Eps), y, Tolerance, "layer norm [N,F]");
    }

    [Fact]
    public void LayerNormOnChannelsNormalizesEachSampleOverChannelsAndSpace()
    {
        var y = TrainOutput(NormKind.Layer, NormTarget.Channels, [3, 4, 3, 3], out var x);
        AssertClose(Reference.Standardize(x, Reference.PerSample(3, 4, 9), Eps), y, Tolerance, "layer norm [N,C,H,W]");
    }

    [Fact]
    public void GroupNormOnChannelsNormalizesEachGroupOfEachSample()
    {
        var y = TrainOutput(NormKind.Group, NormTarget.Channels, [2, 8, 3, 3], out var x, groups: 4);
        AssertClose(Reference.Standardize(x, Reference.PerSampleGroup(2, 8, 9, 4), Eps), y, Tolerance, "group norm [N,C,H,W]");
    }

    [Fact]
    public void GroupNormOnFeaturesNormalizesEachGroupOfEachSample()
    {
        var y = TrainOutput(NormKind.Group, NormTarget.Features, [3, 12], out var x, groups: 3);
        AssertClose(Reference.Standardize(x, Reference.PerSampleGroup(3, 12, 1, 3), Eps), y, Tolerance, "group norm [N,F]");
    }

    [Fact]
    public void WeightStdNormIsGroupNormWithTheDefaultGroupCount()
    {
        // 64 channels: the default rule picks 32 groups of 2 channels.
        var y = TrainOutput(NormKind.WeightStd, NormTarget.Channels, [2, 64, 2, 2], out var x);
        AssertClose(Reference.Standardize(x, Reference.PerSampleGroup(2, 64, 4, 32), Eps), y, Tolerance, "weight-std norm [N,C,H,W]");
    }

    [Fact]
    public void InstanceNormNormalizesEachChannelOfEachSample()
    {
        var y = TrainOutput(NormKind.Instance, NormTarget.Channels, [2, 3, 4, 4], out var x);
        AssertClose(Reference.Standardize(x, Reference.PerSampleChannel(2, 3, 16), Eps), y, Tolerance, "instance norm");
    }

    [Fact]
    public void InstanceNormIsTheSameInEvalMode()
    {
        using var scope = NewDisposeScope();
        using var norm = Norms.Create(NormKind.Instance, NormTarget.Channels, 3)!;
        norm.eval();
        var input = Input(5, 2.0, 2, 3, 4, 4);
        var x = Values(input);
        AssertClose(Reference.Standardize(x, Reference.PerSampleChannel(2, 3, 16), Eps), Values(norm.call(input)), Tolerance, "instance norm (eval)");
    }

    [Fact]
    public void RmsNormOnChannelsDividesEachPositionByItsChannelRms()
    {
        var y = TrainOutput(NormKind.Rms, NormTarget.Channels, [2, 5, 3, 3], out var x);
        AssertClose(Reference.RmsPerPosition(x, 2, 5, 9, Eps), y, Tolerance, "rms norm [N,C,H,W]");
        for (var n = 0; n < 2; n++)
        {
            for (var p = 0; p < 9; p++)
            {
                var rms = Math.Sqrt(Enumerable.Range(0, 5).Average(c => Math.Pow(y[Reference.Index(n, c, p, 5, 9)], 2)));
                Assert.InRange(rms, 1 - 1e-3, 1 + Tolerance); // = sqrt(ms/(ms+eps)) with g = 1
            }
        }
    }

    [Fact]
    public void RmsNormOnFeaturesDividesEachSampleByItsRms()
    {
        var y = TrainOutput(NormKind.Rms, NormTarget.Features, [4, 7], out var x);
        AssertClose(Reference.RmsPerPosition(x, 4, 7, 1, Eps), y, Tolerance, "rms norm [N,F]");
    }

    [Fact]
    public void RmsNormAppliesItsGainPerChannel()
    {
        using var scope = NewDisposeScope();
        using var norm = new RmsNorm(3);
        Set(norm.Weight, 2.0, -1.0, 0.5);
        var input = Input(3, 1.5, 2, 3, 2, 2);
        var x = Values(input);
        var gains = new[] { 2.0, -1.0, 0.5 };
        var expected = Reference.RmsPerPosition(x, 2, 3, 4, Eps).Select((v, i) => v * gains[i / 4 % 3]).ToArray();
        AssertClose(expected, Values(norm.call(input)), Tolerance, "rms norm with gain");
    }

    [Fact]
    public void NormsRejectInputWithTheWrongChannelCount()
    {
        using var scope = NewDisposeScope();
        using var norm = new RmsNorm(4);
        var ex = Assert.Throws<ArgumentException>(() => norm.call(zeros(2, 3)));
        Assert.Contains("[N, 4, *]", ex.Message);
        Assert.Contains("[2, 3]", ex.Message);
    }

    private static double[] TrainOutput(NormKind kind, NormTarget target, long[] shape, out double[] x, int? groups = null)
    {
        using var scope = NewDisposeScope();
        using var norm = Norms.Create(kind, target, shape[1], new NormOptions { Groups = groups })!;
        norm.train();
        var input = Input(42, 2.0, shape);
        x = Values(input);
        return Values(norm.call(input));
    }
}
