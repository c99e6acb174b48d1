using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using CovariateShift.Records;
using CovariateShift.Reports;
using CovariateShift.Schema;
using CovariateShift.Training.Analysis;
using CovariateShift.Training.Runtime;
using CovariateShift.Training.Training;

namespace CovariateShift.Cli.Sweeps;

/// <summary>
/// One row of results.csv / results.jsonl: a point's axes and what its run reached. The shift columns are the mean
/// over the run's recorded steps and its hidden layers (the outputs of the activation functions) of the monitor's
/// shift metrics between consecutive records (see <see cref="ShiftSummary"/>); null when the run has no such records.
/// </summary>
/// <param name="Index">Point index.</param>
/// <param name="Id">Point id.</param>
/// <param name="Status">Point status.</param>
/// <param name="Axes">Axis name → value text.</param>
/// <param name="Steps">Steps completed (null before the run ended).</param>
/// <param name="RequestedSteps">Steps the run was set to take.</param>
/// <param name="BestTestAccuracy">Best test accuracy over the run's evaluations.</param>
/// <param name="FinalTestAccuracy">Test accuracy of the last evaluation.</param>
/// <param name="FinalTrainLoss">Mean training loss at the end.</param>
/// <param name="Diverged">Whether the loss became NaN or infinite.</param>
/// <param name="DivergedAtStep">The step it did, or null.</param>
/// <param name="WallTimeSeconds">Wall seconds of the point's attempts (state.json), else of the run's last training call.</param>
/// <param name="MeanDriftOverStd">Mean |Δ mean| / std between consecutive records.</param>
/// <param name="MeanAbsLogVarianceRatio">Mean |ln variance ratio| between consecutive records.</param>
/// <param name="MeanJensenShannon">Mean Jensen-Shannon divergence (bits) between consecutive records.</param>
/// <param name="HiddenLayers">How many hidden layers the shift columns average.</param>
/// <param name="RunDirectory">The run directory, relative to the sweep directory.</param>
public sealed record SweepResultRow(
    int Index, string Id, PointStatus Status, IReadOnlyDictionary<string, string> Axes,
    long? Steps, long? RequestedSteps, double? BestTestAccuracy, double? FinalTestAccuracy, double? FinalTrainLoss,
    bool? Diverged, long? DivergedAtStep, [property: JsonPropertyName("wall_time_s")] double? WallTimeSeconds,
    double? MeanDriftOverStd, double? MeanAbsLogVarianceRatio, [property: JsonPropertyName("mean_js_bits")] double? MeanJensenShannon, int? HiddenLayers, [property: JsonPropertyName("run_dir")] string RunDirectory)
{
    /// <summary>Format version of a results.jsonl line.</summary>
    public int Version { get; init; } = SweepResults.CurrentVersion;
}

/// <summary>
/// The results of a sweep directory: <see cref="Compute"/> reads each point's summary.json and metrics.jsonl (with the
/// core's <see cref="MetricsReader"/>); <see cref="Write"/> writes results.csv, results.jsonl and report.html (the
/// report of every run that ended); <see cref="Read"/> reads results.jsonl back.
/// </summary>
public static class SweepResults
{
    /// <summary>Format version of results.jsonl.</summary>
    public const int CurrentVersion = 1;

