using System.Collections.Immutable;
using CovariateShift.Capture;

namespace CovariateShift.Statistics;

/// <summary>
/// Mutable accumulator that an engine path (the CPU kernel or a parsed device pack) fills for one output tensor; the
/// engine then freezes it into an immutable <see cref="LayerSummary"/>. Moments are kept about <see cref="Pivot"/>
/// (the first finite element) so the variance does not suffer from cancellation when the mean is large compared
/// with the spread.
/// </summary>
internal sealed class ActivationSummary
{
    public long Count;
    public long FiniteCount;

    /// <summary>The value the moments are accumulated about (not a shift metric).</summary>
    public double Pivot;

    /// <summary>Sum over finite elements of (x - Pivot).</summary>
    public double PivotedSum;

    /// <summary>Sum over finite elements of (x - Pivot)^2.</summary>
    public double PivotedSumSquares;
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

    // The CPU kernel's names for the pivot fields (Statistics/CpuKernel.cs is rewritten separately; it can move to
    // the Pivot names and these three aliases go).
    public double Shift { get => Pivot; set => Pivot = value; }
    public double ShiftedSum { get => PivotedSum; set => PivotedSum = value; }
    public double ShiftedSumSquares { get => PivotedSumSquares; set => PivotedSumSquares = value; }

    public double Mean => FiniteCount > 0 ? Pivot + PivotedSum / FiniteCount : double.NaN;

    public double Variance
    {
        get
        {
            if (FiniteCount == 0) return double.NaN;
            var m = PivotedSum / FiniteCount;
            return Math.Max(0.0, PivotedSumSquares / FiniteCount - m * m);
        }
    }

    /// <summary>The immutable hand-off, with the finite sampled values <paramref name="sample"/>.</summary>
    public LayerSummary Freeze(ImmutableArray<float> sample) => new()
    {
        Count = Count,
        FiniteCount = FiniteCount,
        Mean = Mean,
        Variance = Variance,
        Min = FiniteCount > 0 ? Min : double.NaN,
        Max = FiniteCount > 0 ? Max : double.NaN,
        NearZero = NearZero,
        Units = Units,
        DeadUnits = DeadUnits,
        Saturated = Saturated,
        Nan = Nan,
        Inf = Inf,
        ChannelSquaredMean = ChannelSquaredMean,
        ChannelVariance = ChannelVariance,
        Sample = sample,
    };
}
