using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
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
using TorchSharp;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// <c>covshift train</c>: trains a zoo model or a JSON-spec model with the monitor attached (see <see cref="Trainer"/>)
/// into a run directory (config.json, training.jsonl, metrics.jsonl, log.clef, model.json, checkpoints/, tensorboard/,
/// checkpoint.bin, summary.json), or continues one with <c>--resume DIR</c>. Every argument, the model and the data
/// are checked before anything is written there.
/// </summary>
/// <remarks>Exit codes: 0 done, 1 unexpected internal error (one line; the stack trace is in log.clef), 2 user mistake,
/// <see cref="DivergedExitCode"/> a run diverged (without --allow-divergence), <see cref="ForecastStopExitCode"/> a run stopped by
/// --on-forecast stop, <see cref="InterruptedExitCode"/> interrupted (Ctrl+C/SIGTERM).</remarks>
internal static class TrainCommand
{
    /// <summary>Exit code of a run whose loss became NaN or infinite (after every --norm ran), unless --allow-divergence.</summary>
    public const int DivergedExitCode = 3;

    /// <summary>Exit code of a run stopped by <c>--on-forecast stop</c>: the forecaster predicted divergence; checkpoints/last was saved.</summary>
    public const int ForecastStopExitCode = 4;

    /// <summary>Exit code after Ctrl+C or SIGTERM (the run saved checkpoints/last and can be resumed).</summary>
    public const int InterruptedExitCode = 130;

    /// <summary>Exit code of an unexpected internal error.</summary>
    public const int InternalErrorExitCode = 1;

    /// <summary>Output file names in the run directory.</summary>
    public const string LogFileName = "log.clef";
    public const string SpecFileName = "model.json";
    public const string CheckpointFileName = "checkpoint.bin";
    public const string SummaryFileName = "summary.json";

    public static Command Create()
    {
        var set = new TrainOptionSet();
        var cmd = new Command("train", "Train a model with the monitor attached into a run directory (config.json, training.jsonl, metrics.jsonl, log.clef, checkpoints/, summary.json); --resume DIR continues one.");
        set.AddTo(cmd);
        cmd.SetAction(parse => Execute(set, parse));
        return cmd;
    }

    private static int Execute(TrainOptionSet set, ParseResult parse)
    {
        string? logPath = null;
        try
        {
            return CliRunner.Run(() => parse.GetValue(set.Resume) is { } resume ? RunResume(set, parse, resume, p => logPath = p) : RunNew(set, parse, p => logPath = p));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Not a user mistake: one line, the full stack trace in log.clef (or a crash file when no run directory was opened).
            var where = logPath;
            try
            {
                if (where is null)
                {
                    where = Path.Combine(Path.GetTempPath(), $"covshift-crash-{Environment.ProcessId}.log");
                    File.WriteAllText(where, e.ToString());
                }
                else
                {
                    using var sink = new ClefFileSink(where);
                    using var crashLog = new LoggerConfiguration().WriteTo.Sink(sink).CreateLogger();
                    crashLog.Fatal(e, "Unexpected internal error");
                }
            }
            catch (Exception w) when (w is IOException or UnauthorizedAccessException)
            {
                where = "nowhere (the log could not be written either)";
            }
            Console.Error.WriteLine($"error: internal error ({e.GetType().Name}: {FirstLine(e.Message)}); the full stack trace is in {where}");
            return InternalErrorExitCode;
        }
    }

    private static string FirstLine(string text) => text.Split('\n', 2)[0].Trim();

    /// <summary>Example shape and classes of the image data sets and gaussian, known without reading a file; null for csv.</summary>
    private static (long[] Shape, int Classes)? KnownShape(DatasetSpec d) => d.Name switch
    {
        "fashion-mnist" or "mnist" => ([1, 28, 28], MnistFormat.Classes),
        "cifar10" => ([3, 32, 32], Cifar10Format.Classes),
        "gaussian" => ([d.Features ?? Datasets.GaussianFeatures], d.Classes ?? Datasets.GaussianClasses),
        _ => null,
    };

