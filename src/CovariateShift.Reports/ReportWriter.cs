using System.Diagnostics;
using CovariateShift.Reports.Data;
using CovariateShift.Reports.Figures;
using CovariateShift.Reports.Html;

namespace CovariateShift.Reports;

/// <summary>What <see cref="ReportWriter.Write"/> produced.</summary>
/// <param name="HtmlPath">Full path of the HTML file.</param>
/// <param name="Figures">Full paths of the PNG figures written beside it.</param>
/// <param name="Runs">The runs as loaded (with what was skipped in their notes).</param>
/// <param name="Bytes">Size of the HTML file.</param>
/// <param name="Elapsed">Wall time of loading, rendering and writing (figures included).</param>
/// <param name="LoadTime">Wall time of reading the run directories.</param>
/// <param name="HtmlTime">Wall time from start to the HTML file written (loading included, figures not).</param>
public sealed record ReportResult(string HtmlPath, IReadOnlyList<string> Figures, IReadOnlyList<RunData> Runs, long Bytes, TimeSpan Elapsed, TimeSpan LoadTime, TimeSpan HtmlTime);

/// <summary>
/// Builds the report of a set of run directories: one self-contained HTML file and PNG figures beside it
/// (<c>NAME-heatmap-STAT-RUN.png</c> per run, <c>NAME-percentiles.png</c>).
/// </summary>
public static class ReportWriter
{
    /// <summary>The default HTML file name in a directory.</summary>
    public const string DefaultFileName = "report.html";

    /// <summary>
    /// Loads <paramref name="runDirectories"/>, writes the HTML to <paramref name="htmlPath"/> (its directory is
    /// created) and, unless <paramref name="figures"/> is false, PNG heatmaps of <paramref name="figureStatistic"/> and
    /// the percentile plot of the report's default layer.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">A run directory does not exist.</exception>
    /// <exception cref="ArgumentException">No run directory, or an unknown statistic.</exception>
    public static ReportResult Write(IReadOnlyList<string> runDirectories, string htmlPath, ReportOptions? options = null, bool figures = true, string figureStatistic = "std")
    {
        ArgumentNullException.ThrowIfNull(runDirectories);
        ArgumentException.ThrowIfNullOrWhiteSpace(htmlPath);
        Statistic.Find(figureStatistic);
        var clock = Stopwatch.StartNew();
        var runs = RunLoader.LoadAll(runDirectories);
        var loadTime = clock.Elapsed;
        var o = options ?? new ReportOptions();
        var html = HtmlReport.Render(runs, o);
        var full = Path.GetFullPath(htmlPath);
        var dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        File.WriteAllText(full, html);
        var htmlTime = clock.Elapsed;
        var written = new List<string>();
        if (figures)
        {
            var stem = Path.Combine(dir, Path.GetFileNameWithoutExtension(full));
            written.AddRange(PngFigures.Heatmaps(runs, figureStatistic, $"{stem}-heatmap-{figureStatistic}"));
            var layer = o.DefaultLayer ?? HtmlReport.DefaultLayer(runs);
            if (layer is not null && PngFigures.Percentiles(runs, layer, $"{stem}-percentiles.png")) written.Add($"{stem}-percentiles.png");
        }
        return new ReportResult(full, written, runs, new FileInfo(full).Length, clock.Elapsed, loadTime, htmlTime);
    }
}
