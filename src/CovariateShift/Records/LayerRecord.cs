namespace CovariateShift.Records;

/// <summary>One layer at one recorded step: what its output looked like and how much it moved.</summary>
/// <param name="Step">Training step index (0-based, advanced by <see cref="ActivationMonitor.Step"/>).</param>
/// <param name="Layer">Dotted layer name as given by <c>named_modules()</c>.</param>
/// <param name="LayerType">Module type name (e.g. Linear, BatchNorm2d, ReLU).</param>
/// <param name="Statistics">Output statistics; null when the layer did not run during this step.</param>
/// <param name="Shift">Shift from the previous recorded step of this layer; null on its first record.</param>
/// <param name="ReferenceShift">Shift from the reference snapshot; null when no reference is captured.</param>
/// <param name="Gradients">Gradient health; null when gradients were not recorded or the layer has no trainable parameters.</param>
public sealed record LayerRecord(
    long Step,
    string Layer,
    string LayerType,
    LayerStatistics? Statistics,
    ShiftMetrics? Shift,
    ShiftMetrics? ReferenceShift,
    GradientStatistics? Gradients);
