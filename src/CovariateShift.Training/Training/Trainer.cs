using System.Diagnostics;
using System.Globalization;
using CovariateShift.Nn.Backends;
using CovariateShift.Records;
using CovariateShift.Training.Runtime;
using CovariateShift.Training.Data;
using Serilog;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Training;

/// <summary>
/// Trains a classifier (<c>Module&lt;Tensor, Tensor&gt;</c> that maps a batch of images to logits) on an
/// <see cref="ImageDataset"/> with SGD + momentum on the cross-entropy loss, with an <see cref="ActivationMonitor"/>
/// attached exactly as a user would attach it (<see cref="ActivationMonitor.Attach"/>,
/// <see cref="ActivationMonitor.RecordGradients"/> after backward, <see cref="ActivationMonitor.Step"/> after the update).
/// </summary>
/// <remarks>
/// <para>Each step runs inside its own <c>torch.NewDisposeScope()</c>, batch included; across steps only the model, the
/// optimizer state, the monitor and one double per step (the loss) are kept.</para>
/// <para>Reproducible: <see cref="Train"/> calls <c>torch.manual_seed(Seed)</c> and shuffles with its own generator
/// seeded with <see cref="TrainerOptions.Seed"/>; build the model after seeding to make its initialization reproducible too.</para>
/// <para>When a step's loss is NaN or infinite the run stops before that step's update (the monitor still records that
/// step when it is a recorded one) and the result says so in <see cref="TrainResult.DivergedAtStep"/>; nothing is thrown.</para>
/// </remarks>
/// <example>
/// <code>
/// torch.manual_seed(0);
/// using var model = ModelZoo.Create(spec);
/// using var train = MnistFormat.LoadFashionMnist(train: true);
/// using var test = MnistFormat.LoadFashionMnist(train: false);
/// var result = new Trainer(new TrainerOptions { Steps = 500, OutputDirectory = "runs/a", Logger = log }).Train(model, train, test);
/// </code>
/// </example>
public sealed class Trainer
{
    private readonly TrainerOptions _options;

    /// <summary>A trainer with <paramref name="options"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the message names it, its value and what is expected.</exception>
    public Trainer(TrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
    }

    /// <summary>The options in use.</summary>
    public TrainerOptions Options => _options;

    /// <summary>
    /// On the CPU: the float32 gradients of the model's convolution configurations are checked (once per process each)
    /// and libtorch's oneDNN backend switched off when one is wrong (<see cref="CpuConvolutions"/>); every run's log says
    /// what was done.
    /// </summary>
    private static void GuardConvolutions(nn.Module model, ILogger? log)
    {
        var guard = CpuConvolutions.EnsureExact(model);
        if (guard.SwitchedOff)
        {
            log?.Warning(
                "libtorch's oneDNN convolutions gave wrong gradients on this CPU for {Layers:l} ({Wrong} of {Trials} checks, largest relative error {Error}); oneDNN is switched off for this process and convolutions use libtorch's native kernels, which are exact ({WrongAfter} of {TrialsAfter} checks wrong) but slower on large convolutions",
                string.Join(", ", guard.Faulty), guard.First.Wrong, guard.First.Trials, guard.First.LargestError,
                guard.AfterSwitchingOff!.Wrong, guard.AfterSwitchingOff.Trials);
        }
        else if (guard.First.Trials > 0 && CpuConvolutions.CanSwitchOneDnn && !CpuConvolutions.OneDnnEnabled)
        {
            log?.Information("libtorch's oneDNN is off in this process (switched off earlier or by the caller): convolutions use libtorch's native kernels");
        }
        if (!guard.Exact)
        {
            var last = guard.AfterSwitchingOff ?? guard.First;
            log?.Error(
                "libtorch's CPU convolutions give wrong gradients for {Layers:l} ({Wrong} of {Trials} checks, largest relative error {Error}, oneDNN {OneDnn}): this run's results cannot be trusted",
                string.Join(", ", guard.Faulty), last.Wrong, last.Trials, last.LargestError, last.OneDnn ? "on" : "off");
        }
    }