    private static int RunNew(TrainOptionSet set, ParseResult parse, Action<string> setLog)
    {
        // 1. Everything that can be checked without data: flags, model specs, device, --out.
        var outArg = parse.GetValue(set.Out) ?? throw new ArgumentException("Option '--out' is required (or --resume DIR to continue a run).");
        if (string.IsNullOrWhiteSpace(outArg)) throw new ArgumentException("--out must name a directory; got an empty value.");
        var outDir = CheckOutputDirectory(outArg);
        var dataset = set.ReadDataset(parse);
        var known = KnownShape(dataset);
        TrainSettings? settings = known is { } k ? set.Read(parse, dataset, k.Shape, k.Classes) : null;
        var deviceName = parse.GetValue(set.Device)!;
        var device = DeviceSelector.Resolve(deviceName);
        if (settings is not null) ProbeModels(settings.Specs);

        // 2. The data (every file validated), then what depends on it.
        var (train, test) = Datasets.Load(dataset, parse.GetValue(set.Seed));
        using (train)
        using (test)
        {
            settings ??= set.Read(parse, dataset, train.ExampleShape, train.Classes);
            if (known is null) ProbeModels(settings.Specs);
            if (settings.Options.BatchSize > train.Count)
                throw new ArgumentException($"--batch-size {settings.Options.BatchSize} is larger than the {train.Count} training examples; expected at most {train.Count}.");

            // 3. Only now: the run directories.
            var runDirs = settings.Specs.Count == 1 ? [outDir] : settings.Specs.Select(sp => Path.Combine(outDir, sp.Norm.ToCliName())).ToList();
            using var parentLock = settings.Specs.Count > 1 ? RunDirectory.Open(outDir, settings.Mode) : null;
            var runs = new List<(ModelSpec Spec, TrainResult Result)>();
            using var cancel = InterruptHandler.Install();
            for (int r = 0; r < settings.Specs.Count; r++)
            {
                var spec = settings.Specs[r];
                var config = RunConfig.From(spec, dataset, settings.Options, DeviceName(device), settings.AllowDivergence);
                using var runLock = RunDirectory.Open(runDirs[r], settings.Specs.Count > 1 ? RunDirectoryMode.New : settings.Mode);
                setLog(Path.Combine(runDirs[r], LogFileName));
                config.Save(runDirs[r]);
                SafeFile.WriteAtomic(Path.Combine(runDirs[r], SpecFileName), spec.ToJson() + "\n");
                var result = TrainOne(runDirs[r], config, spec, settings.Options, device, train, test, resume: false, parse.GetValue(set.Model)!, parse.GetValue(set.LogLayers), cancel.Token);
                runs.Add((spec, result));
                if (result.Interrupted) return Interrupted(runDirs[r]);
            }
            if (runs.Count > 1) CompareRuns(runs, runDirs, outDir);
            return ExitCode(runs.Select(x => x.Result), settings.AllowDivergence);
        }
    }

