using CovariateShift.Nn.Normalization;
using TorchSharp;
using static CovariateShift.Nn.Tests.TestTensors;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Tests;

/// <summary>
/// Weight Standardization (Qiao et al. 2019): Ŵ per output unit has mean 0 and population std σ/(σ + 1e-5) ≈ 1,
/// and the layers compute with Ŵ. Tolerances: 1e-5 on Ŵ (float32 rounding of O(1) values), 1e-4 on layer outputs
/// (sums of up to 18 products).
/// </summary>
[Collection(TorchGlobalState.Name)]
public sealed class WeightStandardizationTests
{
    [Fact]
    public void WsLinearStandardizesEveryOutputUnit()
    {
        using var scope = NewDisposeScope();
        manual_seed(8);
        using var layer = new WsLinear(6, 4);
        var raw = Values(layer.Weight);
        var standardized = Values(layer.StandardizedWeight());
        AssertClose(Reference.StandardizeRows(raw, 4), standardized, 1e-5, "Ŵ");
        for (var unit = 0; unit < 4; unit++)
        {
            var row = standardized.Skip(unit * 6).Take(6).ToArray();
            var mean = row.Average();
            Assert.InRange(mean, -1e-5, 1e-5);
            Assert.InRange(Math.Sqrt(row.Sum(v => (v - mean) * (v - mean)) / 6), 1 - 1e-3, 1 + 1e-5);
        }
    }

    [Fact]
    public void WsLinearComputesXTimesStandardizedWeightPlusBias()
    {
        using var scope = NewDisposeScope();
        manual_seed(9);
        using var layer = new WsLinear(5, 3);
        var input = Input(10, 1.0, 4, 5);
        var x = Values(input);
        var w = Reference.StandardizeRows(Values(layer.Weight), 3);
        var b = Values(layer.Bias!);
        var expected = new double[4 * 3];
        for (var n = 0; n < 4; n++)
        {
            for (var o = 0; o < 3; o++)
            {
                expected[n * 3 + o] = b[o] + Enumerable.Range(0, 5).Sum(i => x[n * 5 + i] * w[o * 5 + i]);
            }
        }

        AssertClose(expected, Values(layer.call(input)), 1e-4, "WsLinear output");
    }

    [Fact]
    public void WsConv2dConvolvesWithTheStandardizedKernel()
    {
        using var scope = NewDisposeScope();
        manual_seed(10);
        const int n = 2, cin = 2, h = 5, cout = 3, k = 3, stride = 2, pad = 1, hout = 3;
        using var layer = new WsConv2d(cin, cout, k, stride, pad);
        var input = Input(11, 1.0, n, cin, h, h);
        var x = Values(input);
        var w = Reference.StandardizeRows(Values(layer.Weight), cout);
        var b = Values(layer.Bias!);
        var expected = new double[n * cout * hout * hout];
        for (var s = 0; s < n; s++)
        {
            for (var o = 0; o < cout; o++)
            {
                for (var i = 0; i < hout; i++)
                {
                    for (var j = 0; j < hout; j++)
                    {
                        var sum = b[o];
                        for (var c = 0; c < cin; c++)
                        {
                            for (var u = 0; u < k; u++)
                            {
                                for (var v = 0; v < k; v++)
                                {
                                    int row = i * stride - pad + u, col = j * stride - pad + v;
                                    if (row >= 0 && row < h && col >= 0 && col < h)
                                    {
                                        sum += w[((o * cin + c) * k + u) * k + v] * x[((s * cin + c) * h + row) * h + col];
                                    }
                                }
                            }
                        }

                        expected[((s * cout + o) * hout + i) * hout + j] = sum;
                    }
                }
            }
        }

        AssertClose(expected, Values(layer.call(input)), 1e-4, "WsConv2d output");
    }

    [Fact]
    public void GradientFlowsThroughTheStandardization()
    {
        // Ŵ does not change when a constant is added to a row of W, so the gradient of any loss has zero row sums
        // (up to float32 rounding: tolerance 1e-5 of the row's absolute gradient mass).
        using var scope = NewDisposeScope();
        manual_seed(12);
        using var layer = new WsLinear(7, 3);
        layer.call(Input(13, 1.0, 5, 7)).square().sum().backward();
        var grad = Values(layer.Weight.grad!);
        Assert.Contains(grad, g => Math.Abs(g) > 1e-3);
        for (var unit = 0; unit < 3; unit++)
        {
            var row = grad.Skip(unit * 7).Take(7).ToArray();
            Assert.InRange(Math.Abs(row.Sum()), 0, 1e-5 * row.Sum(Math.Abs));
        }
    }
}