    /// <summary>
    /// Trains <paramref name="model"/> (moved to <see cref="TrainerOptions.Device"/>, left in training mode) for
    /// <see cref="TrainerOptions.Steps"/> steps (or <see cref="TrainerOptions.Epochs"/> epochs) on <paramref name="train"/>,
    /// evaluating on <paramref name="test"/> (when given) every <see cref="TrainerOptions.EvaluateEvery"/> steps, every
    /// epoch with <see cref="TrainerOptions.EvaluateEveryEpoch"/>, and after the last step.
    /// </summary>
    /// <remarks>
    /// With an <see cref="TrainerOptions.OutputDirectory"/> it appends <c>training.jsonl</c> and the monitor's
    /// <c>metrics.jsonl</c> (whole lines only), and with <see cref="TrainerOptions.WriteCheckpoints"/> it writes
    /// <c>checkpoints/last</c> after every epoch, on cancellation and at the end. With <see cref="TrainerOptions.Resume"/>
    /// it continues from <c>checkpoints/last</c>: the same next batch and step numbers, and lines of both files written
    /// after that checkpoint are dropped first. On the CPU the loss is read every step (no cost there); on other devices
    /// it stays on the device and is read only at logging steps, so a non-finite loss is detected at the next logging step.
    /// </remarks>
    /// <exception cref="ArgumentException">The batch size is larger than the training set, or the monitor cannot attach.</exception>
    /// <exception cref="IOException">An output file cannot be written; the message names it.</exception>
    /// <exception cref="InvalidDataException">Resuming from a checkpoint that is damaged or belongs to a different run configuration.</exception>
    public TrainResult Train(nn.Module<Tensor, Tensor> model, ImageDataset train, ImageDataset? test = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(train);
        var o = _options;
        if (o.BatchSize > train.Count)
            throw new ArgumentException($"Batch size {o.BatchSize} is larger than the training set '{train.Name}' ({train.Count} examples); expected at most {train.Count}.");
        long stepsPerEpoch = train.Count / o.BatchSize;
        long totalSteps = o.Epochs is { } epochs ? epochs * stepsPerEpoch : o.Steps;
        if (totalSteps > int.MaxValue)
            throw new ArgumentException($"{o.Epochs} epochs of {stepsPerEpoch} steps are {totalSteps} steps; expected at most {int.MaxValue}.");
        var schedule = o.Schedule ?? new LearningRateSchedule();
        var log = o.Logger?.ForContext(Serilog.Core.Constants.SourceContextPropertyName, "CovariateShift.Training");
        var device = o.Device ?? CPU;
        bool onCpu = device.type == DeviceType.CPU;
        var clock = Stopwatch.StartNew();
        var files = RunFiles.For(o);

        // 1. Where the run starts: step 0, or the checkpoint (model, optimizer, RNG, losses, evaluations, monitor state).
        torch.manual_seed(o.Seed);
        var resumed = o.Resume ? LoadCheckpoint(files.LastCheckpoint!, totalSteps, stepsPerEpoch, model) : null;
        model.to(device);
        model.train();
        if (onCpu && o.CheckCpuConvolutions) GuardConvolutions(model, log);
        using var optimizer = OptimizerFactory.Create(o, model.parameters().Where(p => p.requires_grad));   // frozen parameters get no optimizer state
        var state = resumed?.State;
        if (resumed is not null)
        {
            using (var reader = new BinaryReader(new MemoryStream(resumed.Optimizer))) optimizer.load_state_dict(reader);
            using (var rng = torch.tensor(resumed.State.TorchRngState)) torch.set_rng_state(rng);
        }
        long start = state?.Step ?? 0;
        files.Prepare(start, resumed is not null);

        // 2. What the run keeps: losses, evaluations, the line files, the monitor (attached as a user's loop attaches it).
        using var losses = new LossTracker(onCpu, o.LossWindow, state?.PendingLosses, state?.RecentLosses);
        var evaluations = new EvaluationTracker(state);
        using var trainingLog = files.OutputDirectory is null ? null : new TrainingLog(files.TrainingLog!, o.TensorBoard ? files.TensorBoard : null);
        using var forecasts = files.Forecast is null ? null : new ForecastLog(files.Forecast);
        using var monitor = AttachMonitor(model, files, start, state?.Monitor, forecasts);
        using var batches = new BatchSource(train, device, o, stepsPerEpoch);
        var checkpoints = o.WriteCheckpoints ? new CheckpointWriter(files.Checkpoints!, o.KeepCheckpoints) : null;

        log?.Information(
            "Training {Model} on {Dataset} ({Examples} examples{Resident}): steps {Start}..{Steps} ({StepsPerEpoch} per epoch) of {BatchSize}, {Optimizer} lr {LearningRate} ({Schedule}, warm-up {Warmup}) momentum {Momentum} weight decay {WeightDecay}, seed {Seed}, device {Device}",
            model.GetType().Name, train.Name, train.Count, batches.Resident ? ", resident on the device" : "", start, totalSteps, stepsPerEpoch, o.BatchSize,
            o.Optimizer.ToCliName(), o.LearningRate, schedule.Kind.ToCliName(), schedule.WarmupSteps, o.Momentum, o.WeightDecay, o.Seed, device.ToString());

        // 3. The loop.
        long? divergedAt = null;
        bool interrupted = false;
        bool stoppedOnForecast = false;
        double lr = state?.LearningRate ?? o.LearningRate;
        var sinceLog = Stopwatch.StartNew();
        long stepsSinceLog = 0;
        long done = start;
        for (long step = start; step < totalSteps; step++)
        {
            lr = schedule.At(step, o.LearningRate, totalSteps, stepsPerEpoch);
            OptimizerFactory.SetLearningRate(optimizer, lr);
            using (var scope = NewDisposeScope())
            {
                var (x, y) = batches.Get(step);
                optimizer.zero_grad();
                var loss = nn.functional.cross_entropy(model.call(x), y);
                if (!losses.Add(loss, tolerate: o.ContinueAfterDivergence))
                {
                    monitor.Step(loss);   // keeps the record of the step where it happened (on recorded steps)
                    divergedAt = step;
                    break;
                }
                loss.backward();
                monitor.RecordGradients();
                optimizer.step();
                o.AfterOptimizerStep?.Invoke(new TrainStep(step, monitor, model, x, y));
                monitor.Step(loss);
            }
            if (forecasts?.Failure is { } failure) throw new IOException(failure.Message, failure);

            done = step + 1;
            stepsSinceLog++;
            bool logStep = done % o.LogEvery == 0 || done == totalSteps;
            bool epochEnd = done % stepsPerEpoch == 0;
            bool checkpoint = checkpoints is not null && epochEnd && done < totalSteps;
            if (!onCpu && (logStep || checkpoint || losses.Unread >= 1000))
            {
                divergedAt = losses.ReadDevice(done);
                if (divergedAt is not null && !o.ContinueAfterDivergence) break;
                divergedAt = null;
            }
            if (logStep)
            {
                double seconds = sinceLog.Elapsed.TotalSeconds;
                var pending = losses.Pending;
                double mean = pending.Count > 0 ? pending.Average(v => (double)v) : double.NaN;
                trainingLog?.Train(done, (double)done / stepsPerEpoch, mean, lr, stepsSinceLog * o.BatchSize / Math.Max(seconds, 1e-9));
                Report(log, new TrainProgress(checked((int)done), checked((int)totalSteps), pending.Count > 0 ? pending[^1] : double.NaN, mean, lr, clock.Elapsed,
                    (done - start) / clock.Elapsed.TotalSeconds, (double)done / stepsPerEpoch, evaluations.Best));
                pending.Clear();
                sinceLog.Restart();
                stepsSinceLog = 0;
            }
            if (test is not null && done < totalSteps && ((o.EvaluateEvery > 0 && done % o.EvaluateEvery == 0) || (o.EvaluateEveryEpoch && epochEnd)))
                evaluations.Add(Evaluate(model, test, o.EvaluationBatchSize, checked((int)done), log), stepsPerEpoch, trainingLog);
            if (checkpoint)
                checkpoints!.Save(model, optimizer, State(done, false), epoch: done / stepsPerEpoch);
            if (o.StopOnForecast && forecasts?.FirstStep is { } warnedAt && done < totalSteps)
            {
                stoppedOnForecast = true;
                log?.Warning("Stopped after step {Step} of {Steps}: the forecaster predicts divergence (warning at step {ForecastStep}).", done, totalSteps, warnedAt);
                break;
            }
            if (o.Cancellation.IsCancellationRequested && done < totalSteps)
            {
                interrupted = true;
                log?.Warning("Interrupted after step {Step} of {Steps}.", done, totalSteps);
                break;
            }
        }
        if (!onCpu && losses.Unread > 0) divergedAt ??= losses.ReadDevice(done);
        monitor.Flush();

        // 4. The end: divergence, the final evaluation and checkpoint, the result.
        string? divergence = divergedAt is { } at ? Diverged(log, at, losses.Losses, lr, onCpu) : null;
        int completed = divergedAt is { } d ? (int)d : checked((int)done);
        if (test is not null && !interrupted && evaluations.LastStep != completed)
            evaluations.Add(Evaluate(model, test, o.EvaluationBatchSize, completed, log), stepsPerEpoch, trainingLog);
        if (checkpoints is not null && divergedAt is null)
        {
            bool finished = done == totalSteps;
            checkpoints.Save(model, optimizer, State(done, finished), epoch: finished && done % stepsPerEpoch == 0 ? done / stepsPerEpoch : null);
        }
        trainingLog?.Flush();

        double finalLoss = losses.FinalLoss(completed - (int)start, out int window);
        var wall = clock.Elapsed;
        var final = evaluations.All.Count > 0 ? evaluations.All[^1] : null;
        var result = new TrainResult(
            Steps: completed,
            RequestedSteps: checked((int)totalSteps),
            Epochs: (double)completed * o.BatchSize / train.Count,
            FinalTrainLoss: finalLoss,
            TestAccuracy: final?.Accuracy,
            TestLoss: final?.Loss,
            Evaluations: evaluations.All,
            WallTime: wall,
            StepsPerSecond: (completed - start) / Math.Max(wall.TotalSeconds, 1e-9),
            OutputDirectory: files.OutputDirectory,
            MetricsPath: files.Metrics,
            DivergedAtStep: divergedAt,
            DivergenceMessage: divergence,
            Losses: losses.Losses)
        {
            StartStep = start,
            Interrupted = interrupted,
            BestTestAccuracy = evaluations.Best,
            FirstForecastStep = forecasts?.FirstStep,
            StoppedOnForecast = stoppedOnForecast,
            FailureStep = Forecast.FailureLabel.FailureStep(losses.Losses.Select((l, i) => (start + i, l)), train.Classes),
        };
        log?.Information(
            "Finished {Steps} of {RequestedSteps} steps ({Epochs:F2} epochs) in {WallSeconds:F1} s ({StepsPerSecond:F1} steps/s): final train loss {FinalTrainLoss:F4} (mean of the last {Window} steps)",
            result.Steps, result.RequestedSteps, result.Epochs, wall.TotalSeconds, result.StepsPerSecond, finalLoss, window);
        var own = monitor.MonitorTimeByPart;
        log?.Information("The monitor's own time: {MonitorSeconds:F2} s, {MonitorShare:P1} of the run's wall time ({MonitorParts})",
            own.Total.TotalSeconds, wall > TimeSpan.Zero ? own.Total / wall : 0.0, own.ToString());
        return result;

        TrainingState State(long stepsDone, bool finished)
        {
            using var rng = torch.get_rng_state();
            return new TrainingState(stepsDone, totalSteps, stepsPerEpoch, o.Seed, lr, losses.Pending.ToArray(), evaluations.Best, evaluations.Count, finished,
                rng.data<byte>().ToArray(), monitor.ExportState(), losses.Recent(checked((int)(stepsDone - start))), evaluations.All.ToArray());
        }
    }

