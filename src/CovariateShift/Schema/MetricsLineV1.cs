using System.Runtime.InteropServices;
using System.Text.Json.Serialization;
using CovariateShift.Records;

namespace CovariateShift.Schema;

/// <summary>
/// A metrics line of the first format (no version field; written until schema version 2): its own field names,
/// read so that older runs stay readable.
/// </summary>
internal sealed class MetricsLineV1
{
    [JsonPropertyName("step")] public long Step { get; set; }
    [JsonPropertyName("layer")] public string? Layer { get; set; }
    [JsonPropertyName("type")] public string? LayerType { get; set; }
    [JsonPropertyName("called")] public bool Called { get; set; }
    [JsonPropertyName("loss")] public double? Loss { get; set; }
    [JsonPropertyName("count")] public long? Count { get; set; }
    [JsonPropertyName("mean")] public double? Mean { get; set; }
    [JsonPropertyName("std")] public double? Std { get; set; }
    [JsonPropertyName("min")] public double? Min { get; set; }
    [JsonPropertyName("max")] public double? Max { get; set; }
    [JsonPropertyName("p15")] public double? P15 { get; set; }
    [JsonPropertyName("p50")] public double? P50 { get; set; }
    [JsonPropertyName("p85")] public double? P85 { get; set; }
    [JsonPropertyName("near_zero")] public double? NearZero { get; set; }
    [JsonPropertyName("dead_units")] public double? DeadUnits { get; set; }
    [JsonPropertyName("saturated")] public double? Saturated { get; set; }
    [JsonPropertyName("nan")] public long? Nan { get; set; }
    [JsonPropertyName("inf")] public long? Inf { get; set; }
    [JsonPropertyName("channel_sq_mean")] public double? ChannelSquaredMean { get; set; }
    [JsonPropertyName("channel_var")] public double? ChannelVariance { get; set; }
    [JsonPropertyName("hist")] public HistogramV1? Hist { get; set; }
    [JsonPropertyName("shift")] public ShiftV1? Shift { get; set; }
    [JsonPropertyName("ref_shift")] public ShiftV1? RefShift { get; set; }
    [JsonPropertyName("grad")] public GradV1? Grad { get; set; }

    internal sealed class HistogramV1
    {
        [JsonPropertyName("low")] public double Low { get; set; }
        [JsonPropertyName("high")] public double High { get; set; }
        [JsonPropertyName("counts")] public long[] Counts { get; set; } = [];
    }

    internal sealed class ShiftV1
    {
        [JsonPropertyName("mean_drift")] public double MeanDrift { get; set; }
        [JsonPropertyName("variance_ratio")] public double VarianceRatio { get; set; }
        [JsonPropertyName("kl")] public double Kl { get; set; }
        [JsonPropertyName("js")] public double Js { get; set; }
        [JsonPropertyName("w1")] public double W1 { get; set; }

        public ShiftMetrics ToMetrics() => new(MeanDrift, VarianceRatio, Kl, Js, W1);
    }

    internal sealed class GradV1
    {
        [JsonPropertyName("norm")] public double Norm { get; set; }
        [JsonPropertyName("weight_norm")] public double WeightNorm { get; set; }
        [JsonPropertyName("ratio")] public double Ratio { get; set; }
        [JsonPropertyName("update_norm")] public double? UpdateNorm { get; set; }
    }

    /// <summary>The same line in the current shape.</summary>
    public MetricsLine ToCurrent() => new()
    {
        Version = 1, Step = Step, Layer = Layer, LayerType = LayerType, Called = Called, Loss = Loss, Count = Count,
        Mean = Mean, Std = Std, Min = Min, Max = Max, P15 = P15, P50 = P50, P85 = P85,
        NearZeroFraction = NearZero, DeadUnitFraction = DeadUnits, SaturatedFraction = Saturated, NanCount = Nan, InfCount = Inf,
        ChannelSquaredMean = ChannelSquaredMean, ChannelVariance = ChannelVariance,
        // The counts array was just deserialized and is owned by nobody else: wrapped, not copied.
        Histogram = Hist is { } h ? new Histogram(h.Low, h.High, ImmutableCollectionsMarshal.AsImmutableArray(h.Counts)) : null,
        Shift = Shift?.ToMetrics(), ReferenceShift = RefShift?.ToMetrics(),
        Gradients = Grad is { } g ? new GradientStatistics(g.Norm, g.WeightNorm, g.Ratio, g.UpdateNorm, 0) : null,
    };
}