    private static int RunResume(TrainOptionSet set, ParseResult parse, string resumeArg, Action<string> setLog)
    {
        var extra = set.Given(parse).Where(n => n is not "--resume" and not "--device").ToList();
        if (extra.Count > 0)
            throw new ArgumentException($"--resume takes every setting from the run's {RunConfig.FileName}; drop {string.Join(", ", extra)} (only --device may be given).");
        var dir = Path.GetFullPath(resumeArg);
        if (File.Exists(dir)) throw new ArgumentException($"--resume '{resumeArg}' is a file; expected a run directory.");
        if (!Directory.Exists(dir)) throw new ArgumentException($"--resume '{resumeArg}' does not exist; expected a run directory written by covshift train.");
        var runDirs = File.Exists(Path.Combine(dir, RunConfig.FileName))
            ? [dir]
            : Directory.GetDirectories(dir).Where(d => File.Exists(Path.Combine(d, RunConfig.FileName))).Order(StringComparer.Ordinal).ToList();
        if (runDirs.Count == 0) throw new ArgumentException($"--resume '{resumeArg}' is not a covshift run directory: it has no {RunConfig.FileName} (nor subdirectories with one).");

        var configs = runDirs.Select(RunConfig.Load).ToList();
        var device = parse.GetResult(set.Device) is { Implicit: false } ? DeviceSelector.Resolve(parse.GetValue(set.Device)!) : DeviceSelector.Resolve(configs[0].Device.StartsWith("cuda", StringComparison.Ordinal) ? configs[0].Device : "cpu");
        var runs = new List<(ModelSpec Spec, TrainResult Result)>();
        using var cancel = InterruptHandler.Install();
        for (int r = 0; r < runDirs.Count; r++)
        {
            var config = configs[r];
            var state = RunDirectory.LoadLastCheckpoint(runDirs[r], config.Model, "train").State;   // validates the checkpoint (and that it fits the model) before anything is written
            var summaryPath = Path.Combine(runDirs[r], SummaryFileName);
            if (state.Finished && File.Exists(summaryPath) && File.Exists(Path.Combine(runDirs[r], CheckpointFileName)) && !TrainResult.Read(summaryPath).Interrupted)
            {
                using (RunDirectory.Open(runDirs[r], RunDirectoryMode.Resume)) { }   // refused while another process holds it; a stale .lock.pid goes
                Console.WriteLine($"The run in '{runDirs[r]}' is already finished ({state.Step} of {state.TotalSteps} steps); nothing to do.");
                runs.Add((config.Model, TrainResult.Read(summaryPath)));   // still part of the comparison of several runs
                continue;
            }
            if (state.Finished)
                Console.WriteLine($"The run in '{runDirs[r]}' trained all {state.TotalSteps} steps but stopped before writing {SummaryFileName}; completing it.");
            ProbeModels([config.Model]);
            var (train, test) = Datasets.Load(config.Dataset, config.Seed);
            using (train)
            using (test)
            using (var runLock = RunDirectory.Open(runDirs[r], RunDirectoryMode.Resume))
            {
                setLog(Path.Combine(runDirs[r], LogFileName));
                var options = config.ToTrainerOptions();
                // A run started with --forecast has forecast.jsonl (created even without warnings): it goes on forecasting,
                // with warnings only (a run stopped by --on-forecast stop is resumed to go on past its warning).
                if (File.Exists(Path.Combine(runDirs[r], CovariateShift.Forecast.ForecastFile.FileName)))
                    options = options with { Monitor = (options.Monitor ?? new MonitorOptions()) with { Forecast = new CovariateShift.Forecast.ForecastOptions() } };
                var result = TrainOne(runDirs[r], config, config.Model, options, device, train, test, resume: true, config.Model.Architecture, parse.GetValue(set.LogLayers), cancel.Token);
                runs.Add((config.Model, result));
                if (result.Interrupted) return Interrupted(runDirs[r]);
            }
        }
        if (runs.Count > 1) CompareRuns(runs, runDirs, dir);
        return ExitCode(runs.Select(x => x.Result), configs.All(c => c.Training.AllowDivergence));
    }

    private static TrainResult TrainOne(string runDir, RunConfig config, ModelSpec spec, TrainerOptions baseOptions, torch.Device device,
        ImageDataset train, ImageDataset test, bool resume, string modelArg, bool logLayers, CancellationToken cancel)
    {
        using var clef = new ClefFileSink(Path.Combine(runDir, LogFileName));
        bool live = ConsoleProgress.Live;
        using var log = RunLogger.Create(clef, logLayers, live);
        log.Information("covshift train{Resume}: {Model} ({Architecture}, norm {Norm}, init {Init}) on {Dataset} -> {OutputDirectory}",
            resume ? " --resume" : "", modelArg, spec.Architecture, spec.Norm.ToCliName(), spec.Init.ToCliName(), config.Dataset.Display, runDir);
        torch.manual_seed(config.Seed);
        using var net = ModelZoo.Create(spec);
        var options = baseOptions with
        {
            Logger = log,
            OutputDirectory = runDir,
            Device = device,
            WriteCheckpoints = true,
            TensorBoard = true,
            Resume = resume,
            Cancellation = cancel,
        };
        var title = $"{Path.GetFileName(runDir)} ({spec.Architecture}, {spec.Norm.ToCliName()})";
        var result = live
            ? ConsoleProgress.Run(title, progress => new Trainer(options with { Progress = progress }).Train(net, train, test))
            : new Trainer(options).Train(net, train, test);
        if (result.Interrupted)
        {
            // The summary says how far it got ("interrupted": true); --resume completes the run and rewrites it.
            SafeFile.WriteAtomic(Path.Combine(runDir, SummaryFileName), result.ToJson() + "\n");
            return result;
        }
        SafeFile.WriteAtomic(Path.Combine(runDir, CheckpointFileName), s =>
        {
            using var w = new BinaryWriter(s, System.Text.Encoding.UTF8, leaveOpen: true);
            net.save(w);
        });
        SafeFile.WriteAtomic(Path.Combine(runDir, SummaryFileName), result.ToJson() + "\n");
        if (result.StoppedOnForecast)
            Console.Error.WriteLine($"Stopped: the forecaster predicted divergence at step {result.FirstForecastStep} (see {CovariateShift.Forecast.ForecastFile.FileName}); saved checkpoints/last.");
        if (result.Diverged)
            log.Warning("Diverged at step {DivergedAtStep}: {Message}", result.DivergedAtStep, result.DivergenceMessage);
        log.Information("Final test accuracy {TestAccuracy:F4} (best {BestTestAccuracy:F4}), test loss {TestLoss:F4}, train loss {FinalTrainLoss:F4}; wrote {Files} to {OutputDirectory}",
            result.TestAccuracy, result.BestTestAccuracy, result.TestLoss, result.FinalTrainLoss,
            string.Join(", ", RunConfig.FileName, TrainerOptions.TrainingLogFileName, TrainerOptions.MetricsFileName, LogFileName, SpecFileName, "checkpoints/", "tensorboard/", CheckpointFileName, SummaryFileName), runDir);
        if (clef.Failure is { } failure) throw new IOException(failure.Message, failure);
        return result;
    }

