using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace CovariateShift.Nn.Normalization;

/// <summary>
/// Fully connected layer with Weight Standardization: y = x Ŵᵀ + b, where Ŵ is recomputed from the raw weight W on
/// every forward pass (see <see cref="WeightStandardization"/>), so gradients flow through the standardization.
/// Parameters: <c>weight</c> W [out, in] and optional <c>bias</c> b [out], both initialised like TorchSharp's Linear,
/// U(−1/√in, 1/√in) (the scale of W does not matter after standardization).
/// <para>Input: [*, in]. Output: [*, out].</para>
/// </summary>
public sealed class WsLinear : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter? bias;

    /// <param name="inFeatures">Input features.</param>
    /// <param name="outFeatures">Output features (units).</param>
    /// <param name="hasBias">Whether the layer has an additive bias.</param>
    public WsLinear(long inFeatures, long outFeatures, bool hasBias = true)
        : base(nameof(WsLinear))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inFeatures, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(outFeatures, 1);
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        var bound = 1.0 / Math.Sqrt(inFeatures);
        weight = Owned.Parameter(empty(outFeatures, inFeatures).uniform_(-bound, bound));
        bias = hasBias ? Owned.Parameter(empty(outFeatures).uniform_(-bound, bound)) : null;
        RegisterComponents();
    }

    /// <summary>Input features.</summary>
    public long InFeatures { get; }

    /// <summary>Output features.</summary>
    public long OutFeatures { get; }

    /// <summary>The raw weight W, shape [out, in].</summary>
    public Parameter Weight => weight;

    /// <summary>The bias b, shape [out], or null.</summary>
    public Parameter? Bias => bias;

    /// <summary>Ŵ, the standardized weight used by the forward pass (a new tensor; dispose it).</summary>
    public Tensor StandardizedWeight() => WeightStandardization.Standardize(weight);

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        InputChecks.RequireLastDim(input, InFeatures, nameof(WsLinear));
        using var scope = NewDisposeScope();
        var output = F.linear(input, WeightStandardization.Standardize(weight), bias);
        return output.MoveToOuterDisposeScope();
    }
}
