using CovariateShift.Records;

namespace CovariateShift.Training.Analysis;

/// <summary>
/// How much a run's hidden activations moved during training, summarized over the recorded steps of a set of layers
/// (e.g. the outputs of every hidden activation function: the inputs the next layers see).
/// </summary>
/// <param name="Layers">Layers included.</param>
/// <param name="Records">Layer records with a shift (every record but each layer's first).</param>
/// <param name="MeanJensenShannon">Mean Jensen-Shannon divergence (bits) between consecutive records.</param>
/// <param name="MeanRelativeDrift">Mean of |Δ mean| / std between consecutive records: the drift in units of the spread.</param>
/// <param name="MeanAbsLogVarianceRatio">Mean of |ln variance ratio| between consecutive records (0 = variance unchanged).</param>
/// <param name="LastLayer">The deepest included layer.</param>
/// <param name="LastLayerStd">Standard deviation of the deepest layer's output at its first and last record.</param>
public sealed record ShiftSummary(
    IReadOnlyList<string> Layers, int Records, double MeanJensenShannon, double MeanRelativeDrift, double MeanAbsLogVarianceRatio,
    string LastLayer, (double First, double Last) LastLayerStd)
{
    /// <summary>
    /// Summarizes the records of the layers selected by <paramref name="include"/> (in file order; the deepest is the
    /// one that appears last at a step), e.g. <c>MetricsReader.Read(path).Layers</c>. Records without statistics (the
    /// layer did not run) or with a non-finite mean are left out.
    /// </summary>
    /// <exception cref="ArgumentException">No record matches.</exception>
    public static ShiftSummary Compute(IReadOnlyList<LayerRecord> records, Func<LayerRecord, bool> include)
    {
        ArgumentNullException.ThrowIfNull(records);
        ArgumentNullException.ThrowIfNull(include);
        var selected = records.Where(include).Where(r => r.Statistics is { } s && double.IsFinite(s.Mean)).ToList();
        if (selected.Count == 0) throw new ArgumentException("No metrics record matches the layer selection; nothing to summarize.", nameof(include));
        var layers = selected.Select(r => r.Layer).Distinct().ToList();
        var withShift = selected.Where(r => r.Shift is not null).ToList();
        static double Average(IEnumerable<double> values)
        {
            var finite = values.Where(double.IsFinite).ToList();
            return finite.Count > 0 ? finite.Average() : double.NaN;
        }
        var last = layers[^1];
        var lastRows = selected.Where(r => r.Layer == last).ToList();
        return new ShiftSummary(
            layers,
            withShift.Count,
            Average(withShift.Select(r => r.Shift!.JensenShannon)),
            Average(withShift.Select(r => r.Shift!.MeanDrift / r.Statistics!.Std)),
            Average(withShift.Select(r => Math.Abs(Math.Log(r.Shift!.VarianceRatio)))),
            last,
            (lastRows[0].Statistics!.Std, lastRows[^1].Statistics!.Std));
    }
}
