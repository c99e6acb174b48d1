using System.Diagnostics;
using System.Globalization;
using System.Text;
using CovariateShift.Nn.Models;
using CovariateShift.Reports;
using CovariateShift.Reports.Html;
using CovariateShift.Training.Data;
using CovariateShift.Training.Training;
using Serilog;
using TorchSharp;

namespace CovariateShift.Experiments;

/// <summary>
/// The classic normalization experiments (<c>covshift experiment NAME</c>): each trains its runs with the project's
/// <see cref="Trainer"/> (ics: its own loop, see <see cref="IcsExperiment"/>), then writes report.html, figures and
/// results.md into the output directory.
/// </summary>
public static class ExperimentRunner
{
    /// <summary>Experiment names.</summary>
    public static IReadOnlyList<string> Names { get; } = ["bn-fig1", "lr-sweep", "depth-sweep", "batch-sweep", "ics", "forecast"];

    /// <summary>File name of the results table in the output directory.</summary>
    public const string ResultsFileName = "results.md";

    /// <summary>Runs experiment <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the names.</exception>
    public static ExperimentResult Run(string name, ExperimentSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var clock = Stopwatch.StartNew();
        var key = (name ?? "").Trim().ToLowerInvariant();
        Directory.CreateDirectory(settings.OutputDirectory);
        var (table, figures, reportOptions, runDirs) = key switch
        {
            "bn-fig1" => BnFig1Experiment.Run(settings),
            "lr-sweep" => SweepExperiments.LearningRate(settings),
            "depth-sweep" => SweepExperiments.Depth(settings),
            "batch-sweep" => SweepExperiments.BatchSize(settings),
            "ics" => IcsExperiment.Run(settings),
            "forecast" => Forecasting.ForecastExperiment.Run(settings),
            _ => throw new ArgumentException($"Unknown experiment '{name}'; expected one of: {string.Join(", ", Names)}."),
        };
        var report = ReportWriter.Write(runDirs, Path.Combine(settings.OutputDirectory, ReportWriter.DefaultFileName), reportOptions);
        var all = figures.Concat(report.Figures).ToList();
        var text = new StringBuilder()
            .Append("# ").Append(key).Append('\n').Append('\n')
            .Append(table).Append('\n')
            .Append(string.Create(CultureInfo.InvariantCulture, $"Wall time {clock.Elapsed.TotalSeconds:F0} s. Runs: {string.Join(", ", runDirs.Select(Path.GetFileName))}.\n"))
            .ToString();
        File.WriteAllText(Path.Combine(settings.OutputDirectory, ResultsFileName), text);
        return new ExperimentResult(key, table, report.HtmlPath, all, clock.Elapsed);
    }

    /// <summary>Loads the training and test splits of the settings' data set.</summary>
    internal static (ImageDataset Train, ImageDataset Test) LoadData(ExperimentSettings s) =>
        (MnistFormat.Load(s.DataDirectory, s.Dataset, train: true, s.TrainLimit), MnistFormat.Load(s.DataDirectory, s.Dataset, train: false, s.TestLimit));

    /// <summary>
    /// Trains <paramref name="spec"/> with <paramref name="options"/> into <c>OutputDirectory/<paramref name="runName"/></c>
    /// (model.json, metrics.jsonl, summary.json, log.clef when a logger factory is set) and prints one progress line.
    /// </summary>
    internal static (string Directory, TrainResult Result) Train(ExperimentSettings s, string runName, ModelSpec spec, TrainerOptions options, ImageDataset train, ImageDataset test)
    {
        var dir = Path.Combine(s.OutputDirectory, runName);
        Directory.CreateDirectory(dir);
        spec.Save(Path.Combine(dir, "model.json"));
        var log = s.LoggerFactory?.Invoke(dir);
        try
        {
            torch.manual_seed(s.Seed);
            using var model = ModelZoo.Create(spec);
            var result = new Trainer(options with { OutputDirectory = dir, Logger = log, Seed = s.Seed }).Train(model, train, test);
            File.WriteAllText(Path.Combine(dir, "summary.json"), result.ToJson() + "\n");
            s.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{runName}: {result.Steps} steps in {result.WallTime.TotalSeconds:F1} s, test accuracy {result.TestAccuracy:F4}, train loss {result.FinalTrainLoss:F4}{(result.Diverged ? $", diverged at step {result.DivergedAtStep}" : "")}"));
            return (dir, result);
        }
        finally
        {
            (log as IDisposable)?.Dispose();
        }
    }

    /// <summary>Accuracy as a table cell: 4 decimals, or "diverged (step N)".</summary>
    internal static string Cell(TrainResult r) =>
        r.Diverged ? string.Create(CultureInfo.InvariantCulture, $"diverged (step {r.DivergedAtStep})") : string.Create(CultureInfo.InvariantCulture, $"{r.TestAccuracy:F4}");

    /// <summary>The zoo MLP for 1x28x28 inputs with 10 classes.</summary>
    internal static ModelSpec Mlp(int depth, int width, Nn.Normalization.NormKind norm, WeightInit? init = null) =>
        ModelSpecResolver.ZooDefault("mlp", [1, 28, 28], 10) with { Depth = depth, Width = width, Norm = norm, Init = init ?? WeightInit.He };

    /// <summary>Default report options of an experiment.</summary>
    internal static ReportOptions Options(string title, params string[] notes) => new() { Title = title, Notes = notes };

    /// <summary>Parses CLI norm names.</summary>
    internal static IReadOnlyList<Nn.Normalization.NormKind> Norms(ExperimentSettings s, params Nn.Normalization.NormKind[] defaults) =>
        s.Norms is { Count: > 0 } n ? n.Select(Nn.Normalization.NormKinds.Parse).Distinct().ToList() : defaults;
}
