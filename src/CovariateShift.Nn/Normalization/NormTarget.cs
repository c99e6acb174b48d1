namespace CovariateShift.Nn.Normalization;

/// <summary>What a normalization layer normalizes, which decides the concrete layer <see cref="Norms.Create"/> builds.</summary>
public enum NormTarget
{
    /// <summary>Fully connected activations of shape [N, F] (MLP hidden layers).</summary>
    Features,

    /// <summary>Convolutional feature maps of shape [N, C, H, W].</summary>
    Channels,
}
