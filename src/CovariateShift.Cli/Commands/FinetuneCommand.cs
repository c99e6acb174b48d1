using System.CommandLine;
using System.Globalization;
using CovariateShift.Nn.Checkpoints;
using CovariateShift.Nn.Models;
using CovariateShift.Training.Data;
using CovariateShift.Training.FineTuning;
using CovariateShift.Training.Runtime;
using CovariateShift.Training.Shifts;
using CovariateShift.Training.Training;
using Serilog;
using Serilog.Events;
using TorchSharp;

namespace CovariateShift.Cli.Commands;

/// <summary>
/// <c>covshift finetune</c>: fine-tunes a trained model (<c>--from RUN_DIR</c> or <c>--checkpoint FILE --model SPEC</c>)
/// on a target domain (<c>--shift</c> of the source data, or another <c>--dataset</c>) with <c>train</c>'s options, run
/// directory and resume, plus <c>--freeze</c>, <c>--reset-head</c> and <c>--bn-mode</c>. The monitor's reference snapshot
/// is taken on a source batch before the first step, so every record carries <c>reference_shift</c>; the run directory adds
/// finetune.json (see <see cref="FineTuneReport"/>).
/// </summary>
internal static class FinetuneCommand
{
    private sealed record Flags(Option<string?> From, Option<string?> Checkpoint, Option<string?> Shift, Option<string?> Freeze, Option<bool> ResetHead, Option<string> BnMode);

    public static Command Create()
    {
        var set = new TrainOptionSet();
        var flags = new Flags(
            new Option<string?>("--from") { Description = "Run directory of a covshift train run (its config.json gives the model and the source data set; its checkpoint.bin, else checkpoints/last, the weights)." },
            new Option<string?>("--checkpoint") { Description = "Weights to start from (.bin TorchSharp, .pt/.pth PyTorch state_dict, .safetensors); needs --model and uses --dataset as the source." },
            new Option<string?>("--shift") { Description = $"Target domain: the source data shifted by a comma-separated list of {string.Join(", ", DomainShift.ValidForms)} (pixel space, seeded by --seed)." },
            new Option<string?>("--freeze") { Description = "Regular expression over layer names (e.g. '^layers\\.[0-3]\\.'): matching layers get no gradient and no optimizer state." },
            new Option<bool>("--reset-head") { Description = "Re-initialize the classifier head (the Linear layer named head) before fine-tuning." },
            new Option<string>("--bn-mode") { Description = $"Batch norm while fine-tuning: {string.Join(", ", BatchNormModes.CliNames)} (train: keep updating the statistics; frozen: source running statistics, unchanged; recalibrate: recompute them on the target data first, AdaBN). Other norms are unaffected.", DefaultValueFactory = _ => "train" });
        var cmd = new Command("finetune", "Fine-tune a trained model on a shifted domain with the monitor attached (reference snapshot on the source domain first); writes a run directory like train plus finetune.json.");
        set.AddTo(cmd);
        foreach (var o in new Option[] { flags.From, flags.Checkpoint, flags.Shift, flags.Freeze, flags.ResetHead, flags.BnMode }) cmd.Options.Add(o);
        cmd.SetAction(parse => CliRunner.Run(() => parse.GetValue(set.Resume) is { } resume ? RunResume(set, flags, parse, resume) : RunNew(set, flags, parse)));
        return cmd;
    }

