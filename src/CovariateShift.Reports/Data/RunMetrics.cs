namespace CovariateShift.Reports.Data;

/// <summary>A monitored layer of a run, in network order.</summary>
/// <param name="Name">Dotted layer name (e.g. "layers.2.act").</param>
/// <param name="Type">Module type name (e.g. "Sigmoid", "BatchNorm1d").</param>
public sealed record LayerInfo(string Name, string Type);

/// <summary>A layer's activation histograms over the recorded steps (fixed edges per layer).</summary>
/// <param name="Low">Low edge of the interior bins.</param>
/// <param name="High">High edge of the interior bins.</param>
/// <param name="Counts">Per recorded step (aligned with <see cref="RunMetrics.Steps"/>): the bin counts, underflow
/// first and overflow last; null where the layer has no histogram at that step.</param>
public sealed record LayerHistograms(double Low, double High, IReadOnlyList<int[]?> Counts)
{
    /// <summary>Whether step index <paramref name="step"/> has counts.</summary>
    public bool Has(int step) => Counts[step] is not null;
}

/// <summary>
/// The report's view of one run's metrics.jsonl: layers in network order, recorded steps in order, and for every
/// <see cref="Statistic"/> a layers x steps matrix (NaN where a value is missing: a layer's first record has no shift,
/// a layer without parameters has no gradient, a layer that did not run has nothing).
/// </summary>
/// <param name="Steps">Recorded steps, ascending.</param>
/// <param name="Layers">Layers in the order of their first appearance (the monitor writes network order).</param>
/// <param name="Values">Statistic key to values[layer][step index].</param>
/// <param name="Histograms">Per layer (aligned with <paramref name="Layers"/>); null for a layer that never had one.</param>
/// <param name="Loss">Training loss at each recorded step (NaN where not written).</param>
public sealed record RunMetrics(
    IReadOnlyList<long> Steps,
    IReadOnlyList<LayerInfo> Layers,
    IReadOnlyDictionary<string, double[][]> Values,
    IReadOnlyList<LayerHistograms?> Histograms,
    IReadOnlyList<double> Loss)
{
    /// <summary>Values of <paramref name="statistic"/> for layer index <paramref name="layer"/> (one per step).</summary>
    public double[] Series(string statistic, int layer) => Values[statistic][layer];

    /// <summary>Index of the layer named <paramref name="name"/>, or -1.</summary>
    public int LayerIndex(string name)
    {
        for (int i = 0; i < Layers.Count; i++)
        {
            if (Layers[i].Name == name) return i;
        }
        return -1;
    }
}
