using System.Globalization;
using CovariateShift.Files;
using CovariateShift.Reports.Data;
using ScottPlot;

namespace CovariateShift.Reports.Figures;

/// <summary>
/// PNG exports for READMEs and papers (ScottPlot): per-run heatmaps of a statistic on one shared colour scale, and the
/// 15/50/85th percentiles of one layer over training with the runs overlaid.
/// </summary>
public static class PngFigures
{
    private static readonly Color[] RunColors =
    [
        Color.FromHex("#1f77b4"), Color.FromHex("#d62728"), Color.FromHex("#2ca02c"), Color.FromHex("#ff7f0e"), Color.FromHex("#9467bd"),
        Color.FromHex("#8c564b"), Color.FromHex("#e377c2"), Color.FromHex("#7f7f7f"), Color.FromHex("#bcbd22"), Color.FromHex("#17becf"),
    ];

    /// <summary>
    /// Writes one heatmap PNG per run with metrics (layers x recorded steps, colour = <paramref name="statistic"/>) on a
    /// colour scale shared by all of them: the 1st-99th percentile of the values, log10 when every value is positive
    /// and they span more than two decades. Returns the paths written.
    /// </summary>
    public static IReadOnlyList<string> Heatmaps(IReadOnlyList<RunData> runs, string statistic, string pathPrefix, int maxColumns = 400)
    {
        ArgumentNullException.ThrowIfNull(runs);
        var stat = Statistic.Find(statistic);
        var all = new List<double>();
        foreach (var r in runs)
        {
            if (r.Metrics?.Values.GetValueOrDefault(stat.Key) is not { } m) continue;
            foreach (var row in m) all.AddRange(row.Where(double.IsFinite));
        }
        if (all.Count == 0) return [];
        all.Sort();
        double lo = Quantile(all, 0.01), hi = Quantile(all, 0.99);
        double minPositive = all.FirstOrDefault(v => v > 0);
        bool log = stat.Positive && minPositive > 0 && all[^1] / minPositive > 100;
        if (log)
        {
            lo = Math.Log10(Math.Max(lo, minPositive));
            hi = Math.Log10(Math.Max(hi, minPositive));
        }
        if (!(hi > lo)) hi = lo + 1e-9;
        var written = new List<string>();
        foreach (var r in runs)
        {
            if (r.Metrics is not { } metrics || metrics.Values.GetValueOrDefault(stat.Key) is not { } matrix) continue;
            var cols = Html.HtmlReport.Thin(metrics.Steps.Count, maxColumns);
            int rows = metrics.Layers.Count;
            var data = new double[rows, cols.Length];
            for (int l = 0; l < rows; l++)
            {
                for (int j = 0; j < cols.Length; j++)
                {
                    var v = matrix[l][cols[j]];
                    data[l, j] = !double.IsFinite(v) ? double.NaN : log ? (v > 0 ? Math.Log10(v) : lo) : v;
                }
            }
            var plt = new Plot();
            var hm = plt.Add.Heatmap(data);
            hm.Colormap = new ScottPlot.Colormaps.Viridis();
            hm.ManualRange = new ScottPlot.Range(lo, hi);
            hm.NaNCellColor = Colors.LightGray;
            double first = metrics.Steps[cols[0]], last = metrics.Steps[cols[^1]];
            // ScottPlot places the extent's edges at the centres of the outer cells.
            hm.Extent = new CoordinateRect(first, cols.Length > 1 ? last : first + 1, 0, rows > 1 ? rows - 1 : 1);
            var cb = plt.Add.ColorBar(hm);
            cb.Label = log ? $"log10 {stat.Key}" : stat.Key;
            // Row 0 (the first layer) at the top, as in the HTML report.
            var positions = Enumerable.Range(0, rows).Select(i => (double)(rows - 1 - i)).ToArray();
            var labels = metrics.Layers.Select(l => l.Name).ToArray();
            int every = Math.Max(1, (int)Math.Ceiling(rows / 30.0));
            plt.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
                positions.Where((_, i) => i % every == 0).ToArray(), labels.Where((_, i) => i % every == 0).ToArray());
            plt.Title($"{r.Name}: {stat.Label}");
            plt.XLabel("training step");
            var path = $"{pathPrefix}-{Safe(r.Name)}.png";
            Save(plt, path, 900, Math.Clamp(120 + rows * 22, 300, 1000));
            written.Add(path);
        }
        return written;
    }

    /// <summary>
    /// Writes the 15th, 50th and 85th percentiles of <paramref name="layer"/> over training, one colour per run (median
    /// solid, band between the 15th and 85th), to <paramref name="path"/>. Returns false when no run has that layer.
    /// </summary>
    public static bool Percentiles(IReadOnlyList<RunData> runs, string layer, string path, string? title = null) =>
        Percentiles(runs, _ => layer, path, title ?? $"{layer}: 15th / 50th / 85th percentiles");

    /// <summary>As <see cref="Percentiles(IReadOnlyList{RunData}, string, string, string?)"/> with a layer chosen per run.</summary>
    public static bool Percentiles(IReadOnlyList<RunData> runs, Func<RunData, string?> layerOf, string path, string title)
    {
        ArgumentNullException.ThrowIfNull(runs);
        ArgumentNullException.ThrowIfNull(layerOf);
        var plt = new Plot();
        bool any = false;
        for (int i = 0; i < runs.Count; i++)
        {
            if (runs[i].Metrics is not { } m) continue;
            int li = layerOf(runs[i]) is { } layer ? m.LayerIndex(layer) : -1;
            if (li < 0) continue;
            var idx = Enumerable.Range(0, m.Steps.Count).Where(s => double.IsFinite(m.Values["p50"][li][s])).ToArray();
            if (idx.Length == 0) continue;
            var xs = idx.Select(s => (double)m.Steps[s]).ToArray();
            var color = RunColors[i % RunColors.Length];
            var fill = plt.Add.FillY(xs, idx.Select(s => m.Values["p15"][li][s]).ToArray(), idx.Select(s => m.Values["p85"][li][s]).ToArray());
            fill.FillColor = color.WithAlpha(0.2);
            fill.LineColor = color.WithAlpha(0.6);
            var med = plt.Add.Scatter(xs, idx.Select(s => m.Values["p50"][li][s]).ToArray());
            med.Color = color;
            med.MarkerSize = 0;
            med.LineWidth = 2;
            med.LegendText = $"{runs[i].Name}: {m.Layers[li].Name} (median; band 15th-85th)";
            any = true;
        }
        if (!any) return false;
        plt.ShowLegend();
        plt.Title(title);
        plt.XLabel("training step");
        plt.YLabel("activation value");
        Save(plt, path, 900, 450);
        return true;
    }

    /// <summary>A line chart of (x, y) series, one colour per series, to <paramref name="path"/>.</summary>
    public static void Lines(IReadOnlyList<(string Name, double[] X, double[] Y)> series, string path, string title, string xLabel, string yLabel, bool logX = false)
    {
        ArgumentNullException.ThrowIfNull(series);
        var plt = new Plot();
        for (int i = 0; i < series.Count; i++)
        {
            var (name, x, y) = series[i];
            var sc = plt.Add.Scatter(logX ? x.Select(Math.Log10).ToArray() : x, y);
            sc.Color = RunColors[i % RunColors.Length];
            sc.LegendText = name;
            sc.LineWidth = 2;
            sc.MarkerSize = x.Length > 60 ? 0 : 6;
        }
        if (logX)
        {
            var ticks = series.SelectMany(s => s.X).Distinct().Order().ToArray();
            plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
                ticks.Select(Math.Log10).ToArray(), ticks.Select(t => t.ToString("G3", CultureInfo.InvariantCulture)).ToArray());
        }
        plt.ShowLegend();
        plt.Title(title);
        plt.XLabel(xLabel);
        plt.YLabel(yLabel);
        Save(plt, path, 900, 450);
    }

    private static double Quantile(List<double> sorted, double p)
    {
        double x = p * (sorted.Count - 1);
        int i = (int)Math.Floor(x);
        return i + 1 < sorted.Count ? sorted[i] + (sorted[i + 1] - sorted[i]) * (x - i) : sorted[i];
    }

    /// <summary>Renders <paramref name="plt"/> as PNG and writes it atomically, never through a symbolic link at <paramref name="path"/>.</summary>
    private static void Save(Plot plt, string path, int width, int height)
    {
        using var image = plt.GetImage(width, height);
        OutputFile.Write(path, image.GetImageBytes(ImageFormat.Png, 100));
    }

    /// <summary>A file-name-safe form of a run name.</summary>
    public static string Safe(string name) => new(name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_').ToArray());
}
