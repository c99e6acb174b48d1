using CovariateShift.Nn.Normalization;
using TorchSharp;
using static CovariateShift.Nn.Tests.TestTensors;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Tests;

/// <summary>
/// Running statistics of batch and noisy-batch norm, tracked in plain C# over several training batches
/// (running ← (1 − α)·running + α·batch, with the unbiased batch variance as in PyTorch), and the evaluation output
/// (x − running_mean)/sqrt(running_var + eps)·γ + β. Tolerance 1e-4 absolute (float32 rounding on O(1) values).
/// </summary>
[Collection(TorchGlobalState.Name)]
public sealed class RunningStatisticsTests
{
    private const double Tolerance = 1e-4;

    public static TheoryData<NormKind, NormTarget> BatchStatisticLayers => new()
    {
        { NormKind.Batch, NormTarget.Channels },
        { NormKind.Batch, NormTarget.Features },
        { NormKind.NoisyBatch, NormTarget.Channels },
        { NormKind.NoisyBatch, NormTarget.Features },
    };

    [Theory]
    [MemberData(nameof(BatchStatisticLayers))]
    public void EvalUsesRunningStatisticsTrackedWithMomentum(NormKind kind, NormTarget target)
    {
        const double momentum = 0.3;
        const double eps = 1e-3;
        long[] shape = target == NormTarget.Channels ? [4, 3, 2, 2] : [6, 3];
        int n = (int)shape[0], c = 3, s = target == NormTarget.Channels ? 4 : 1;
        using var scope = NewDisposeScope();
        using var norm = Norms.Create(kind, target, c, new NormOptions { Momentum = momentum, Eps = eps })!;
        var runningMean = new double[c];
        var runningVar = Enumerable.Repeat(1.0, c).ToArray();
        for (var step = 0; step < 3; step++)
        {
            var batch = Input(100 + step, 1.0 + step, shape);
            norm.call(batch);
            var (mean, variance) = Reference.ChannelMoments(Values(batch), n, c, s);
            var m = n * s;
            for (var ch = 0; ch < c; ch++)
            {
                runningMean[ch] = (1 - momentum) * runningMean[ch] + momentum * mean[ch];
                runningVar[ch] = (1 - momentum) * runningVar[ch] + momentum * variance[ch] * m / (m - 1);
            }
        }

        var gamma = new[] { 1.5, -0.5, 2.0 };
        var beta = new[] { 0.25, 1.0, -2.0 };
        foreach (var (name, parameter) in norm.named_parameters())
        {
            Set(parameter, name == "weight" ? gamma : beta);
        }

        norm.eval();
        var input = Input(7, 3.0, shape);
        var x = Values(input);
        var expected = x.Select((v, i) =>
        {
            var ch = i / s % c;
            return (v - runningMean[ch]) / Math.Sqrt(runningVar[ch] + eps) * gamma[ch] + beta[ch];
        }).ToArray();
        AssertClose(expected, Values(norm.call(input)), Tolerance, $"{kind} eval output");
        var buffers = norm.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        AssertClose(runningMean, Values(buffers["running_mean"]), Tolerance, "running_mean");
        AssertClose(runningVar, Values(buffers["running_var"]), Tolerance, "running_var");
    }
}
