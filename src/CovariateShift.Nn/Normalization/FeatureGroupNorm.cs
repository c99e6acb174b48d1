using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace CovariateShift.Nn.Normalization;

/// <summary>
/// Group Normalization (Wu &amp; He 2018) of fully connected activations. The F features of each sample are split into
/// G contiguous groups of F/G features; with μ_ng and σ²_ng the mean and biased variance of group g of sample n:
/// <code>
///   y[n, f] = (x[n, f] − μ_{n,g(f)}) / sqrt(σ²_{n,g(f)} + eps) · γ[f] + β[f]
/// </code>
/// γ (<c>weight</c>) is initialised to 1 and β (<c>bias</c>) to 0. This exists because TorchSharp's GroupNorm module
/// rejects 2-D input (it demands [N, C, *] with at least 3 dimensions); it uses the same functional kernel.
/// <para>Input: [N, F]. Output: [N, F].</para>
/// </summary>
public sealed class FeatureGroupNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter bias;

    /// <param name="numGroups">G; must divide <paramref name="numFeatures"/>.</param>
    /// <param name="numFeatures">F.</param>
    /// <param name="eps">ε added to the variance; must be &gt; 0.</param>
    public FeatureGroupNorm(long numGroups, long numFeatures, double eps = 1e-5)
        : base(nameof(FeatureGroupNorm))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numGroups, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(eps, 0.0);
        if (numFeatures % numGroups != 0)
        {
            throw new ArgumentException($"FeatureGroupNorm: numGroups={numGroups} does not divide numFeatures={numFeatures}.", nameof(numGroups));
        }

        NumGroups = numGroups;
        NumFeatures = numFeatures;
        Eps = eps;
        weight = Owned.Parameter(ones(numFeatures));
        bias = Owned.Parameter(zeros(numFeatures));
        RegisterComponents();
    }

    /// <summary>G.</summary>
    public long NumGroups { get; }

    /// <summary>F.</summary>
    public long NumFeatures { get; }

    /// <summary>ε added to the variance.</summary>
    public double Eps { get; }

    /// <summary>γ, shape [F].</summary>
    public Parameter Weight => weight;

    /// <summary>β, shape [F].</summary>
    public Parameter Bias => bias;

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        InputChecks.RequireChannels(input, NumFeatures, nameof(FeatureGroupNorm), minRank: 2, maxRank: 2);
        return F.group_norm(input, NumGroups, weight, bias, Eps);
    }
}
