using System.Diagnostics;
using CovariateShift.Files;
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
    /// <exception cref="IOException">A target is a symbolic link or holds a file that is not our report (see <see cref="CheckTargets"/>); nothing was written.</exception>
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
        CheckTargets(full, figures);
        Directory.CreateDirectory(dir);
        OutputFile.Write(full, html);
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

    /// <summary>Whether <paramref name="path"/> is an HTML report this writer wrote (so that writing it again replaces only our own file).</summary>
    public static bool IsReport(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) return false;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var head = new byte[64 * 1024];
        int n = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        var text = System.Text.Encoding.UTF8.GetString(head, 0, n);
        return text.StartsWith("<!DOCTYPE html>", StringComparison.Ordinal) && text.Contains(HtmlReport.GeneratorMark, StringComparison.Ordinal);
    }

    /// <summary>
    /// Before anything is written: refuses a symbolic link at the HTML path or at a figure path beside it
    /// (<c>STEM-*.png</c>), and an existing HTML file that is not one of our reports (it would be replaced).
    /// </summary>
    /// <exception cref="IOException">A target is a symbolic link, or the HTML path holds another file; the message names it.</exception>
    public static void CheckTargets(string htmlPath, bool figures = true)
    {
        ArgumentNullException.ThrowIfNull(htmlPath);
        var full = Path.GetFullPath(htmlPath);
        OutputFile.RefuseSymlink(full);
        if (File.Exists(full) && !IsReport(full))
            throw new IOException($"'{full}' exists and is not a covshift report; covshift replaces only its own reports. Move it away or choose another --out.");
        var dir = Path.GetDirectoryName(full)!;
        if (!figures || !Directory.Exists(dir)) return;
        foreach (var png in Directory.EnumerateFileSystemEntries(dir, $"{Path.GetFileNameWithoutExtension(full)}-*.png")) OutputFile.RefuseSymlink(png);
    }
}