    private static int RunNew(TrainOptionSet set, Flags flags, ParseResult parse)
    {
        var outArg = parse.GetValue(set.Out) ?? throw new ArgumentException("Option '--out' is required (or --resume DIR to continue a fine-tuning run).");
        if (string.IsNullOrWhiteSpace(outArg)) throw new ArgumentException("--out must name a directory; got an empty value.");
        var outDir = Path.GetFullPath(outArg);
        var from = parse.GetValue(flags.From);
        var checkpoint = parse.GetValue(flags.Checkpoint);
        if ((from is null) == (checkpoint is null)) throw new ArgumentException("Give exactly one of --from RUN_DIR and --checkpoint FILE (with --model SPEC).");
        var bnMode = BatchNormModes.Parse(parse.GetValue(flags.BnMode)!);
        var shift = DomainShift.Parse(parse.GetValue(flags.Shift) ?? "");
        bool datasetGiven = parse.GetResult(set.Dataset) is { Implicit: false };
        DatasetSpec source;
        DatasetSpec? target = null;
        string? modelArg = null;
        if (from is not null)
        {
            // The model is the run's: refuse, naming them, the options that would be silently ignored.
            var ignored = new Option[] { set.Model, set.Norm, set.Depth, set.Width, set.Activation, set.Init, set.Placement, set.Groups }
                .Concat(datasetGiven ? [] : new Option[] { set.LabelColumn, set.TestFraction })
                .Where(o => parse.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToList();
            if (ignored.Count > 0)
                throw new ArgumentException($"{string.Join(", ", ignored)} {(ignored.Count == 1 ? "does" : "do")} not apply to --from (the model and the source data set come from the run's {RunConfig.FileName}); drop {(ignored.Count == 1 ? "it" : "them")}, or use --checkpoint FILE --model SPEC to build the model from options.");
            var fromDir = Path.GetFullPath(from);
            if (!File.Exists(Path.Combine(fromDir, RunConfig.FileName)))
                throw new ArgumentException($"--from '{from}' is not a covshift train run directory: it has no {RunConfig.FileName}.");
            var config = RunConfig.Load(fromDir);
            source = config.Dataset with
            {
                TrainLimit = parse.GetValue(set.TrainLimit) ?? config.Dataset.TrainLimit,
                TestLimit = parse.GetValue(set.TestLimit) ?? config.Dataset.TestLimit,
            };
            if (datasetGiven) target = set.ReadDataset(parse);
            else if (parse.GetValue(set.DataDir) is { } dataDir) source = source with { Dir = Path.GetFullPath(dataDir) };   // the run's data elsewhere on this machine
            from = fromDir;
        }
        else
        {
            checkpoint = Path.GetFullPath(checkpoint!);
            if (!File.Exists(checkpoint)) throw new ArgumentException($"--checkpoint '{parse.GetValue(flags.Checkpoint)}' does not exist.");
            if (parse.GetResult(set.Model) is not { Implicit: false }) throw new ArgumentException("--checkpoint needs --model (a zoo name with its flags, or a .json spec) to build the network the weights belong to.");
            modelArg = parse.GetValue(set.Model);
            if (parse.GetValue(set.Norm) is { } normValues && normValues.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries)).Count() > 1)
                throw new ArgumentException($"finetune trains one model; --norm takes one value here, got {string.Join(" ", normValues)}.");
            source = set.ReadDataset(parse);
        }

