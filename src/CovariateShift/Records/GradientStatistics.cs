using System.Text.Json.Serialization;

namespace CovariateShift.Records;

/// <summary>
/// Gradient health of one layer's own parameters (not its children's) at one recorded step.
/// </summary>
/// <param name="GradNorm">L2 norm of the gradients of all the layer's parameters taken together, after backward.</param>
/// <param name="WeightNorm">L2 norm of the layer's parameters before the optimizer step.</param>
/// <param name="GradToWeightRatio">GradNorm / WeightNorm (NaN when WeightNorm is 0).</param>
/// <param name="UpdateNorm">L2 norm of the change the optimizer step made to the parameters; null when
/// <see cref="ActivationMonitor.Step"/> came without a preceding <see cref="ActivationMonitor.RecordGradients"/>.</param>
/// <param name="Parameters">Number of parameter elements with gradients.</param>
public sealed record GradientStatistics(
    double GradNorm,
    double WeightNorm,
    double GradToWeightRatio,
    double? UpdateNorm,
    long Parameters)
{
    /// <summary>UpdateNorm / WeightNorm: the relative size of the step (a common rule of thumb is ~1e-3).</summary>
    public double? UpdateToWeightRatio => UpdateNorm is { } u && WeightNorm > 0 ? u / WeightNorm : null;

    /// <summary>True when the gradient norm is NaN or infinite.</summary>
    [JsonIgnore]
    public bool IsNonFinite => !double.IsFinite(GradNorm);
}
