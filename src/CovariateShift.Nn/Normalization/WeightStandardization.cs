using static TorchSharp.torch;

namespace CovariateShift.Nn.Normalization;

/// <summary>
/// Weight Standardization (Qiao et al. 2019, Eq. 5–6) as used by <see cref="WsLinear"/> and <see cref="WsConv2d"/>.
/// For every output unit i (dimension 0 of the weight), over its I = C_in·k_h·k_w fan-in entries j:
/// <code>
///   μ_i = (1/I) Σ_j W[i, j]
///   σ_i = sqrt( (1/I) Σ_j (W[i, j] − μ_i)² )          (population standard deviation, as in the paper)
///   Ŵ[i, j] = (W[i, j] − μ_i) / (σ_i + ε),   ε = 1e-5  (added to σ as in the authors' reference code)
/// </code>
/// </summary>
public static class WeightStandardization
{
    /// <summary>ε added to the per-unit standard deviation.</summary>
    public const double Epsilon = 1e-5;

    /// <summary>Ŵ for a weight of shape [out, in] or [out, in, k_h, k_w]; differentiable with respect to W.</summary>
    public static Tensor Standardize(Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.dim() < 2)
        {
            throw new ArgumentException($"Weight standardization needs a weight of rank >= 2, got {InputChecks.FormatShape(weight.shape)}.", nameof(weight));
        }

        using var scope = NewDisposeScope();
        var fanInDims = Enumerable.Range(1, (int)weight.dim() - 1).Select(d => (long)d).ToArray();
        var (variance, mean) = var_mean(weight, fanInDims, unbiased: false, keepdim: true);
        var standardized = weight.sub(mean).div(variance.sqrt().add(Epsilon));
        return standardized.MoveToOuterDisposeScope();
    }
}
