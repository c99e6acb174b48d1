using System.Text.Json.Serialization;

namespace CovariateShift.Records;

/// <summary>
/// Statistics of one layer's output over one recorded training step (one mini-batch).
/// </summary>
/// <remarks>
/// Exact over every element of the output: <see cref="Count"/>, <see cref="Mean"/>, <see cref="Std"/>,
/// <see cref="Min"/>, <see cref="Max"/>, <see cref="NearZeroFraction"/>, <see cref="DeadUnitFraction"/>,
/// <see cref="SaturatedFraction"/>, <see cref="NanCount"/>, <see cref="InfCount"/> and the channel statistics. The
/// moments, extremes and channel statistics are taken over the finite elements (NaN and ±Inf are counted, not averaged
/// in); the fractions are over all elements (a NaN is neither near zero nor saturated).
/// <see cref="P15"/>, <see cref="P50"/>, <see cref="P85"/> and <see cref="Histogram"/> are computed on a fixed
/// stratified sample of at most <see cref="MonitorOptions.SampleSize"/> elements (exact when the output is
/// no larger than the sample).
/// </remarks>
public sealed record LayerStatistics
{
    /// <summary>Number of elements in the output tensor.</summary>
    public required long Count { get; init; }

    /// <summary>Mean of the finite elements.</summary>
    public required double Mean { get; init; }

    /// <summary>Population standard deviation (divisor n) of the finite elements.</summary>
    public required double Std { get; init; }

    /// <summary>Smallest finite element.</summary>
    public required double Min { get; init; }

    /// <summary>Largest finite element.</summary>
    public required double Max { get; init; }

    /// <summary>15th percentile (linear interpolation between order statistics, as numpy's default).</summary>
    public required double P15 { get; init; }

    /// <summary>Median.</summary>
    public required double P50 { get; init; }

    /// <summary>85th percentile.</summary>
    public required double P85 { get; init; }

    /// <summary>Fraction of all elements with |x| &lt;= <see cref="MonitorOptions.NearZeroThreshold"/> (fastai's near_zero).</summary>
    public required double NearZeroFraction { get; init; }

    /// <summary>Fraction of the units along dimension 1 (features of [N, F], channels of [N, C, ...]; a 1-D output is one
    /// unit) whose every element in the batch is near zero: dead ReLUs, collapsed channels.</summary>
    public required double DeadUnitFraction { get; init; }

    /// <summary>For sigmoid and tanh layers: fraction of elements within 1% of the output range of a bound (sigmoid:
    /// x &lt;= 0.01 or x &gt;= 0.99; tanh: |x| &gt;= 0.98). Null for other layers.</summary>
    public double? SaturatedFraction { get; init; }

    /// <summary>Number of NaN elements.</summary>
    public long NanCount { get; init; }

    /// <summary>Number of +Inf or -Inf elements.</summary>
    public long InfCount { get; init; }

    /// <summary>4-D outputs [N, C, H, W] only: mean over channels of the squared channel mean (channel mean over N, H,
    /// W), Brock et al. 2021. Null otherwise.</summary>
    public double? ChannelSquaredMean { get; init; }

    /// <summary>4-D outputs only: mean over channels of the channel variance (divisor N*H*W). Null otherwise.</summary>
    public double? ChannelVariance { get; init; }

    /// <summary>Histogram of the sampled finite values with the layer's fixed edges. Always set in the monitor's
    /// records; null in records read from a metrics file line written without one (see
    /// <see cref="MonitorOptions.JsonLinesHistogramEvery"/>).</summary>
    public Histogram? Histogram { get; init; }

    /// <summary>Population variance of the finite elements.</summary>
    [JsonIgnore]
    public double Variance => Std * Std;

    /// <summary>True when the output held at least one NaN or Inf.</summary>
    [JsonIgnore]
    public bool HasNonFinite => NanCount > 0 || InfCount > 0;
}
