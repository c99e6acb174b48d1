using System.Diagnostics;
using System.Globalization;
using System.Text;
using CovariateShift.Nn.Models;
using CovariateShift.Reports;
using CovariateShift.Reports.Html;
using CovariateShift.Training.Data;
using CovariateShift.Training.Runtime;
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
        // Before the first write: no symbolic link anywhere in an existing output directory, no foreign report.html.
        if (Directory.Exists(settings.OutputDirectory)) RunDirectory.RefuseLinksInside(settings.OutputDirectory);
        ReportWriter.CheckTargets(Path.Combine(settings.OutputDirectory, ReportWriter.DefaultFileName));
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
        SafeFile.WriteAtomic(Path.Combine(settings.OutputDirectory, ResultsFileName), text);
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
        Check(runName, spec, options, train);
        var dir = Path.Combine(s.OutputDirectory, runName);
        Directory.CreateDirectory(dir);
        SafeFile.WriteAtomic(Path.Combine(dir, "model.json"), spec.ToJson() + "\n");
        var log = s.LoggerFactory?.Invoke(dir);
        try
        {
            torch.manual_seed(s.Seed);
            using var model = ModelZoo.Create(spec);
            var result = new Trainer(options with { OutputDirectory = dir, Logger = log, Seed = s.Seed }).Train(model, train, test);
            SafeFile.WriteAtomic(Path.Combine(dir, "summary.json"), result.ToJson() + "\n");
            s.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{runName}: {result.Steps} steps in {result.WallTime.TotalSeconds:F1} s, test accuracy {result.TestAccuracy:F4}, train loss {result.FinalTrainLoss:F4}{(result.Diverged ? $", diverged at step {result.DivergedAtStep}" : "")}"));
            return (dir, result);
        }
        finally
        {
            (log as IDisposable)?.Dispose();
        }
    }

    /// <summary>
    /// Checks one planned run before anything is written: the trainer options, the batch size against the training
    /// examples, and the model (size, and that it can be built: group counts, ...). Sweeps check every run first.
    /// </summary>
    /// <exception cref="ArgumentException">A setting cannot work; the message names the run and the value.</exception>
    internal static void Check(string runName, ModelSpec spec, TrainerOptions options, ImageDataset train)
    {
        try
        {
            options.Validate();
            if (options.LearningRate > float.MaxValue)
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"learning rate {options.LearningRate} does not fit a float32 (the optimizers compute in float32); expected at most {float.MaxValue:G3}."));
            if (options.BatchSize > train.Count)
                throw new ArgumentException($"batch size {options.BatchSize} is larger than the {train.Count} training examples; expected at most {train.Count} (or a larger --train-limit).");
            ModelSpecResolver.CheckSize(spec);
            using var probe = ModelZoo.Create(spec);
        }
        catch (ArgumentException e)
        {
            var message = e.Message;
            if (e is ArgumentOutOfRangeException { ActualValue: { } actual }) message = message.Replace($"Actual value was {actual}.", "", StringComparison.Ordinal);
            if (e.ParamName is { } param) message = message.Replace($" (Parameter '{param}')", "", StringComparison.Ordinal);
            throw new ArgumentException($"Experiment run '{runName}': {message.Trim()}", e);
        }
    }

    /// <summary>Checks every planned run (see <see cref="Check"/>) before the first one trains.</summary>
    internal static void CheckAll(IEnumerable<(string Name, ModelSpec Spec, TrainerOptions Options)> runs, ImageDataset train)
    {
        foreach (var (name, spec, options) in runs) Check(name, spec, options, train);
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