    /// <summary>The CSV columns after the axis columns.</summary>
    public static readonly IReadOnlyList<string> MetricColumns =
    [
        "steps", "requested_steps", "best_test_accuracy", "final_test_accuracy", "final_train_loss", "diverged", "diverged_at_step", "wall_time_s",
        "mean_drift_over_std", "mean_abs_log_variance_ratio", "mean_js_bits", "hidden_layers", "run_dir",
    ];

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    };

    /// <summary>Whether a layer is a hidden activation (the output of an activation function, not the head).</summary>
    public static bool IsHiddenActivation(LayerRecord row)
    {
        ArgumentNullException.ThrowIfNull(row);
        return row.Layer.EndsWith(".act", StringComparison.Ordinal) || row.Layer.EndsWith(".act2", StringComparison.Ordinal);
    }

    /// <summary>One row per point, from the run directories (status from <paramref name="reports"/>).</summary>
    public static IReadOnlyList<SweepResultRow> Compute(string sweepDirectory, IReadOnlyList<PointReport> reports)
    {
        ArgumentNullException.ThrowIfNull(reports);
        var dir = Path.GetFullPath(sweepDirectory);
        var rows = new List<SweepResultRow>();
        foreach (var r in reports)
        {
            var runDir = SweepLayout.RunDirectory(dir, r.Point.Id);
            var s = r.Summary;
            ShiftSummary? shift = null;
            var metrics = Path.Combine(runDir, TrainerOptions.MetricsFileName);
            if (s is not null && File.Exists(metrics))
            {
                var layers = MetricsReader.Read(metrics).Layers;
                if (layers.Any(IsHiddenActivation)) shift = ShiftSummary.Compute(layers, IsHiddenActivation);
            }
            double? wall = r.State is { ElapsedSeconds: > 0 } st ? st.ElapsedSeconds : s?.WallSeconds;
            rows.Add(new SweepResultRow(
                r.Point.Index, r.Point.Id, r.Status, r.Point.Axes,
                s?.Steps, s?.RequestedSteps, s?.BestTestAccuracy, s?.TestAccuracy, s?.FinalTrainLoss,
                s?.Diverged, s?.DivergedAtStep, wall,
                shift?.MeanRelativeDrift, shift?.MeanAbsLogVarianceRatio, shift?.MeanJensenShannon, shift?.Layers.Count,
                Path.Combine(SweepLayout.RunsDirectoryName, r.Point.Id)));
        }
        return rows;
    }

    /// <summary>What <see cref="Write"/> wrote.</summary>
    /// <param name="CsvPath">results.csv.</param>
    /// <param name="JsonLinesPath">results.jsonl.</param>
    /// <param name="Report">The report, or null when no run has ended yet.</param>
    public sealed record Written(string CsvPath, string JsonLinesPath, ReportResult? Report);

    /// <summary>
    /// Writes results.csv and results.jsonl (atomically) and report.html over every run that ended (finished or
    /// diverged) into <paramref name="sweepDirectory"/>.
    /// </summary>
    public static Written Write(string sweepDirectory, IReadOnlyList<string> axisNames, IReadOnlyList<SweepResultRow> rows, bool report = true)
    {
        ArgumentNullException.ThrowIfNull(axisNames);
        ArgumentNullException.ThrowIfNull(rows);
        var dir = Path.GetFullPath(sweepDirectory);
        var csv = new StringBuilder();
        csv.AppendJoin(',', ["index", "id", "status", .. axisNames, .. MetricColumns]).Append('\n');
        foreach (var r in rows)
        {
            string[] cells =
            [
                Num(r.Index), r.Id, StatusName(r.Status), .. axisNames.Select(a => r.Axes.TryGetValue(a, out var v) ? v : ""),
                Num(r.Steps), Num(r.RequestedSteps), Num(r.BestTestAccuracy), Num(r.FinalTestAccuracy), Num(r.FinalTrainLoss),
                r.Diverged is { } d ? (d ? "true" : "false") : "", Num(r.DivergedAtStep), Num(r.WallTimeSeconds),
                Num(r.MeanDriftOverStd), Num(r.MeanAbsLogVarianceRatio), Num(r.MeanJensenShannon), Num(r.HiddenLayers), r.RunDirectory,
            ];
            csv.AppendJoin(',', cells.Select(Cell)).Append('\n');
        }
        var csvPath = Path.Combine(dir, SweepLayout.ResultsCsvFileName);
        var jsonlPath = Path.Combine(dir, SweepLayout.ResultsJsonLinesFileName);
        SafeFile.WriteAtomic(csvPath, csv.ToString());
        SafeFile.WriteAtomic(jsonlPath, string.Concat(rows.Select(r => JsonSerializer.Serialize(r, JsonOptions) + "\n")));
        ReportResult? written = null;
        var ended = rows.Where(r => r.Status is PointStatus.Finished or PointStatus.Diverged).Select(r => Path.Combine(dir, r.RunDirectory))
            .Where(d => File.Exists(Path.Combine(d, TrainerOptions.MetricsFileName))).ToList();
        if (report && ended.Count > 0) written = ReportWriter.Write(ended, Path.Combine(dir, ReportWriter.DefaultFileName), figures: false);
        return new Written(csvPath, jsonlPath, written);
    }

    /// <summary>Reads results.jsonl of <paramref name="sweepDirectory"/> (what <see cref="Write"/> wrote).</summary>
    /// <exception cref="FileNotFoundException">There is none.</exception>
    /// <exception cref="InvalidDataException">A line is not a result row; the message names the file and line.</exception>
    public static IReadOnlyList<SweepResultRow> Read(string sweepDirectory)
    {
        var path = Path.Combine(sweepDirectory, SweepLayout.ResultsJsonLinesFileName);
        if (!File.Exists(path)) throw new FileNotFoundException($"'{sweepDirectory}' has no {SweepLayout.ResultsJsonLinesFileName}; run covshift sweep (or covshift sweep collect) first.", path);
        var rows = new List<SweepResultRow>();
        int n = 0;
        foreach (var line in File.ReadLines(path))
        {
            n++;
            if (line.Length == 0) continue;
            try
            {
                var row = JsonSerializer.Deserialize<SweepResultRow>(line, JsonOptions) ?? throw new InvalidDataException($"'{path}' line {n} is null.");
                if (row.Version > CurrentVersion) throw new InvalidDataException($"'{path}' line {n} has version {row.Version}; this covshift reads up to {CurrentVersion}.");
                rows.Add(row);
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"'{path}' line {n} is not a sweep result row: {e.Message}", e);
            }
        }
        return rows;
    }

    internal static string StatusName(PointStatus s) => JsonNamingPolicy.KebabCaseLower.ConvertName(s.ToString());

    private static string Num(double? v) => v is { } x ? x.ToString("R", CultureInfo.InvariantCulture) : "";

    private static string Num(long? v) => v is { } x ? x.ToString(CultureInfo.InvariantCulture) : "";

    private static string Cell(string text) => text.AsSpan().IndexOfAny(",\"\n\r") >= 0 ? "\"" + text.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : text;
}
