using CovariateShift.Nn.Normalization;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Models;

/// <summary>
/// Option-B ResNet shortcut: <c>conv</c> (1×1, stride s, a <see cref="WsConv2d"/> for weight-std, no bias when the norm
/// cancels it) → <c>norm</c> (absent for <see cref="NormKind.None"/>). No activation.
/// <para>Input: [N, C_in, H, W]. Output: [N, C_out, ⌈H/s⌉, ⌈W/s⌉].</para>
/// </summary>
public sealed class ProjectionShortcut : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> conv;
    private readonly nn.Module<Tensor, Tensor>? norm;

    /// <param name="inChannels">C_in.</param>
    /// <param name="outChannels">C_out.</param>
    /// <param name="stride">s.</param>
    /// <param name="settings">Normalization kind and options (activation and placement do not apply).</param>
    public ProjectionShortcut(long inChannels, long outChannels, long stride, LayerSettings settings)
        : base(nameof(ProjectionShortcut))
    {
        ArgumentNullException.ThrowIfNull(settings);
        conv = Layers.Conv(inChannels, outChannels, 1, stride, 0, !settings.Norm.CancelsPrecedingBias(), settings.Norm);
        norm = Norms.Create(settings.Norm, NormTarget.Channels, outChannels, settings.NormOptions);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        var x = conv.call(input);
        return norm is null ? x : norm.call(x);
    }
}
