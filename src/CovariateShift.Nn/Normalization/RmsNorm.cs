using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Normalization;

/// <summary>
/// Root-mean-square normalization (Zhang &amp; Sennrich 2019) over the channel dimension 1:
/// <code>
///   y[n, c, ...] = x[n, c, ...] / sqrt( (1/C) Σ_c' x[n, c', ...]² + eps ) · g[c]
/// </code>
/// The mean of squares runs over dimension 1 only, separately for every sample and (for conv inputs) every spatial
/// position: for an MLP it normalizes the F features of a sample, for a conv net the C channels at each pixel
/// (the LLM-style "per token" choice, which, unlike a (C, H, W) reduction, does not depend on the image size).
/// No mean is subtracted and there is no shift. g ∈ ℝ^C is learnable (parameter <c>weight</c>), initialised to 1.
/// <para>Input: [N, C] or [N, C, H, W] (any [N, C, *]). Output: same shape as the input.</para>
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    /// <param name="numFeatures">C, the size of dimension 1.</param>
    /// <param name="eps">ε added to the mean square; must be &gt; 0.</param>
    public RmsNorm(long numFeatures, double eps = 1e-5)
        : base(nameof(RmsNorm))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numFeatures, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(eps, 0.0);
        NumFeatures = numFeatures;
        Eps = eps;
        weight = Owned.Parameter(ones(numFeatures));
        RegisterComponents();
    }

    /// <summary>C, the size of the normalized dimension 1.</summary>
    public long NumFeatures { get; }

    /// <summary>ε added to the mean square.</summary>
    public double Eps { get; }

    /// <summary>The learnable gain g, shape [C].</summary>
    public Parameter Weight => weight;

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        InputChecks.RequireChannels(input, NumFeatures, nameof(RmsNorm));
        using var scope = NewDisposeScope();
        var inverseRms = input.square().mean([1L], keepdim: true).add(Eps).rsqrt();
        var output = input * inverseRms * weight.view(InputChecks.ChannelShape(input.dim(), NumFeatures));
        return output.MoveToOuterDisposeScope();
    }
}
