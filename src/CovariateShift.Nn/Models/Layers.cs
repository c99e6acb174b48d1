using CovariateShift.Nn.Normalization;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Models;

/// <summary>Linear and conv layers that become their weight-standardized variants when the norm is weight-std.</summary>
internal static class Layers
{
    public static nn.Module<Tensor, Tensor> Linear(long inFeatures, long outFeatures, bool hasBias, NormKind norm) =>
        norm == NormKind.WeightStd
            ? new WsLinear(inFeatures, outFeatures, hasBias)
            : nn.Linear(inFeatures, outFeatures, hasBias);

    public static nn.Module<Tensor, Tensor> Conv(long inChannels, long outChannels, long kernelSize, long stride, long padding, bool hasBias, NormKind norm) =>
        norm == NormKind.WeightStd
            ? new WsConv2d(inChannels, outChannels, kernelSize, stride, padding, hasBias)
            : nn.Conv2d(inChannels, outChannels, kernelSize, stride, padding, bias: hasBias);

    /// <summary>norm → act (before) or act → norm (after); a null norm leaves just the activation.</summary>
    public static Tensor NormAct(Tensor x, nn.Module<Tensor, Tensor>? norm, nn.Module<Tensor, Tensor> act, NormPlacement placement)
    {
        if (norm is null)
        {
            return act.call(x);
        }

        return placement == NormPlacement.BeforeActivation ? act.call(norm.call(x)) : norm.call(act.call(x));
    }
}