    /// <summary>
    /// Attaches the monitor as a user's loop would: the run's metrics file (appended on a resumed run), TensorBoard
    /// directory and logger, numbered from <paramref name="start"/>; then the saved shift state of a resumed run, or
    /// <see cref="TrainerOptions.BeforeFirstStep"/>.
    /// </summary>
    private ActivationMonitor AttachMonitor(nn.Module<Tensor, Tensor> model, RunFiles files, long start, MonitorState? saved, ForecastLog? forecasts)
    {
        var o = _options;
        var user = o.Monitor ?? new MonitorOptions();
        var monitor = ActivationMonitor.Attach(model, user with
        {
            RecordEvery = o.RecordEvery,
            OverheadBudget = o.OverheadBudget ?? user.OverheadBudget,
            FirstStep = start,
            JsonLinesPath = files.Metrics,
            JsonLinesAppend = o.Resume,
            TensorBoardDirectory = files.TensorBoard ?? user.TensorBoardDirectory,
            Logger = o.Logger ?? user.Logger,
        });
        try
        {
            if (saved is not null) monitor.ImportState(saved);
            else o.BeforeFirstStep?.Invoke(monitor, model);
            if (forecasts is not null) monitor.Subscribe(forecasts);
            foreach (var observer in o.MonitorObservers) monitor.Subscribe(observer);   // disposed with the monitor
            return monitor;
        }
        catch
        {
            monitor.Dispose();
            throw;
        }
    }

