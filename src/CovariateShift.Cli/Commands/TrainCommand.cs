using System.CommandLine;
using System.Globalization;
using CovariateShift.Nn.Checkpoints;
using CovariateShift.Records;
using CovariateShift.Schema;
using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using CovariateShift.Training.Analysis;
using CovariateShift.Training.Data;
using CovariateShift.Training.Runtime;
using CovariateShift.Training.Training;
using Serilog;
using Serilog.Events;
using Serilog.Filters;
using Serilog.Formatting.Compact;
using TorchSharp;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// <c>covshift train</c>: trains a zoo model or a JSON-spec model on Fashion-MNIST with the monitor attached (see
/// <see cref="Trainer"/>) and writes metrics.jsonl, log.clef, model.json, checkpoint.bin and summary.json to --out.
/// Every argument, the model and the data are checked before anything is written there.
/// </summary>
internal static class TrainCommand
{
    private static readonly string[] Datasets = ["fashion-mnist"];
    private static readonly long[] FashionMnistShape = [1, 28, 28];
    private const int FashionMnistClasses = 10;

    /// <summary>Output file names in --out.</summary>
    public const string LogFileName = "log.clef";
    public const string SpecFileName = "model.json";
    public const string CheckpointFileName = "checkpoint.bin";
    public const string SummaryFileName = "summary.json";

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = $"Zoo model ({string.Join(", ", ModelZoo.Names)}) or the path of a .json model spec (see models/).", DefaultValueFactory = _ => "mlp" };
        var norm = new Option<string[]>("--norm") { Description = $"Normalization: {string.Join(", ", NormKinds.CliNames)}. Several (e.g. --norm none batch) train one run each into --out/<norm> and print a comparison. Default: none for a zoo model, the spec's for a .json spec.", AllowMultipleArgumentsPerToken = true };
        var depth = new Option<int?>("--depth") { Description = $"Hidden layers (mlp) or conv layers (cnn). Zoo default: mlp {ModelSpecResolver.DefaultMlpDepth}, cnn {ModelSpecResolver.DefaultCnnDepth}." }.PositiveIfGiven();
        var width = new Option<int?>("--width") { Description = $"Units per hidden layer (mlp) or base width (cnn). Zoo default: mlp {ModelSpecResolver.DefaultMlpWidth}, cnn {ModelSpecResolver.DefaultCnnWidth}." }.PositiveIfGiven();
        var activation = new Option<string?>("--activation") { Description = $"Hidden nonlinearity: {string.Join(", ", ActivationKinds.CliNames)}. Zoo default: relu." };
        var init = new Option<string?>("--init") { Description = $"Weight init: {string.Join(", ", WeightInit.CliForms)}. Zoo default: he (xavier for sigmoid/tanh)." };
        var placement = new Option<string?>("--norm-placement") { Description = $"Normalization {string.Join(" or ", NormPlacements.CliNames)} the activation. Zoo default: before." };
        var groups = new Option<int?>("--groups") { Description = "Group count of group / weight-std normalization (must divide every normalized layer's channels)." }.PositiveIfGiven();
        var dataset = new Option<string>("--dataset") { Description = $"Data set: {string.Join(", ", Datasets)}.", DefaultValueFactory = _ => "fashion-mnist" };
        var dataDir = new Option<string?>("--data-dir") { Description = $"Directory of the MNIST-format files. Default: ${MnistFormat.FashionMnistVariable} or {MnistFormat.DefaultFashionMnistDirectory}." };
        var trainLimit = new Option<int?>("--train-limit") { Description = "Use only the first N training images. Default: all." }.PositiveIfGiven();
        var testLimit = new Option<int?>("--test-limit") { Description = "Evaluate on only the first N test images. Default: all." }.PositiveIfGiven();
        var steps = new Option<int>("--steps") { Description = "Optimizer steps (epochs repeat as needed).", DefaultValueFactory = _ => 500 }.AtLeast(1);
        var batch = new Option<int>("--batch-size") { Description = "Mini-batch size.", DefaultValueFactory = _ => 128 }.AtLeast(1);
        var lr = new Option<double>("--lr") { Description = "SGD learning rate.", DefaultValueFactory = _ => 0.01 }.Positive();
        var momentum = new Option<double>("--momentum") { Description = "SGD momentum, in [0, 1).", DefaultValueFactory = _ => 0.9 }.InRange(0, 1);
        var weightDecay = new Option<double>("--weight-decay") { Description = "SGD weight decay (L2), >= 0.", DefaultValueFactory = _ => 0.0 }.InRange(0, double.PositiveInfinity);
        var recordEvery = new Option<int>("--record-every") { Description = "The monitor records every K-th step.", DefaultValueFactory = _ => 10 }.AtLeast(1);
        var evalEvery = new Option<int>("--eval-every") { Description = "Evaluate on the test set every K steps; 0 = only at the end.", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var logEvery = new Option<int>("--log-every") { Description = "Log the training loss every K steps.", DefaultValueFactory = _ => 50 }.AtLeast(1);
        var logLayers = new Option<bool>("--log-layers") { Description = "Also write the monitor's per-layer Debug events to log.clef (about 1 KB per layer per record; metrics.jsonl has the same values)." };
        var seed = new Option<int>("--seed") { Description = "Seed of the initialization and the shuffling.", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "auto, cpu or cuda.", DefaultValueFactory = _ => "auto" };
        var output = new Option<string>("--out") { Description = "Output directory (created; an existing file is refused).", Required = true };
        var cmd = new Command("train", "Train a model on Fashion-MNIST with the monitor attached; writes metrics.jsonl, log.clef, model.json, checkpoint.bin and summary.json to --out.")
        {
            model, norm, depth, width, activation, init, placement, groups, dataset, dataDir, trainLimit, testLimit,
            steps, batch, lr, momentum, weightDecay, recordEvery, evalEvery, logEvery, logLayers, seed, device, output,
        };
        cmd.SetAction(parse => CliRunner.Run(() =>
        {
            // 1. Everything that can be checked without data: data set, model spec and overrides, device, --out.
            var datasetName = parse.GetValue(dataset)!;
            if (!Datasets.Contains(datasetName.Trim().ToLowerInvariant()))
                throw new ArgumentException($"--dataset '{datasetName}' is not supported; valid values: {string.Join(", ", Datasets)}.");
            var norms = (parse.GetValue(norm) ?? []).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                .Select(NormKinds.Parse).Distinct().Select(k => (NormKind?)k).DefaultIfEmpty(null).ToList();
            var baseOverrides = new ModelOverrides
            {
                Depth = parse.GetValue(depth),
                Width = parse.GetValue(width),
                Activation = parse.GetValue(activation) is { } a ? ActivationKinds.Parse(a) : null,
                Init = parse.GetValue(init) is { } i ? WeightInit.Parse(i) : null,
                NormPlacement = parse.GetValue(placement) is { } p ? NormPlacements.Parse(p) : null,
                Groups = parse.GetValue(groups),
            };
            var specs = norms.Select(n => ModelSpecResolver.Resolve(parse.GetValue(model)!, baseOverrides with { Norm = n }, FashionMnistShape, FashionMnistClasses)).ToList();
            var dev = DeviceSelector.Resolve(parse.GetValue(device)!);
            var outArg = parse.GetValue(output)!;
            var outDir = CheckOutputDirectory(outArg);
            var runDirs = specs.Count == 1 ? [outDir] : specs.Select(sp => Path.Combine(outDir, sp.Norm.ToCliName())).ToList();

            // 2. The models (ModelZoo checks the remaining combinations: instance norm on an mlp, group counts, ...).
            int seedValue = parse.GetValue(seed);
            foreach (var sp in specs)
            {
                using var probe = ModelZoo.Create(sp);
            }

            // 3. The data.
            var dir = parse.GetValue(dataDir) ?? MnistFormat.FashionMnistDirectory;
            using var train = MnistFormat.Load(dir, "fashion-mnist", train: true, parse.GetValue(trainLimit));
            using var test = MnistFormat.Load(dir, "fashion-mnist", train: false, parse.GetValue(testLimit));
            int batchSize = parse.GetValue(batch);
            if (batchSize > train.Count)
                throw new ArgumentException($"--batch-size {batchSize} is larger than the {train.Count} training images; expected at most {train.Count}.");
            var options = new TrainerOptions
            {
                Steps = parse.GetValue(steps),
                BatchSize = batchSize,
                LearningRate = parse.GetValue(lr),
                Momentum = parse.GetValue(momentum),
                WeightDecay = parse.GetValue(weightDecay),
                Seed = seedValue,
                RecordEvery = parse.GetValue(recordEvery),
                EvaluateEvery = parse.GetValue(evalEvery),
                LogEvery = parse.GetValue(logEvery),
                Device = dev,
                OutputDirectory = outDir,
            };
            options.Validate();

            // 4. Only now: the output directories and their files. One run per normalization, same seed and data.
            var summaries = new List<(ModelSpec Spec, TrainResult Result)>();
            for (int r = 0; r < specs.Count; r++)
            {
                var spec = specs[r];
                var runDir = runDirs[r];
                torch.manual_seed(seedValue);
                using var net = ModelZoo.Create(spec);
                CreateOutputDirectory(outArg, runDir, spec);
                using var log = CreateLogger(runDir, parse.GetValue(logLayers));
                log.Information("covshift train: {Model} ({Architecture}, norm {Norm}, init {Init}) -> {OutputDirectory}",
                    parse.GetValue(model), spec.Architecture, spec.Norm.ToCliName(), spec.Init.ToCliName(), runDir);
                var result = new Trainer(options with { Logger = log, OutputDirectory = runDir }).Train(net, train, test);
                Checkpoint.Save(net, Path.Combine(runDir, CheckpointFileName));
                File.WriteAllText(Path.Combine(runDir, SummaryFileName), result.ToJson() + "\n");
                if (result.Diverged)
                    log.Warning("Diverged at step {DivergedAtStep}: {Message}", result.DivergedAtStep, result.DivergenceMessage);
                log.Information("Final test accuracy {TestAccuracy:F4}, test loss {TestLoss:F4}, train loss {FinalTrainLoss:F4}; wrote {Files} to {OutputDirectory}",
                    result.TestAccuracy, result.TestLoss, result.FinalTrainLoss,
                    string.Join(", ", TrainerOptions.MetricsFileName, LogFileName, SpecFileName, CheckpointFileName, SummaryFileName), runDir);
                summaries.Add((spec, result));
            }
            if (summaries.Count > 1)
            {
                PrintComparison(summaries);
                ReportCommand.Print(Reports.ReportWriter.Write(runDirs, Path.Combine(outDir, Reports.ReportWriter.DefaultFileName)));   // report.html + figures in --out
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// Prints, per run, the test accuracy, the final training loss and how much the hidden activations (the outputs of
    /// the activation functions: what the next layers receive) moved between recorded steps (see <see cref="ShiftSummary"/>).
    /// </summary>
    private static void PrintComparison(IReadOnlyList<(ModelSpec Spec, TrainResult Result)> runs)
    {
        Console.WriteLine();
        Console.WriteLine("Hidden activations between consecutive records (mean over records and hidden layers):");
        Console.WriteLine("| norm | test accuracy | train loss | JS divergence (bits) | mean drift / std | abs ln variance ratio | deepest layer std first -> last |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var (spec, result) in runs)
        {
            var rows = result.MetricsPath is { } path ? MetricsReader.Read(path).Layers : [];
            var hidden = rows.Any(IsHiddenActivation) ? ShiftSummary.Compute(rows, IsHiddenActivation) : null;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {spec.Norm.ToCliName()} | {result.TestAccuracy:F4} | {result.FinalTrainLoss:F4} | {hidden?.MeanJensenShannon:F4} | {hidden?.MeanRelativeDrift:F4} | {hidden?.MeanAbsLogVarianceRatio:F4} | {hidden?.LastLayerStd.First:F3} -> {hidden?.LastLayerStd.Last:F3} |"));
        }
    }

    /// <summary>The output of a hidden layer's activation function (not the head).</summary>
    private static bool IsHiddenActivation(LayerRecord row) => row.Layer.EndsWith(".act", StringComparison.Ordinal) || row.Layer.EndsWith(".act2", StringComparison.Ordinal);

    /// <summary>The full path of --out; refuses an existing file, or a path below one.</summary>
    private static string CheckOutputDirectory(string outArg)
    {
        if (string.IsNullOrWhiteSpace(outArg)) throw new ArgumentException("--out must name a directory; got an empty value.");
        var full = Path.GetFullPath(outArg);
        if (File.Exists(full)) throw new IOException($"--out '{outArg}' is an existing file; expected a directory (it is created when missing).");
        for (var parent = Path.GetDirectoryName(full); parent is not null; parent = Path.GetDirectoryName(parent))
        {
            if (File.Exists(parent)) throw new IOException($"--out '{outArg}' cannot be created: '{parent}' is a file, not a directory.");
            if (Directory.Exists(parent)) break;
        }
        return full;
    }

    /// <summary>Creates --out and writes model.json; on failure removes what it created and reports the path.</summary>
    private static void CreateOutputDirectory(string outArg, string outDir, ModelSpec spec)
    {
        var firstCreated = Path.GetFullPath(outDir);
        while (Path.GetDirectoryName(firstCreated) is { } parent && !Directory.Exists(parent)) firstCreated = parent;
        bool existed = Directory.Exists(outDir);
        var specPath = Path.Combine(outDir, SpecFileName);
        try
        {
            Directory.CreateDirectory(outDir);
            spec.Save(specPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (!existed && Directory.Exists(firstCreated)) Directory.Delete(firstCreated, recursive: true);
            else if (existed && File.Exists(specPath)) File.Delete(specPath);
            throw new IOException($"Cannot write to --out '{outArg}': {e.Message} Expected a writable directory.", e);
        }
    }

    /// <summary>
    /// Debug and up to log.clef as compact JSON, except the monitor's per-layer Debug events (metrics.jsonl holds the
    /// same values) unless <paramref name="logLayers"/>; Information and up to the console, except the monitor's
    /// per-step summaries (its warnings are shown). The monitor's events are told apart by their source context
    /// (<see cref="ActivationMonitor.LogSourceContext"/>).
    /// </summary>
    private static Serilog.Core.Logger CreateLogger(string outDir, bool logLayers) =>
        new LoggerConfiguration()
            .MinimumLevel.Debug()
            .WriteTo.Logger(file => file
                .Filter.ByExcluding(e => !logLayers && e.Level < LogEventLevel.Information && FromMonitor(e))
                .WriteTo.File(new CompactJsonFormatter(), Path.Combine(outDir, LogFileName)))
            .WriteTo.Logger(console => console
                .Filter.ByExcluding(IsMonitorDetail)
                .WriteTo.Console(restrictedToMinimumLevel: LogEventLevel.Information, formatProvider: CultureInfo.InvariantCulture))
            .CreateLogger();

    private static readonly Func<LogEvent, bool> FromMonitor = Matching.FromSource(ActivationMonitor.LogSourceContext);

    private static bool IsMonitorDetail(LogEvent e) => e.Level < LogEventLevel.Warning && FromMonitor(e);

    private static Option<int?> PositiveIfGiven(this Option<int?> option)
    {
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is { } v && v < 1) r.AddError($"{option.Name} must be at least 1; got {v}.");
        });
        return option;
    }

    private static Option<double> InRange(this Option<double> option, double min, double maxExclusive)
    {
        option.Validators.Add(r =>
        {
            var v = r.GetValueOrDefault<double>();
            if (!(v >= min && v < maxExclusive))
                r.AddError(string.Create(CultureInfo.InvariantCulture, $"{option.Name} must be in [{min}, {maxExclusive}); got {v}."));
        });
        return option;
    }
}
