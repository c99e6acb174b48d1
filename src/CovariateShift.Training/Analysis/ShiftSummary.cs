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
    /// Summarizes the rows of the layers selected by <paramref name="include"/> (in file order; the deepest is the one
    /// that appears last at a step).
    /// </summary>
    /// <exception cref="ArgumentException">No row matches.</exception>
    public static ShiftSummary Compute(IReadOnlyList<MetricsRow> rows, Func<MetricsRow, bool> include)
    {
        var selected = rows.Where(include).Where(r => double.IsFinite(r.Mean)).ToList();
        if (selected.Count == 0) throw new ArgumentException("No metrics row matches the layer selection; nothing to summarize.");
        var layers = selected.Select(r => r.Layer).Distinct().ToList();
        var withShift = selected.Where(r => r.JensenShannon is not null && r.MeanDrift is not null && r.VarianceRatio is not null).ToList();
        double Average(IEnumerable<double> values)
        {
            var finite = values.Where(double.IsFinite).ToList();
            return finite.Count > 0 ? finite.Average() : double.NaN;
        }
        var last = layers[^1];
        var lastRows = selected.Where(r => r.Layer == last).ToList();
        return new ShiftSummary(
            layers,
            withShift.Count,
            Average(withShift.Select(r => r.JensenShannon!.Value)),
            Average(withShift.Select(r => r.MeanDrift!.Value / r.Std)),
            Average(withShift.Select(r => Math.Abs(Math.Log(r.VarianceRatio!.Value)))),
            last,
            (lastRows[0].Std, lastRows[^1].Std));
    }
}