    /// <summary>Reads <c>checkpoints/last</c>, checks that it belongs to this run and loads the model's weights from it.</summary>
    private RunCheckpoint.Contents LoadCheckpoint(string path, long totalSteps, long stepsPerEpoch, nn.Module model)
    {
        var resumed = RunCheckpoint.Load(path);
        var st = resumed.State;
        if (st.TotalSteps != totalSteps || st.StepsPerEpoch != stepsPerEpoch || st.Seed != _options.Seed)
        {
            throw new InvalidDataException(
                $"Checkpoint '{path}' belongs to a different run: {st.TotalSteps} steps of {st.StepsPerEpoch} per epoch, seed {st.Seed}; " +
                $"this run has {totalSteps} steps of {stepsPerEpoch} per epoch, seed {_options.Seed}.");
        }
        using var reader = new BinaryReader(new MemoryStream(resumed.Model));
        model.load(reader);
        return resumed;
    }

    private static string Diverged(ILogger? log, long at, List<double> losses, double lr, bool onCpu)
    {
        var message = string.Create(CultureInfo.InvariantCulture,
            $"The training loss became {losses.LastOrDefault(v => !double.IsFinite(v))} at step {at} (learning rate {lr}); training stopped {(onCpu ? "before that step's update" : "at the next logging step")}. ")
            + "Lower the learning rate or add normalization; the monitor's records up to this step show where the activations blew up.";
        log?.Error("Training diverged at step {Step}. {Message}", at, message);
        return message;
    }

    /// <summary>
    /// Accuracy and mean cross-entropy of <paramref name="model"/> on <paramref name="data"/>: evaluation mode, no
    /// gradients, batch by batch in data set order on the device of the model's parameters. The model's training or
    /// evaluation mode is restored afterwards. Monitor hooks do not record evaluation passes.
    /// </summary>
    /// <param name="model">The classifier.</param>
    /// <param name="data">The examples.</param>
    /// <param name="batchSize">Examples per forward pass (capped at the data set size).</param>
    /// <param name="step">Training steps completed, stored in the result.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="batchSize"/> is less than 1.</exception>
    public static EvaluationResult Evaluate(nn.Module<Tensor, Tensor> model, ImageDataset data, int batchSize = 1000, int step = 0) =>
        Evaluate(model, data, batchSize, step, log: null);

    private static EvaluationResult Evaluate(nn.Module<Tensor, Tensor> model, ImageDataset data, int batchSize, int step, ILogger? log)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        if (batchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, $"The evaluation batch size must be at least 1; got {batchSize}.");
        var device = model.parameters().FirstOrDefault()?.device ?? CPU;
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            var lossSums = new List<Tensor>();
            var corrects = new List<Tensor>();
            double lossSum;
            long correct;
            try
            {
                foreach (var (images, labels) in data.Batches((int)Math.Min(batchSize, data.Count), generator: null, shuffle: false, dropLast: false))
                {
                    using var scope = NewDisposeScope();
                    scope.Attach(images, labels);
                    var y = labels.to(device);
                    var logits = model.call(images.to(device));
                    lossSums.Add(nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.Sum).to_type(ScalarType.Float64).DetachFromDisposeScope());
                    corrects.Add(logits.argmax(1).eq(y).sum().DetachFromDisposeScope());
                }

                // One read of the sums at the end instead of a device synchronization per batch.
                using var sums = NewDisposeScope();
                lossSum = stack(lossSums).sum().cpu().item<double>();
                correct = stack(corrects).sum().cpu().item<long>();
            }
            finally
            {
                foreach (var t in lossSums.Concat(corrects)) t.Dispose();
            }

            var result = new EvaluationResult(step, (double)correct / data.Count, lossSum / data.Count, data.Count);
            log?.Information("Step {Step}: test accuracy {Accuracy:F4}, test loss {TestLoss:F4} ({Examples} examples of {Dataset})",
                step, result.Accuracy, result.Loss, result.Examples, data.Name);
            return result;
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    private void Report(ILogger? log, TrainProgress p)
    {
        _options.Progress?.Report(p);
        log?.Information(
            "Step {Step}/{Steps}: loss {Loss:F4} (mean {MeanLoss:F4} since the last report), lr {LearningRate}, {ElapsedSeconds:F1} s elapsed, {StepsPerSecond:F1} steps/s",
            p.Step, p.Steps, p.Loss, p.MeanLoss, p.LearningRate, p.Elapsed.TotalSeconds, p.StepsPerSecond);
    }
}