    private static int Interrupted(string runDir)
    {
        Console.Error.WriteLine($"Interrupted: saved {Path.Combine(runDir, TrainerOptions.CheckpointsDirectoryName, TrainerOptions.LastCheckpointName)}. Resume with: covshift train --resume {runDir}");
        return InterruptedExitCode;
    }

    private static int ExitCode(IEnumerable<TrainResult> results, bool allowDivergence) =>
        results.Any(r => r.StoppedOnForecast) ? ForecastStopExitCode : results.Any(r => r.Diverged) && !allowDivergence ? DivergedExitCode : 0;

    private static string DeviceName(torch.Device device) => device.type == DeviceType.CUDA ? (device.index >= 0 ? $"cuda:{device.index}" : "cuda") : "cpu";

    /// <summary>Builds each model once (ModelZoo checks the remaining combinations: instance norm on an mlp, group counts, ...).</summary>
    private static void ProbeModels(IEnumerable<ModelSpec> specs)
    {
        foreach (var sp in specs)
        {
            ModelSpecResolver.CheckSize(sp);
            using var probe = ModelZoo.Create(sp);
        }
    }

    /// <summary>
    /// Prints, per run, the test accuracy, the final training loss and how much the hidden activations (the outputs of
    /// the activation functions: what the next layers receive) moved between recorded steps (see <see cref="ShiftSummary"/>).
    /// </summary>
    /// <summary>Several runs: the comparison table on the console, and report.html (plus figures) in the parent directory.</summary>
    private static void CompareRuns(IReadOnlyList<(ModelSpec Spec, TrainResult Result)> runs, IReadOnlyList<string> runDirs, string parentDir)
    {
        PrintComparison(runs);
        ReportCommand.Print(Reports.ReportWriter.Write(runDirs, Path.Combine(parentDir, Reports.ReportWriter.DefaultFileName)));
    }

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
        var full = Path.GetFullPath(outArg);
        if (File.Exists(full)) throw new IOException($"--out '{outArg}' is an existing file; expected a directory (it is created when missing).");
        for (var parent = Path.GetDirectoryName(full); parent is not null; parent = Path.GetDirectoryName(parent))
        {
            if (File.Exists(parent)) throw new IOException($"--out '{outArg}' cannot be created: '{parent}' is a file, not a directory.");
            if (Directory.Exists(parent)) break;
        }
        return full;
    }

}

/// <summary>Ctrl+C (SIGINT) and SIGTERM cancel a token instead of killing the process: the trainer finishes the step and saves.</summary>
internal sealed class InterruptHandler : IDisposable
{
    private readonly CancellationTokenSource _source = new();
    private readonly List<PosixSignalRegistration> _registrations = [];

    private InterruptHandler()
    {
        foreach (var signal in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM })
        {
            _registrations.Add(PosixSignalRegistration.Create(signal, context =>
            {
                context.Cancel = true;   // keep the process alive; a second signal also only cancels
                _source.Cancel();
            }));
        }
    }

    public CancellationToken Token => _source.Token;

    public static InterruptHandler Install() => new();

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
        _source.Dispose();
    }
}
