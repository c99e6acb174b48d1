using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Tests;

/// <summary>Conversions between tensors and plain arrays, and deterministic inputs.</summary>
internal static class TestTensors
{
    /// <summary>The tensor's values as doubles, row-major.</summary>
    public static double[] Values(Tensor tensor)
    {
        using var scope = NewDisposeScope();
        return tensor.detach().cpu().to_type(ScalarType.Float64).contiguous().data<double>().ToArray();
    }

    /// <summary>A float32 tensor with the given values and shape.</summary>
    public static Tensor FromValues(double[] values, params long[] shape) =>
        tensor(values.Select(v => (float)v).ToArray(), shape);

    /// <summary>Seeded input x = scale·z + offset[c] with z ~ N(0, 1) and a different offset per channel (dimension 1).</summary>
    public static Tensor Input(int seed, double scale, params long[] shape)
    {
        manual_seed(seed);
        using var scope = NewDisposeScope();
        var offsets = arange(shape[1], ScalarType.Float32).mul(0.75).sub(0.5).view(Enumerable.Range(0, shape.Length).Select(d => d == 1 ? shape[1] : 1L).ToArray());
        return randn(shape).mul(scale).add(offsets).MoveToOuterDisposeScope();
    }

    /// <summary>Asserts |expected − actual| ≤ tolerance element-wise, reporting the first violation.</summary>
    public static void AssertClose(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double tolerance, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (var i = 0; i < expected.Count; i++)
        {
            if (!(Math.Abs(expected[i] - actual[i]) <= tolerance))
            {
                Assert.Fail($"{what}: element {i}: expected {expected[i]:R}, got {actual[i]:R} (tolerance {tolerance}).");
            }
        }
    }

    /// <summary>Sets a parameter or buffer to the given values without recording gradients.</summary>
    public static void Set(Tensor target, params double[] values)
    {
        using var noGrad = no_grad();
        using var source = FromValues(values, target.shape).to_type(target.dtype);
        target.copy_(source);
    }
}
