namespace CovariateShift.Reports.Data;

/// <summary>A per-layer, per-step quantity the report can colour a heatmap with.</summary>
/// <param name="Key">Identifier used in the report's data and URLs (the metrics schema's names, e.g. "std", "kl_divergence").</param>
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
        new("near_zero_fraction", "near-zero fraction (|x| <= 0.05)", true),
        new("dead_unit_fraction", "dead-unit fraction", true),
        new("saturated_fraction", "saturated fraction (sigmoid/tanh)", true),
        new("mean_drift", "mean drift |dE[x]| vs previous record", true),
        new("variance_ratio", "variance ratio vs previous record", true),
        new("kl_divergence", "KL divergence vs previous record (nats)", true),
        new("jensen_shannon", "Jensen-Shannon vs previous record (bits)", true),
        new("wasserstein1", "Wasserstein-1 vs previous record", true),
        new("reference_shift_mean_drift", "reference shift: mean drift vs reference", true),
        new("reference_shift_jensen_shannon", "reference shift: Jensen-Shannon vs reference (bits)", true),
        new("grad_norm", "gradient norm", true),
        new("update_to_weight_ratio", "update / weight norm", true),
        new("ics_l2", "gradient ICS ||G - G'|| (ics probe)", true),
        new("ics_cos", "gradient ICS cos(G, G') (ics probe)", false),
    ];

    /// <summary>The statistic with <paramref name="key"/>.</summary>
    /// <exception cref="ArgumentException">No statistic has that key; the message lists the keys there are.</exception>
    /// <remarks>The keys are the metrics schema's names (snake_case; a reference-shift value prefixed
    /// <c>reference_shift_</c>); the short keys of earlier versions (kl, js, w1, near_zero, ...) are still accepted.</remarks>
    public static Statistic Find(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var k = Legacy.TryGetValue(key.Trim().ToLowerInvariant(), out var current) ? current : key.Trim();
        return All.FirstOrDefault(s => string.Equals(s.Key, k, StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"Unknown statistic '{key}'; expected one of: {string.Join(", ", All.Select(s => s.Key))}.", nameof(key));
    }

    /// <summary>Keys of earlier versions and the schema name each stands for.</summary>
    private static readonly Dictionary<string, string> Legacy = new(StringComparer.Ordinal)
    {
        ["near_zero"] = "near_zero_fraction", ["dead_units"] = "dead_unit_fraction", ["saturated"] = "saturated_fraction",
        ["kl"] = "kl_divergence", ["js"] = "jensen_shannon", ["w1"] = "wasserstein1",
        ["ref_mean_drift"] = "reference_shift_mean_drift", ["ref_js"] = "reference_shift_jensen_shannon", ["update_ratio"] = "update_to_weight_ratio",
    };
}