        var settings = new FineTuneSettings(from, checkpoint, modelArg, source, target, shift.Spec, parse.GetValue(flags.Freeze), parse.GetValue(flags.ResetHead), bnMode.ToCliName());
        return Run(settings, set, parse, outDir, resume: false);
    }

    private static int RunResume(TrainOptionSet set, Flags flags, ParseResult parse, string resumeArg)
    {
        var extra = set.Given(parse).Where(n => n is not "--resume" and not "--device").ToList();
        extra.AddRange(new Option[] { flags.From, flags.Checkpoint, flags.Shift, flags.Freeze, flags.ResetHead, flags.BnMode }.Where(o => parse.GetResult(o) is { Implicit: false }).Select(o => o.Name));
        if (extra.Count > 0)
            throw new ArgumentException($"--resume takes every setting from the run's {RunConfig.FileName} and {FineTuneReport.FileName}; drop {string.Join(", ", extra)} (only --device may be given).");
        var dir = Path.GetFullPath(resumeArg);
        var reportPath = Path.Combine(dir, FineTuneReport.FileName);
        if (!File.Exists(reportPath)) throw new ArgumentException($"--resume '{resumeArg}' is not a covshift finetune run directory: it has no {FineTuneReport.FileName}.");
        var report = FineTuneReport.Load(reportPath);
        return Run(report.Settings, set, parse, dir, resume: true, report);
    }

    private static int Run(FineTuneSettings s, TrainOptionSet set, ParseResult parse, string outDir, bool resume, FineTuneReport? earlier = null)
    {
        // 1. Checks that read no data.
        var bnMode = BatchNormModes.Parse(s.BatchNormMode);
        var shift = DomainShift.Parse(s.Shift);
        var device = DeviceSelector.Resolve(parse.GetValue(set.Device)!);
        var baseSpec = s.TargetDataset ?? s.SourceDataset;
        bool imageShift = shift.Parts.Any(p => p is not ClassSubsetShift);
        if (imageShift && baseSpec.Name is not ("fashion-mnist" or "mnist"))
            throw new ArgumentException($"--shift '{shift.Spec}' transforms images in pixel space, defined here for fashion-mnist and mnist; data set '{baseSpec.Display}' takes only classes:A-B.");
        RunConfig? resumedConfig = resume ? RunConfig.Load(outDir) : null;
        TrainingState? resumedState = resume ? RunDirectory.LoadLastCheckpoint(outDir, resumedConfig!.Model, "finetune").State : null;
        if (resumedState is { Finished: true })
        {
            Console.WriteLine($"The fine-tuning run in '{outDir}' is already finished ({resumedState.Step} of {resumedState.TotalSteps} steps); nothing to do.");
            return 0;
        }

        // 2. Data: source, target (shifted; seeded by --seed), every file validated.
        long seed = resumedConfig?.Seed ?? parse.GetValue(set.Seed);
        var (sourceTrain, sourceTest) = Datasets.Load(s.SourceDataset, seed);
        using var sourceTrainOwned = sourceTrain;
        using var sourceTestOwned = sourceTest;
        var (baseTrain, baseTest) = s.TargetDataset is { } t ? Datasets.Load(t, seed) : (sourceTrain, sourceTest);
        using var baseTrainOwned = s.TargetDataset is null ? null : baseTrain;
        using var baseTestOwned = s.TargetDataset is null ? null : baseTest;
        var pixels = imageShift
            ? new PixelStandardization(MnistFormat.TrainingPixelStatistics(baseSpec.Dir!).Mean, MnistFormat.TrainingPixelStatistics(baseSpec.Dir!).Std)
            : PixelStandardization.None;
        using var targetTrain = shift.Apply(baseTrain, pixels, seed);
        using var targetTest = shift.Apply(baseTest, pixels, seed + 1);

        // 3. Model and trainer settings.
        ModelSpec spec;
        TrainerOptions options;
        bool allowDivergence;
        var mode = RunDirectoryMode.Resume;
        if (resumedConfig is not null)
        {
            spec = resumedConfig.Model;
            options = resumedConfig.ToTrainerOptions();
            allowDivergence = resumedConfig.Training.AllowDivergence;
        }
        else
        {
            var settings = set.Read(parse, baseSpec, targetTrain.ExampleShape, targetTrain.Classes);
            options = settings.Options;
            allowDivergence = settings.AllowDivergence;
            mode = settings.Mode;
            spec = s.From is { } f ? RunConfig.Load(f).Model : settings.Specs[0];
        }

        if (!spec.InputShape.SequenceEqual(targetTrain.ExampleShape))
            throw new ArgumentException($"The model takes inputs of shape [{string.Join(", ", spec.InputShape)}] but the target data '{targetTrain.Name}' has [{string.Join(", ", targetTrain.ExampleShape)}].");
        if (options.BatchSize > targetTrain.Count)
            throw new ArgumentException($"--batch-size {options.BatchSize} is larger than the {targetTrain.Count} target training examples; expected at most {targetTrain.Count}.");
        ModelSpecResolver.CheckSize(spec);
        torch.manual_seed(seed);
        using var net = ModelZoo.Create(spec);
        LoadSourceWeights(net, s);
        net.to(device);
        var before = Evaluate(net, sourceTest, targetTest, 0, options.EvaluationBatchSize);
        var resetHead = s.ResetHead ? FineTuningSetup.ResetHead(net, seed) : null;
        var frozen = s.Freeze is { } pattern ? FineTuningSetup.Freeze(net, pattern) : [];
        var batchNorms = FineTuningSetup.BatchNormLayers(net).Select(l => l.Name).ToList();
        var otherNorms = FineTuningSetup.OtherNormLayers(net);
        if (bnMode != BatchNormMode.Train && batchNorms.Count == 0)
            throw new ArgumentException($"--bn-mode {bnMode.ToCliName()} needs batch-norm layers; the model has none{(otherNorms.Count > 0 ? $" (its {string.Join(", ", otherNorms)} are not batch norm and are unaffected)" : "")}.");
        DomainAccuracy? recalibrated = null;
        if (bnMode == BatchNormMode.Recalibrate)
        {
            FineTuningSetup.Recalibrate(net, targetTrain, options.BatchSize, device);
            recalibrated = Evaluate(net, sourceTest, targetTest, 0, options.EvaluationBatchSize);
        }

        using var frozenBatchNorm = bnMode == BatchNormMode.Frozen ? FineTuningSetup.FreezeBatchNorm(net) : null;
        var initialState = FineTuningSetup.SaveState(net);

        // 4. Only now: the run directory.
        using var runLock = RunDirectory.Open(outDir, mode);
        var deviceName = device.type == DeviceType.CUDA ? "cuda" : "cpu";
        if (!resume)
        {
            RunConfig.From(spec, baseSpec, options, deviceName, allowDivergence).Save(outDir);
            SafeFile.WriteAtomic(Path.Combine(outDir, TrainCommand.SpecFileName), spec.ToJson() + "\n");
        }

        using var clef = new ClefFileSink(Path.Combine(outDir, TrainCommand.LogFileName));
        using var log = RunLogger.Create(clef, parse.GetValue(set.LogLayers), live: false);
        log.Information("covshift finetune{Resume}: {Model} from {Source} to {Target}, shift {Shift}, bn-mode {BnMode} ({BatchNormLayers} batch-norm layers; unaffected: {OtherNorms}), freeze {Freeze} ({Frozen} parameters), reset head {ResetHead} -> {OutputDirectory}",
            resume ? " --resume" : "", spec.Architecture, s.From ?? s.Checkpoint, targetTrain.Name, shift.ToString(), bnMode.ToCliName(), batchNorms.Count,
            otherNorms.Count > 0 ? string.Join(", ", otherNorms) : "none", s.Freeze ?? "none", frozen.Count, resetHead ?? "no", outDir);
        log.Information("Before fine-tuning: source accuracy {SourceAccuracy:F4}, target accuracy {TargetAccuracy:F4}", before.SourceAccuracy, before.TargetAccuracy);
        if (recalibrated is not null)
            log.Information("After recalibrating the batch-norm statistics on the target data: source accuracy {SourceAccuracy:F4}, target accuracy {TargetAccuracy:F4}", recalibrated.SourceAccuracy, recalibrated.TargetAccuracy);

        long start = resumedState?.Step ?? 0;
        var tracker = new ReferenceShiftTracker();
        if (earlier is not null) tracker.Seed(earlier.Layers);
        var evaluations = earlier?.Evaluations.Where(e => e.Step <= start).ToList() ?? [];
        FineTuneReport Report(DomainAccuracy? after) => new()
        {
            Settings = s, FrozenParameters = frozen, ResetHeadLayer = resetHead, BatchNormLayers = batchNorms, OtherNormLayersUnaffected = otherNorms,
            Before = earlier?.Before ?? before, AfterRecalibration = earlier?.AfterRecalibration ?? recalibrated, Evaluations = [.. evaluations], After = after, Layers = tracker.Layers,
        };
        var reportPath = Path.Combine(outDir, FineTuneReport.FileName);
        SafeFile.WriteAtomic(reportPath, Report(null).ToJson() + "\n");
        var progress = new SyncProgress(p =>
        {
            evaluations.Add(Evaluate(net, sourceTest, targetTest, p.Step, options.EvaluationBatchSize));
            SafeFile.WriteAtomic(reportPath, Report(null).ToJson() + "\n");
        });

        using var cancel = InterruptHandler.Install();
        var trainerOptions = options with
        {
            Logger = log, OutputDirectory = outDir, Device = device, WriteCheckpoints = true, TensorBoard = true, Resume = resume, Cancellation = cancel.Token,
            Progress = progress,
            BeforeFirstStep = FineTuningSetup.ReferenceCapture(initialState, sourceTrain, options.BatchSize, seed), MonitorObservers = [tracker],
        };
        var result = new Trainer(trainerOptions).Train(net, targetTrain, targetTest);
        if (result.Interrupted)
        {
            Console.Error.WriteLine($"Interrupted: saved {Path.Combine(outDir, TrainerOptions.CheckpointsDirectoryName, TrainerOptions.LastCheckpointName)}. Resume with: covshift finetune --resume {outDir}");
            return TrainCommand.InterruptedExitCode;
        }

        var after = Evaluate(net, sourceTest, targetTest, result.Steps, options.EvaluationBatchSize);
        SafeFile.WriteAtomic(Path.Combine(outDir, TrainCommand.CheckpointFileName), stream =>
        {
            using var w = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
            net.save(w);
        });
        SafeFile.WriteAtomic(Path.Combine(outDir, TrainCommand.SummaryFileName), result.ToJson() + "\n");
        var final = Report(after);
        SafeFile.WriteAtomic(reportPath, final.ToJson() + "\n");
        PrintSummary(final);
        if (clef.Failure is { } failure) throw new IOException(failure.Message, failure);
        return result.Diverged && !allowDivergence ? TrainCommand.DivergedExitCode : 0;
    }

    private static void LoadSourceWeights(torch.nn.Module<torch.Tensor, torch.Tensor> net, FineTuneSettings s)
    {
        if (s.Checkpoint is { } file)
        {
            Checkpoint.Load(net, file);
            return;
        }

        var final = Path.Combine(s.From!, TrainCommand.CheckpointFileName);
        if (File.Exists(final))
        {
            Checkpoint.Load(net, final);
            return;
        }

        var last = Path.Combine(s.From!, TrainerOptions.CheckpointsDirectoryName, TrainerOptions.LastCheckpointName);
        if (!File.Exists(last)) throw new ArgumentException($"--from '{s.From}' has neither {TrainCommand.CheckpointFileName} nor {TrainerOptions.CheckpointsDirectoryName}/{TrainerOptions.LastCheckpointName}: nothing to start from.");
        FineTuningSetup.LoadState(net, RunCheckpoint.Load(last).Model);
    }

    private static DomainAccuracy Evaluate(torch.nn.Module<torch.Tensor, torch.Tensor> net, ImageDataset source, ImageDataset target, long step, int batchSize)
    {
        var a = Trainer.Evaluate(net, source, batchSize);
        var b = Trainer.Evaluate(net, target, batchSize);
        return new DomainAccuracy(step, a.Accuracy, b.Accuracy, a.Loss, b.Loss);
    }

    private static void PrintSummary(FineTuneReport r)
    {
        Console.WriteLine();
        Console.WriteLine("| | source accuracy | target accuracy |");
        Console.WriteLine("|---|---|---|");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| before | {r.Before.SourceAccuracy:F4} | {r.Before.TargetAccuracy:F4} |"));
        if (r.AfterRecalibration is { } c) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| recalibrated | {c.SourceAccuracy:F4} | {c.TargetAccuracy:F4} |"));
        if (r.After is { } a) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| after | {a.SourceAccuracy:F4} | {a.TargetAccuracy:F4} |"));
        Console.WriteLine();
        Console.WriteLine("Layers furthest from the source domain at the last record (JS divergence in bits, KL in nats, mean drift):");
        foreach (var l in r.Layers.OrderByDescending(l => l.Last.JensenShannon).Take(5))
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {l.Layer,-20} JS {l.First.JensenShannon:F4} -> {l.Last.JensenShannon:F4}   KL {l.First.KlDivergence:F4} -> {l.Last.KlDivergence:F4}   drift {l.First.MeanDrift:F4} -> {l.Last.MeanDrift:F4}"));
    }


    /// <summary>Calls the action on the training thread (Progress&lt;T&gt; would post it elsewhere).</summary>
    private sealed class SyncProgress(Action<TrainProgress> action) : IProgress<TrainProgress>
    {
        public void Report(TrainProgress value) => action(value);
    }
}
