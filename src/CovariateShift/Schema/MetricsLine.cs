using CovariateShift.Records;

namespace CovariateShift.Schema;

/// <summary>
/// One line of a metrics file (schema version <see cref="MetricsSchema.Version"/>): a layer at a recorded step. The
/// property names are those of <see cref="LayerRecord"/>, <see cref="LayerStatistics"/>, <see cref="ShiftMetrics"/>,
/// <see cref="GradientStatistics"/> and <see cref="Histogram"/>, written in snake_case by
/// <see cref="MetricsJsonContext"/>; the statistics are flattened into the line (a test checks the names match).
/// </summary>
internal sealed class MetricsLine
{
    public int Version { get; set; }
    public long Step { get; set; }
    public string? Layer { get; set; }
    public string? LayerType { get; set; }
    public bool Called { get; set; }
    public double? Loss { get; set; }
    public double? MonitorMs { get; set; }
    public double? StepMs { get; set; }
    public long? StepsSincePrevious { get; set; }
    public long? Count { get; set; }
    public double? Mean { get; set; }
    public double? Std { get; set; }
    public double? Min { get; set; }
    public double? Max { get; set; }
    public double? P15 { get; set; }
    public double? P50 { get; set; }
    public double? P85 { get; set; }
    public double? NearZeroFraction { get; set; }
    public double? DeadUnitFraction { get; set; }
    public double? SaturatedFraction { get; set; }
    public long? NanCount { get; set; }
    public long? InfCount { get; set; }
    public double? ChannelSquaredMean { get; set; }
    public double? ChannelVariance { get; set; }
    public Histogram? Histogram { get; set; }
    public ShiftMetrics? Shift { get; set; }
    public ShiftMetrics? ReferenceShift { get; set; }
    public GradientStatistics? Gradients { get; set; }

    /// <summary>The line of layer <paramref name="r"/> of <paramref name="step"/>, with the step's own fields (loss, the
    /// monitor's timing and the distance to the previous record).</summary>
    public static MetricsLine From(LayerRecord r, StepRecord step, bool withHistogram)
    {
        var line = From(r, step.Loss, withHistogram);
        line.MonitorMs = step.MonitorMs;
        line.StepMs = step.StepMs;
        line.StepsSincePrevious = step.StepsSincePrevious;
        return line;
    }

    public static MetricsLine From(LayerRecord r, double? loss, bool withHistogram)
    {
        var line = new MetricsLine
        {
            Version = MetricsSchema.Version, Step = r.Step, Layer = r.Layer, LayerType = r.LayerType, Called = r.Statistics is not null,
            Loss = loss, Shift = r.Shift, ReferenceShift = r.ReferenceShift, Gradients = r.Gradients,
        };
        if (r.Statistics is { } s)
        {
            line.Count = s.Count;
            line.Mean = s.Mean;
            line.Std = s.Std;
            line.Min = s.Min;
            line.Max = s.Max;
            line.P15 = s.P15;
            line.P50 = s.P50;
            line.P85 = s.P85;
            line.NearZeroFraction = s.NearZeroFraction;
            line.DeadUnitFraction = s.DeadUnitFraction;
            line.SaturatedFraction = s.SaturatedFraction;
            line.NanCount = s.NanCount;
            line.InfCount = s.InfCount;
            line.ChannelSquaredMean = s.ChannelSquaredMean;
            line.ChannelVariance = s.ChannelVariance;
            line.Histogram = withHistogram ? s.Histogram : null;
        }
        return line;
    }

    /// <summary>The record of this line, or null when a required field (layer, type) is missing.</summary>
    public LayerRecord? ToRecord()
    {
        if (string.IsNullOrEmpty(Layer) || LayerType is null) return null;
        LayerStatistics? stats = null;
        if (Called && Count is { } count)
        {
            stats = new LayerStatistics
            {
                Count = count,
                Mean = Mean ?? double.NaN,
                Std = Std ?? double.NaN,
                Min = Min ?? double.NaN,
                Max = Max ?? double.NaN,
                P15 = P15 ?? double.NaN,
                P50 = P50 ?? double.NaN,
                P85 = P85 ?? double.NaN,
                NearZeroFraction = NearZeroFraction ?? double.NaN,
                DeadUnitFraction = DeadUnitFraction ?? double.NaN,
                SaturatedFraction = SaturatedFraction,
                NanCount = NanCount ?? 0,
                InfCount = InfCount ?? 0,
                ChannelSquaredMean = ChannelSquaredMean,
                ChannelVariance = ChannelVariance,
                Histogram = Histogram,
            };
        }
        return new LayerRecord(Step, Layer, LayerType, stats, Shift, ReferenceShift, Gradients);
    }
}
