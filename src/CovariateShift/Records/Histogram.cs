using System.Collections.Immutable;
using System.Text.Json.Serialization;

namespace CovariateShift.Records;

/// <summary>
/// A histogram with fixed, equal-width bins over [<see cref="Low"/>, <see cref="High"/>) plus an underflow
/// and an overflow bin. <see cref="Counts"/> has <c>Bins + 2</c> entries:
/// <c>Counts[0]</c> = values &lt; Low, <c>Counts[1..Bins]</c> = the bins, <c>Counts[Bins + 1]</c> = values &gt;= High.
/// The edges of a layer's histogram are chosen once (at the first recorded step) and then stay fixed, so
/// histograms of one layer are comparable across steps.
/// </summary>
public sealed record Histogram(double Low, double High, ImmutableArray<long> Counts)
{
    /// <summary>Number of interior bins (without underflow and overflow).</summary>
    [JsonIgnore]
    public int Bins => Counts.Length - 2;

    /// <summary>Width of one interior bin.</summary>
    [JsonIgnore]
    public double BinWidth => (High - Low) / Bins;

    /// <summary>Total number of values counted (all bins, underflow and overflow included).</summary>
    [JsonIgnore]
    public long Total => Counts.Sum();

    /// <summary>Values below <see cref="Low"/>.</summary>
    [JsonIgnore]
    public long Underflow => Counts[0];

    /// <summary>Values at or above <see cref="High"/>.</summary>
    [JsonIgnore]
    public long Overflow => Counts[^1];

    /// <summary>Lower edge of interior bin <paramref name="bin"/> (0-based).</summary>
    public double Edge(int bin) => Low + bin * BinWidth;
}
