namespace CovariateShift.Statistics;

/// <summary>
/// Raw per-layer reductions of one output tensor, as produced by either engine path, before they are turned into
/// <see cref="Records.LayerStatistics"/>. Moments are kept about <see cref="Shift"/> (the first element when finite)
/// so the variance does not suffer from cancellation when the mean is large compared with the spread.
/// </summary>
internal sealed class ActivationSummary
{
    public long Count;
    public long FiniteCount;
    public double Shift;
    /// <summary>Sum over finite elements of (x - Shift).</summary>
    public double ShiftedSum;
    /// <summary>Sum over finite elements of (x - Shift)^2.</summary>
    public double ShiftedSumSquares;
    public double Min = double.PositiveInfinity;
    public double Max = double.NegativeInfinity;
    public long NearZero;
    /// <summary>Units along dimension 1 (features or channels; 1 for a 1-D output).</summary>
    public long Units;
    /// <summary>Units all of whose elements in the batch are near zero.</summary>
    public long DeadUnits;
    public long Saturated;
    public long Nan;
    public long Inf;
    public double? ChannelSquaredMean;
    public double? ChannelVariance;
    /// <summary>Finite sampled values; only the first <see cref="SampleCount"/> entries are valid.</summary>
    public float[] Sample = [];
    public int SampleCount;

    public double Mean => FiniteCount > 0 ? Shift + ShiftedSum / FiniteCount : double.NaN;

    public double Variance
    {
        get
        {
            if (FiniteCount == 0) return double.NaN;
            var m = ShiftedSum / FiniteCount;
            return Math.Max(0.0, ShiftedSumSquares / FiniteCount - m * m);
        }
    }
}
