using CovariateShift.Nn.Normalization;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Models;

/// <summary>
/// A 3×3 convolution (padding 1) with its normalization and activation: <c>conv</c> → <c>norm</c> → <c>act</c>
/// (norm before the activation) or <c>conv</c> → <c>act</c> → <c>norm</c> (after). The norm is absent for
/// <see cref="NormKind.None"/>; the conv is a <see cref="WsConv2d"/> for weight-std and has no bias when the norm
/// cancels it (see <see cref="LayerSettings"/>).
/// <para>Input: [N, C_in, H, W]. Output: [N, C_out, ⌈H/s⌉, ⌈W/s⌉].</para>
/// </summary>
public sealed class ConvBlock : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> conv;
    private readonly nn.Module<Tensor, Tensor>? norm;
    private readonly nn.Module<Tensor, Tensor> act;
    private readonly NormPlacement placement;

    /// <param name="inChannels">C_in.</param>
    /// <param name="outChannels">C_out.</param>
    /// <param name="stride">Stride s of the convolution.</param>
    /// <param name="settings">Activation, normalization and placement.</param>
    public ConvBlock(long inChannels, long outChannels, long stride, LayerSettings settings)
        : base(nameof(ConvBlock))
    {
        ArgumentNullException.ThrowIfNull(settings);
        conv = Layers.Conv(inChannels, outChannels, 3, stride, 1, settings.HiddenLayerHasBias, settings.Norm);
        norm = Norms.Create(settings.Norm, NormTarget.Channels, outChannels, settings.NormOptions);
        act = settings.Activation.Create();
        placement = settings.Placement;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input) => Layers.NormAct(conv.call(input), norm, act, placement);
}
