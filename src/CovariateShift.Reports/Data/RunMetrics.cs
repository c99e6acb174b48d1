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
    /// <summary>The monitor's own time per training step at each recorded step (metrics.jsonl's <c>monitor_ms</c>, an
    /// average over the steps since the previous record; NaN where the file has none: written before the monitor timed itself).</summary>
    public IReadOnlyList<double> MonitorMs { get; init; } = [];

    /// <summary>Wall time per training step at each recorded step (<c>step_ms</c>, the same window as <see cref="MonitorMs"/>; NaN where absent).</summary>
    public IReadOnlyList<double> StepMs { get; init; } = [];

    /// <summary>Steps each record's timing window spans (<c>steps_since_previous</c>; 1 for the first record and where absent).</summary>
    public IReadOnlyList<long> Window { get; init; } = [];

    /// <summary>The monitor's share of the step time at recorded step index <paramref name="step"/>: MonitorMs / StepMs, NaN when not measured.</summary>
    public double OverheadShare(int step) =>
        step < MonitorMs.Count && step < StepMs.Count && StepMs[step] > 0 && double.IsFinite(MonitorMs[step]) ? MonitorMs[step] / StepMs[step] : double.NaN;

    /// <summary>
    /// The monitor's share of the training time over the whole run: the sum of <c>monitor_ms</c> x window over the sum of
    /// <c>step_ms</c> x window, over the records that carry both (each record's values are per-step averages over its
    /// window). Null when no record carries them.
    /// </summary>
    public double? TotalOverheadShare()
    {
        double monitor = 0, step = 0;
        for (int i = 0; i < Math.Min(MonitorMs.Count, StepMs.Count); i++)
        {
            if (!double.IsFinite(MonitorMs[i]) || !(StepMs[i] > 0)) continue;
            long n = i < Window.Count ? Window[i] : 1;
            monitor += MonitorMs[i] * n;
            step += StepMs[i] * n;
        }
        return step > 0 ? monitor / step : null;
    }

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
