using CovariateShift.Statistics;

namespace CovariateShift.Capture;

/// <summary>
/// What the stages know about a monitored layer without TorchSharp: its position, dotted name and module type. The
/// record builder works on these alone, so it can be tested without a model.
/// </summary>
/// <param name="Index">Position among the monitored layers (model order, 0-based).</param>
/// <param name="Name">Dotted <c>named_modules()</c> name.</param>
/// <param name="LayerType">Module type name (e.g. Linear, BatchNorm2d, ReLU).</param>
internal sealed record LayerDescriptor(int Index, string Name, string LayerType)
{
    private static readonly HashSet<string> NonNegativeTypes = ["ReLU", "ReLU6", "Softplus", "Softmax", "Hardsigmoid"];

    /// <summary>Saturation bounds for sigmoid/tanh layers; null for unbounded layers.</summary>
    public SaturationBounds? Saturation { get; } = SaturationBounds.ForLayerType(LayerType);

    /// <summary>The layer's output cannot be negative (ReLU-like): its histogram range starts at 0.</summary>
    public bool NonNegative { get; } = NonNegativeTypes.Contains(LayerType);
}
