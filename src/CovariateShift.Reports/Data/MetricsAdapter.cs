using CovariateShift.Records;
using CovariateShift.Schema;

namespace CovariateShift.Reports.Data;

/// <summary>
/// Turns a monitor's metrics.jsonl, read by the core's <see cref="MetricsReader"/> (current and first format), into
/// the report's <see cref="RunMetrics"/>: layers x steps matrices per statistic. Lines the reader could not use
/// (malformed, or a last line cut off by a killed run) are skipped and said in the notes.
/// </summary>
public static class MetricsAdapter
{
    private static readonly (string Key, Func<LayerRecord, double?> Value)[] Fields =
    [
        ("mean", r => r.Statistics?.Mean), ("std", r => r.Statistics?.Std), ("p15", r => r.Statistics?.P15),
        ("p50", r => r.Statistics?.P50), ("p85", r => r.Statistics?.P85), ("near_zero_fraction", r => r.Statistics?.NearZeroFraction),
        ("dead_unit_fraction", r => r.Statistics?.DeadUnitFraction), ("saturated_fraction", r => r.Statistics?.SaturatedFraction),
        ("mean_drift", r => r.Shift?.MeanDrift), ("variance_ratio", r => r.Shift?.VarianceRatio), ("kl_divergence", r => r.Shift?.KlDivergence),
        ("jensen_shannon", r => r.Shift?.JensenShannon), ("wasserstein1", r => r.Shift?.Wasserstein1),
        ("reference_shift_mean_drift", r => r.ReferenceShift?.MeanDrift), ("reference_shift_jensen_shannon", r => r.ReferenceShift?.JensenShannon),
        ("grad_norm", r => r.Gradients?.GradNorm), ("update_to_weight_ratio", r => r.Gradients?.UpdateToWeightRatio),
    ];

    /// <summary>
    /// Reads <paramref name="path"/>; problems that were skipped are added to <paramref name="notes"/>. Returns null
    /// when the file holds no usable line.
    /// </summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    public static RunMetrics? Read(string path, ICollection<string> notes)
    {
        ArgumentNullException.ThrowIfNull(notes);
        var contents = MetricsReader.Read(path);
        if (contents.SkippedLines > 0)
            notes.Add($"{Path.GetFileName(path)}: {contents.SkippedLines} line(s) could not be read (malformed, or a last line cut off while the run was writing); they were skipped.");
        if (contents.Steps.Count == 0) return null;

        var layers = new List<LayerInfo>();
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        var steps = contents.Steps.Select(s => s.Step).Distinct().Order().ToList();
        var stepIndex = steps.Select((s, i) => (s, i)).ToDictionary(p => p.s, p => p.i);
        foreach (var r in contents.Steps.SelectMany(s => s.Layers))
        {
            if (index.TryAdd(r.Layer, layers.Count)) layers.Add(new LayerInfo(r.Layer, r.LayerType));
        }
        var matrices = Fields.ToDictionary(f => f.Key, _ => Enumerable.Range(0, layers.Count).Select(_ => Filled(steps.Count)).ToArray(), StringComparer.Ordinal);
        var counts = new int[]?[layers.Count][];
        var ranges = new (double Low, double High)?[layers.Count];
        var loss = Filled(steps.Count);
        var monitorMs = Filled(steps.Count);
        var stepMs = Filled(steps.Count);
        var window = new long[steps.Count];
        Array.Fill(window, 1L);
        foreach (var step in contents.Steps)
        {
            int s = stepIndex[step.Step];
            if (step.Loss is { } l) loss[s] = l;
            if (step.MonitorMs is { } mm) monitorMs[s] = mm;
            if (step.StepMs is { } sm) stepMs[s] = sm;
            if (step.StepsSincePrevious is { } n and > 0) window[s] = n;
            foreach (var r in step.Layers)
            {
                int li = index[r.Layer];
                foreach (var (key, value) in Fields) matrices[key][li][s] = value(r) ?? double.NaN;
                if (r.Statistics?.Histogram is not { } h) continue;
                counts[li] ??= new int[]?[steps.Count];
                // The monitor fixes a layer's edges after its first record with a spread; earlier provisional ranges are dropped.
                if (ranges[li] is not { } range || range.Low != h.Low || range.High != h.High)
                {
                    Array.Clear(counts[li]!);
                    ranges[li] = (h.Low, h.High);
                }
                var binCounts = new int[h.Counts.Length];
                for (int b = 0; b < binCounts.Length; b++) binCounts[b] = (int)h.Counts[b];
                counts[li]![s] = binCounts;
            }
        }
        var histograms = Enumerable.Range(0, layers.Count)
            .Select(l => ranges[l] is { } r ? new LayerHistograms(r.Low, r.High, counts[l]!) : null).ToArray();
        return new RunMetrics(steps, layers, matrices, histograms, loss) { MonitorMs = monitorMs, StepMs = stepMs, Window = window };
    }

    private static double[] Filled(int n)
    {
        var a = new double[n];
        Array.Fill(a, double.NaN);
        return a;
    }
}
