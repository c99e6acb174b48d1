using CovariateShift.Records;

namespace CovariateShift.Anomalies;

/// <summary>
/// Finds anomalies in a layer record. Thresholds: NaN/Inf present; gradient norm below
/// <see cref="MonitorOptions.VanishingGradientThreshold"/> or above <see cref="MonitorOptions.ExplodingGradientThreshold"/>;
/// more than half of the units (dimension 1) near zero for the whole batch, or more than half of a sigmoid/tanh output
/// saturated; variance ratio to the previous record outside
/// [<see cref="LowVarianceRatio"/>, <see cref="HighVarianceRatio"/>].
/// </summary>
public static class AnomalyDetector
{
    /// <summary>Lower limit of the tolerated variance ratio between consecutive records.</summary>
    public const double LowVarianceRatio = 0.5;

    /// <summary>Upper limit of the tolerated variance ratio between consecutive records.</summary>
    public const double HighVarianceRatio = 2.0;

    /// <summary>Fraction of near-zero or saturated elements above which a layer is flagged.</summary>
    public const double MajorityFraction = 0.5;

    /// <summary>Anomalies of <paramref name="record"/> under <paramref name="options"/>.</summary>
    public static IEnumerable<Anomaly> Detect(LayerRecord record, MonitorOptions options)
    {
        var step = record.Step;
        var layer = record.Layer;
        if (record.Statistics is { } s)
        {
            if (s.HasNonFinite)
            {
                yield return new Anomaly(step, layer, AnomalyKind.NonFiniteActivation, s.NanCount + s.InfCount,
                    $"{s.NanCount} NaN and {s.InfCount} Inf values in the output: check the learning rate, the input data and any log/division upstream; gradient clipping or normalization may help.");
            }

            if (s.DeadUnitFraction > MajorityFraction)
            {
                yield return new Anomaly(step, layer, AnomalyKind.DeadUnits, s.DeadUnitFraction,
                    $"{s.DeadUnitFraction:P0} of the units are within {options.NearZeroThreshold} of zero for the whole batch: dead ReLUs or a collapsed signal. Check the initialization and learning rate; normalization before the activation or a leaky activation may help.");
            }

            if (s.SaturatedFraction is > MajorityFraction)
            {
                yield return new Anomaly(step, layer, AnomalyKind.Saturated, s.SaturatedFraction.Value,
                    $"{s.SaturatedFraction:P0} of the outputs are saturated (gradients through them vanish): the pre-activations are too large; normalize before the activation or reduce the initialization scale.");
            }
        }
        if (record.Shift is { } shift && double.IsFinite(shift.VarianceRatio) &&
            (shift.VarianceRatio < LowVarianceRatio || shift.VarianceRatio > HighVarianceRatio))
        {
            yield return new Anomaly(step, layer, AnomalyKind.VarianceShift, shift.VarianceRatio,
                $"Output variance changed by a factor {shift.VarianceRatio:G3} since the previous record: the layer's input distribution is moving (internal covariate shift). Consider a normalization layer or a lower learning rate.");
        }

        if (record.Gradients is { } g)
        {
            if (g.IsNonFinite)
            {
                yield return new Anomaly(step, layer, AnomalyKind.NonFiniteGradient, g.GradNorm,
                    "The gradient is NaN or infinite: check the loss for NaN, lower the learning rate, clip gradients.");
            }
            else if (g.GradNorm < options.VanishingGradientThreshold)
            {
                yield return new Anomaly(step, layer, AnomalyKind.VanishingGradient, g.GradNorm,
                    $"Gradient norm {g.GradNorm:G3} is below {options.VanishingGradientThreshold:G3}: this layer barely learns. Check saturating activations, initialization and depth; normalization or residual connections help.");
            }
            else if (g.GradNorm > options.ExplodingGradientThreshold)
            {
                yield return new Anomaly(step, layer, AnomalyKind.ExplodingGradient, g.GradNorm,
                    $"Gradient norm {g.GradNorm:G3} is above {options.ExplodingGradientThreshold:G3}: lower the learning rate, clip gradients or add normalization.");
            }
        }
    }

    /// <summary>The anomaly for a hooked layer that did not fire during a recorded training step.</summary>
    public static Anomaly NotCalled(long step, string layer) => new(step, layer, AnomalyKind.LayerNotCalled, 0,
        "The layer did not run during a recorded training step. TorchSharp fires hooks only when a layer is invoked with call(); " +
        "a custom module that calls forward() on its children (or a layer that is not used) is invisible to the monitor.");
}
