namespace CovariateShift.Capture;

/// <summary>
/// Gradient reductions of one layer's own parameters at one recorded step, on the host: sums of squares of the
/// gradients, of the parameters before the optimizer step and of the update the step made. Immutable.
/// </summary>
/// <param name="GradSquares">Sum of squared gradient elements.</param>
/// <param name="WeightSquares">Sum of squared parameter elements (before the optimizer step).</param>
/// <param name="UpdateSquares">Sum of squared parameter changes made by the optimizer step; NaN when a parameter was
/// replaced and cannot be compared; null when the step was not measured.</param>
/// <param name="Elements">Parameter elements with gradients.</param>
internal sealed record GradientSums(double GradSquares, double WeightSquares, double? UpdateSquares, long Elements);
