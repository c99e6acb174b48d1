using System.CommandLine;
using System.Globalization;
using CovariateShift.Experiments;
using CovariateShift.Training.Data;
using Serilog;
using Serilog.Formatting.Compact;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// <c>covshift experiment NAME</c>: the classic normalization experiments (bn-fig1, lr-sweep, depth-sweep,
/// batch-sweep, ics) with defaults that finish on a 2-core CPU in minutes and flags for full size. Writes the runs,
/// report.html, PNG figures and results.md into --out.
/// </summary>
internal static class ExperimentCommand
{
    public static Command Create()
    {
        var name = new Argument<string>("NAME") { Description = $"Experiment: {string.Join(", ", ExperimentRunner.Names)}." };
        var output = new Option<string?>("--out") { Description = "Output directory. Default: runs/experiments/NAME." };
        var dataset = new Option<string>("--dataset") { Description = "fashion-mnist or mnist (mnist needs --data-dir).", DefaultValueFactory = _ => "fashion-mnist" };
        var dataDir = new Option<string?>("--data-dir") { Description = $"Directory of the MNIST-format files. Default: ${MnistFormat.FashionMnistVariable} or {MnistFormat.DefaultFashionMnistDirectory}." };
        var steps = CliNumbers.OptionalInt("--steps", "Steps per run (bn-fig1 default 5000, paper 50000; sweeps 300; ics 600; batch-sweep: examples / 128, default 50).", 1);
        var lr = CliNumbers.OptionalFloat("--lr", "Learning rate (not for lr-sweep).", 0, true, float.MaxValue);
        var batch = CliNumbers.OptionalInt("--batch-size", "Batch size (not for batch-sweep).", 1);
        var norms = new Option<string[]>("--norms") { Description = "Normalizations to compare (default per experiment).", AllowMultipleArgumentsPerToken = true };
        var lrs = CliNumbers.NumberList("--lrs", "lr-sweep grid (default 0.001 0.003 0.01 0.03 0.1 0.3 1 3).", 0, true, float.MaxValue);
        var depths = CliNumbers.WholeNumberList("--depths", "depth-sweep depths (default 2 4 8 16 32).", 1);
        var sizes = CliNumbers.WholeNumberList("--batch-sizes", "batch-sweep batch sizes (default 2 4 8 16 32 64 128).", 1);
        var depth = CliNumbers.OptionalInt("--depth", "MLP hidden layers (lr-sweep 10, ics 6).", 1);
        var width = CliNumbers.OptionalInt("--width", "MLP width (128) or CNN base width (batch-sweep 8).", 1);
        var trainLimit = CliNumbers.OptionalInt("--train-limit", "Use only the first N training images.", 1);
        var testLimit = CliNumbers.OptionalInt("--test-limit", "Evaluate on only the first N test images.", 1);
        var grid = new Option<string?>("--grid") { Description = "forecast: the grid file (default: the shipped models/grids/forecast-grid.json)." };
        var seed = new Option<int>("--seed") { Description = "Seed of every run.", DefaultValueFactory = _ => 0 };
        var overwrite = new Option<bool>("--overwrite") { Description = "Write into an existing non-empty --out (its runs, report and figures are replaced; other files are kept)." };
        var cmd = new Command("experiment", "Run a classic normalization experiment (bn-fig1, lr-sweep, depth-sweep, batch-sweep, ics, forecast); writes runs, report.html, figures and results.md.")
        {
            name, output, dataset, dataDir, steps, lr, batch, norms, lrs, depths, sizes, depth, width, trainLimit, testLimit, seed, grid, overwrite,
        };
        cmd.SetAction(parse => CliRunner.Run(() =>
        {
            var n = parse.GetValue(name)!.Trim().ToLowerInvariant();
            if (!ExperimentRunner.Names.Contains(n)) throw new ArgumentException($"unknown experiment '{n}'; expected one of: {string.Join(", ", ExperimentRunner.Names)}.");
            var ds = parse.GetValue(dataset)!.Trim().ToLowerInvariant();
            if (ds is not ("fashion-mnist" or "mnist")) throw new ArgumentException($"--dataset '{ds}' is not supported; expected fashion-mnist or mnist.");
            var dir = parse.GetValue(dataDir) ?? (ds == "mnist" ? throw new ArgumentException("--dataset mnist needs --data-dir (a directory with the four MNIST idx files).") : MnistFormat.FashionMnistDirectory);
            if (!Directory.Exists(dir)) throw new ArgumentException($"--data-dir '{dir}' does not exist.");
            foreach (var v in parse.GetValue(norms) ?? []) { foreach (var part in v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)) Nn.Normalization.NormKinds.Parse(part); }
            var outDir = Path.GetFullPath(parse.GetValue(output) ?? Path.Combine("runs", "experiments", n));
            if (File.Exists(outDir)) throw new ArgumentException($"--out '{outDir}' is a file; expected a directory.");
            if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any() && !parse.GetValue(overwrite))
            {
                throw new ArgumentException($"--out '{outDir}' already exists and is not empty (it holds '{Path.GetFileName(Directory.EnumerateFileSystemEntries(outDir).Order(StringComparer.Ordinal).First())}'); " +
                    "choose a new directory, or add --overwrite to write the experiment into it.");
            }
            CheckPositive("--steps", parse.GetValue(steps));
            CheckPositive("--batch-size", parse.GetValue(batch));
            CheckPositive("--depth", parse.GetValue(depth));
            CheckPositive("--width", parse.GetValue(width));
            if (parse.GetValue(lr) is { } l && !(l > 0 && double.IsFinite(l))) throw new ArgumentException($"--lr must be a positive number; got {l.ToString(CultureInfo.InvariantCulture)}.");
            var settings = new ExperimentSettings
            {
                OutputDirectory = outDir,
                DataDirectory = dir,
                Dataset = ds,
                Steps = parse.GetValue(steps),
                LearningRate = parse.GetValue(lr),
                BatchSize = parse.GetValue(batch),
                Norms = parse.GetValue(norms) is { Length: > 0 } ns ? ns.SelectMany(x => x.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList() : null,
                LearningRates = parse.GetValue(lrs) is { Length: > 0 } a ? a : null,
                Depths = parse.GetValue(depths) is { Length: > 0 } d ? d : null,
                BatchSizes = parse.GetValue(sizes) is { Length: > 0 } b ? b : null,
                Depth = parse.GetValue(depth),
                Width = parse.GetValue(width),
                TrainLimit = parse.GetValue(trainLimit),
                TestLimit = parse.GetValue(testLimit),
                Seed = parse.GetValue(seed),
                ForecastGrid = parse.GetValue(grid) is { } gp ? (File.Exists(gp) ? Path.GetFullPath(gp) : throw new ArgumentException($"--grid '{gp}' does not exist; expected a forecast grid JSON file.")) : null,
                LoggerFactory = runDir => new LoggerConfiguration().MinimumLevel.Information().WriteTo.File(new CompactJsonFormatter(), Path.Combine(runDir, TrainCommand.LogFileName)).CreateLogger(),
                Out = Console.Out,
            };
            var result = ExperimentRunner.Run(n, settings);
            Console.WriteLine();
            Console.WriteLine(result.ResultsTable);
            Console.WriteLine($"report: {result.ReportPath}");
            foreach (var f in result.Figures) Console.WriteLine($"figure: {f}");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"results: {Path.Combine(outDir, ExperimentRunner.ResultsFileName)} ({result.Elapsed.TotalSeconds:F0} s)"));
            return 0;
        }));
        return cmd;
    }

    private static void CheckPositive(string option, int? value)
    {
        if (value is { } v && v < 1) throw new ArgumentException($"{option} must be at least 1; got {v}.");
    }
}
