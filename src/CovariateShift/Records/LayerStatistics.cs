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
/// <param name="Count">Number of elements in the output tensor.</param>
/// <param name="Mean">Mean of the finite elements.</param>
/// <param name="Std">Population standard deviation (divisor n) of the finite elements.</param>
/// <param name="Min">Smallest finite element.</param>
/// <param name="Max">Largest finite element.</param>
/// <param name="P15">15th percentile (linear interpolation between order statistics, as numpy's default).</param>
/// <param name="P50">Median.</param>
/// <param name="P85">85th percentile.</param>
/// <param name="NearZeroFraction">Fraction of all elements with |x| &lt;= <see cref="MonitorOptions.NearZeroThreshold"/> (fastai's near_zero).</param>
/// <param name="DeadUnitFraction">Fraction of the units along dimension 1 (features of [N, F], channels of [N, C, ...]; a 1-D
/// output is one unit) whose every element in the batch is near zero: dead ReLUs, collapsed channels.</param>
/// <param name="SaturatedFraction">For sigmoid and tanh layers: fraction of elements within 1% of the output range of a bound
/// (sigmoid: x &lt;= 0.01 or x &gt;= 0.99; tanh: |x| &gt;= 0.98). Null for other layers.</param>
/// <param name="NanCount">Number of NaN elements.</param>
/// <param name="InfCount">Number of +Inf or -Inf elements.</param>
/// <param name="ChannelSquaredMean">4-D outputs [N, C, H, W] only: mean over channels of the squared channel mean
/// (channel mean over N, H, W), Brock et al. 2021. Null otherwise.</param>
/// <param name="ChannelVariance">4-D outputs only: mean over channels of the channel variance (divisor N*H*W). Null otherwise.</param>
/// <param name="Histogram">Histogram of the sampled finite values with the layer's fixed edges.</param>
public sealed record LayerStatistics(
    long Count,
    double Mean,
    double Std,
    double Min,
    double Max,
    double P15,
    double P50,
    double P85,
    double NearZeroFraction,
    double DeadUnitFraction,
    double? SaturatedFraction,
    long NanCount,
    long InfCount,
    double? ChannelSquaredMean,
    double? ChannelVariance,
    Histogram Histogram)
{
    /// <summary>Population variance of the finite elements.</summary>
    public double Variance => Std * Std;

    /// <summary>True when the output held at least one NaN or Inf.</summary>
    public bool HasNonFinite => NanCount > 0 || InfCount > 0;
}
