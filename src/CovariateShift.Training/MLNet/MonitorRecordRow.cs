namespace CovariateShift.Training.MLNet;

/// <summary>
/// One monitored layer at one recorded step, flattened for ML.NET (<see cref="CovariateShiftMlpModel.RecordsAsDataView"/>):
/// the fields of <see cref="Records.LayerRecord"/> and its statistics, shift and reference shift. Missing values
/// (a layer that did not run, the first record's shift, no reference) are NaN.
/// </summary>
public sealed class MonitorRecordRow
{
    /// <summary>Training step (0-based optimizer step).</summary>
    public long Step { get; set; }

    /// <summary>Dotted layer name.</summary>
    public string Layer { get; set; } = "";

    /// <summary>Module type (Linear, ReLU, BatchNorm1d, ...).</summary>
    public string LayerType { get; set; } = "";

    /// <summary>Training loss of the step.</summary>
    public float Loss { get; set; }

    /// <summary>Mean of the layer's output.</summary>
    public float Mean { get; set; }

    /// <summary>Population standard deviation of the output.</summary>
    public float Std { get; set; }

    /// <summary>Smallest finite element.</summary>
    public float Min { get; set; }

    /// <summary>Largest finite element.</summary>
    public float Max { get; set; }

    /// <summary>15th percentile.</summary>
    public float P15 { get; set; }

    /// <summary>Median.</summary>
    public float P50 { get; set; }

    /// <summary>85th percentile.</summary>
    public float P85 { get; set; }

    /// <summary>Fraction of elements near zero.</summary>
    public float NearZero { get; set; }

    /// <summary>Fraction of units near zero for the whole batch.</summary>
    public float DeadUnits { get; set; }

    /// <summary>Step-to-step mean drift.</summary>
    public float MeanDrift { get; set; }

    /// <summary>Step-to-step variance ratio.</summary>
    public float VarianceRatio { get; set; }

    /// <summary>Step-to-step KL divergence (nats).</summary>
    public float Kl { get; set; }

    /// <summary>Step-to-step Jensen-Shannon divergence (bits).</summary>
    public float Js { get; set; }

    /// <summary>Step-to-step Wasserstein-1 distance.</summary>
    public float W1 { get; set; }

    /// <summary>Mean drift from the reference snapshot.</summary>
    public float RefMeanDrift { get; set; }

    /// <summary>KL divergence from the reference snapshot.</summary>
    public float RefKl { get; set; }

    /// <summary>Gradient L2 norm of the layer's own parameters.</summary>
    public float GradNorm { get; set; }

    /// <summary>Gradient norm / weight norm.</summary>
    public float GradToWeight { get; set; }

    /// <summary>One row per layer of every record, in step then model order.</summary>
    public static IEnumerable<MonitorRecordRow> From(IEnumerable<Records.StepRecord> records)
    {
        ArgumentNullException.ThrowIfNull(records);
        foreach (var r in records)
        {
            foreach (var l in r.Layers)
            {
                var s = l.Statistics;
                yield return new MonitorRecordRow
                {
                    Step = l.Step, Layer = l.Layer, LayerType = l.LayerType, Loss = F(r.Loss),
                    Mean = F(s?.Mean), Std = F(s?.Std), Min = F(s?.Min), Max = F(s?.Max), P15 = F(s?.P15), P50 = F(s?.P50), P85 = F(s?.P85),
                    NearZero = F(s?.NearZeroFraction), DeadUnits = F(s?.DeadUnitFraction),
                    MeanDrift = F(l.Shift?.MeanDrift), VarianceRatio = F(l.Shift?.VarianceRatio), Kl = F(l.Shift?.KlDivergence),
                    Js = F(l.Shift?.JensenShannon), W1 = F(l.Shift?.Wasserstein1),
                    RefMeanDrift = F(l.ReferenceShift?.MeanDrift), RefKl = F(l.ReferenceShift?.KlDivergence),
                    GradNorm = F(l.Gradients?.GradNorm), GradToWeight = F(l.Gradients?.GradToWeightRatio),
                };
            }
        }
    }

    private static float F(double? v) => v is { } d ? (float)d : float.NaN;
}
