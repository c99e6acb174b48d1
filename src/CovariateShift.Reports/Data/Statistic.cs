namespace CovariateShift.Reports.Data;

/// <summary>A per-layer, per-step quantity the report can colour a heatmap with.</summary>
/// <param name="Key">Identifier used in the report's data and URLs (e.g. "std", "kl").</param>
/// <param name="Label">What the reader sees in the statistic picker.</param>
/// <param name="Positive">True when the values are never negative, so a logarithmic colour scale can fit.</param>
public sealed record Statistic(string Key, string Label, bool Positive)
{
    /// <summary>Every statistic, in picker order: activation statistics, shift from the previous record, shift from the reference snapshot, gradients.</summary>
    public static IReadOnlyList<Statistic> All { get; } =
    [
        new("mean", "mean", false),
        new("std", "standard deviation", true),
        new("p15", "15th percentile", false),
        new("p50", "median (50th percentile)", false),
        new("p85", "85th percentile", false),
        new("near_zero", "near-zero fraction (|x| <= 0.05)", true),
        new("dead_units", "dead-unit fraction", true),
        new("saturated", "saturated fraction (sigmoid/tanh)", true),
        new("mean_drift", "mean drift |dE[x]| vs previous record", true),
        new("variance_ratio", "variance ratio vs previous record", true),
        new("kl", "KL divergence vs previous record (nats)", true),
        new("js", "Jensen-Shannon vs previous record (bits)", true),
        new("w1", "Wasserstein-1 vs previous record", true),
        new("ref_mean_drift", "reference shift: mean drift vs reference", true),
        new("ref_js", "reference shift: Jensen-Shannon vs reference (bits)", true),
        new("grad_norm", "gradient norm", true),
        new("update_ratio", "update / weight norm", true),
        new("ics_l2", "gradient ICS ||G - G'|| (ics probe)", true),
        new("ics_cos", "gradient ICS cos(G, G') (ics probe)", false),
    ];

    /// <summary>The statistic with <paramref name="key"/>.</summary>
    /// <exception cref="ArgumentException">No statistic has that key; the message lists the keys there are.</exception>
    public static Statistic Find(string key) =>
        All.FirstOrDefault(s => string.Equals(s.Key, key, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"Unknown statistic '{key}'; expected one of: {string.Join(", ", All.Select(s => s.Key))}.", nameof(key));
}
