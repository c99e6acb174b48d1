using CovariateShift.Nn.Normalization;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Models;

/// <summary>
/// One hidden layer of an <see cref="Mlp"/>: <c>linear</c> → <c>norm</c> → <c>act</c> (norm before the activation) or
/// <c>linear</c> → <c>act</c> → <c>norm</c> (after). The norm is absent for <see cref="NormKind.None"/>. The linear layer
/// is a <see cref="WsLinear"/> for weight-std and has no bias when the norm cancels it (see <see cref="LayerSettings"/>).
/// <para>Input: [N, in]. Output: [N, out].</para>
/// </summary>
public sealed class MlpBlock : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> linear;
    private readonly nn.Module<Tensor, Tensor>? norm;
    private readonly nn.Module<Tensor, Tensor> act;
    private readonly NormPlacement placement;

    /// <param name="inFeatures">Input features.</param>
    /// <param name="outFeatures">Units of this layer.</param>
    /// <param name="settings">Activation, normalization and placement.</param>
    public MlpBlock(long inFeatures, long outFeatures, LayerSettings settings)
        : base(nameof(MlpBlock))
    {
        ArgumentNullException.ThrowIfNull(settings);
        linear = Layers.Linear(inFeatures, outFeatures, settings.HiddenLayerHasBias, settings.Norm);
        norm = Norms.Create(settings.Norm, NormTarget.Features, outFeatures, settings.NormOptions);
        act = settings.Activation.Create();
        placement = settings.Placement;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input) => Layers.NormAct(linear.call(input), norm, act, placement);
}
