using CovariateShift.Nn.Normalization;

namespace CovariateShift.Nn.Models;

/// <summary>How the hidden layers of a model are built: nonlinearity, normalization and its placement, weight init.</summary>
public sealed record LayerSettings
{
    /// <summary>The nonlinearity after every hidden layer. Default relu.</summary>
    public ActivationKind Activation { get; init; } = ActivationKind.Relu;

    /// <summary>The normalization of every hidden layer. Default none.</summary>
    public NormKind Norm { get; init; } = NormKind.None;

    /// <summary>Normalization before (default) or after the activation.</summary>
    public NormPlacement Placement { get; init; } = NormPlacement.BeforeActivation;

    /// <summary>Normalization hyper-parameters.</summary>
    public NormOptions NormOptions { get; init; } = new();

    /// <summary>Weight initialization. Default: TorchSharp's own.</summary>
    public WeightInit Init { get; init; } = WeightInit.Default;

    /// <summary>
    /// Whether a linear/conv layer followed by this normalization gets a bias: not when the normalization comes right
    /// after it and cancels a per-channel shift (see <see cref="NormKinds.CancelsPrecedingBias"/>), otherwise yes.
    /// </summary>
    internal bool HiddenLayerHasBias =>
        !(Placement == NormPlacement.BeforeActivation && Norm.CancelsPrecedingBias());
}
