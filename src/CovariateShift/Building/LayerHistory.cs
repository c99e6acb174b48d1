using CovariateShift.Records;

namespace CovariateShift.Building;

/// <summary>
/// What the record builder remembers about one layer between recorded steps: its previous statistics (for
/// <see cref="LayerRecord.Shift"/>), the reference snapshot (for <see cref="LayerRecord.ReferenceShift"/>), the fixed
/// histogram range and the warned-once flags. Owned and written by <see cref="RecordBuilder"/> only.
/// </summary>
internal sealed class LayerHistory
{
    /// <summary>Statistics of the layer's latest record with statistics.</summary>
    public LayerStatistics? Previous { get; set; }

    /// <summary>The reference snapshot, or null.</summary>
    public LayerStatistics? Reference { get; set; }

    /// <summary>Histogram edges, fixed at the first record whose finite values have a spread.</summary>
    public (double Low, double High)? HistogramRange { get; set; }

    /// <summary>Where the sample's percentiles were at the last record (a speed hint for the next one; never changes a value).</summary>
    public Statistics.PercentileBrackets Brackets { get; } = new();

    /// <summary>A <see cref="AnomalyKind.LayerNotCalled"/> anomaly was reported (it is reported once).</summary>
    public bool WarnedNotCalled { get; set; }
}
