using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
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
        var outputDirectory = o.OutputDirectory is { } dir ? Path.GetFullPath(dir) : null;
        if (outputDirectory is not null) Directory.CreateDirectory(outputDirectory);
        var checkpoints = outputDirectory is null ? null : Path.Combine(outputDirectory, TrainerOptions.CheckpointsDirectoryName);
        var lastPath = checkpoints is null ? null : Path.Combine(checkpoints, TrainerOptions.LastCheckpointName);

        torch.manual_seed(o.Seed);
        RunCheckpoint.Contents? resumed = null;
        if (o.Resume)
        {
            resumed = RunCheckpoint.Load(lastPath!);
            var st = resumed.State;
            if (st.TotalSteps != totalSteps || st.StepsPerEpoch != stepsPerEpoch || st.Seed != o.Seed)
            {
                throw new InvalidDataException(
                    $"Checkpoint '{lastPath}' belongs to a different run: {st.TotalSteps} steps of {st.StepsPerEpoch} per epoch, seed {st.Seed}; " +
                    $"this run has {totalSteps} steps of {stepsPerEpoch} per epoch, seed {o.Seed}.");
            }
            using var reader = new BinaryReader(new MemoryStream(resumed.Model));
            model.load(reader);
        }
        model.to(device);
        model.train();
        using var optimizer = OptimizerFactory.Create(o, model.parameters().Where(p => p.requires_grad));   // frozen parameters get no optimizer state
        long start = 0;
        var pending = new List<float>();
        double? best = null;
        int evaluationCount = 0;
        if (resumed is not null)
        {
            using (var reader = new BinaryReader(new MemoryStream(resumed.Optimizer))) optimizer.load_state_dict(reader);
            using (var rng = torch.tensor(resumed.State.TorchRngState)) torch.set_rng_state(rng);
            start = resumed.State.Step;
            pending.AddRange(resumed.State.PendingLosses);
            best = resumed.State.BestAccuracy;
            evaluationCount = resumed.State.Evaluations;
            TruncateAfter(outputDirectory!, start);
        }

        // The monitor's files go through the relay so that a resumed run keeps the run's step numbers.
        var userMonitor = o.Monitor ?? new MonitorOptions();
        string? metricsPath = outputDirectory is not null ? Path.Combine(outputDirectory, TrainerOptions.MetricsFileName)
            : userMonitor.JsonLinesPath is { } m ? Path.GetFullPath(m) : null;
        string? tensorBoard = o.TensorBoard ? Path.Combine(outputDirectory!, TrainerOptions.TensorBoardDirectoryName) : userMonitor.TensorBoardDirectory;
        long monitorOffset = 0;
        string? forecastPath = outputDirectory is not null && userMonitor.Forecast is not null ? Path.Combine(outputDirectory, Forecast.ForecastFile.FileName) : null;
        var monitorLogger = o.Logger ?? userMonitor.Logger;
        var monitorOptions = userMonitor with
        {
            RecordEvery = o.RecordEvery,
            OverheadBudget = o.OverheadBudget ?? userMonitor.OverheadBudget,
            JsonLinesPath = null,
            TensorBoardDirectory = null,
            Logger = monitorLogger?.ForContext(new StepOffsetEnricher(() => monitorOffset)),
        };
        if (!o.Resume)
        {
            // A new run starts its line files afresh (as the monitor's own sink truncates); a resumed one appends.
            foreach (var path in new[] { metricsPath, outputDirectory is null ? null : Path.Combine(outputDirectory, TrainerOptions.TrainingLogFileName), forecastPath })
            {
                if (path is null || !File.Exists(path)) continue;
                SafeFile.RefuseSymlink(path);
                File.WriteAllBytes(path, []);
            }
        }
        using var relay = new MonitorRelay(metricsPath, tensorBoard, userMonitor.TensorBoardHistogramEvery, forecastPath);
        using var trainingLog = outputDirectory is null ? null
            : new TrainingLog(Path.Combine(outputDirectory, TrainerOptions.TrainingLogFileName), o.TensorBoard ? tensorBoard : null);
        ActivationMonitor? monitor = null;
        IDisposable? subscription = null;

        // The training set on the device once when it fits; otherwise every batch is copied.
        long dataBytes = train.Images.NumberOfElements * train.Images.ElementSize + train.Labels.NumberOfElements * 8;
        bool resident = !onCpu && dataBytes <= o.DeviceDataLimitBytes;
        using var images = resident ? train.Images.to(device) : train.Images.alias();
        using var labels = resident ? train.Labels.to(device) : train.Labels.alias();

        log?.Information(
            "Training {Model} on {Dataset} ({Examples} examples{Resident}): steps {Start}..{Steps} ({StepsPerEpoch} per epoch) of {BatchSize}, {Optimizer} lr {LearningRate} ({Schedule}, warm-up {Warmup}) momentum {Momentum} weight decay {WeightDecay}, seed {Seed}, device {Device}",
            model.GetType().Name, train.Name, train.Count, resident ? ", resident on the device" : "", start, totalSteps, stepsPerEpoch, o.BatchSize,
            o.Optimizer.ToCliName(), o.LearningRate, schedule.Kind.ToCliName(), schedule.WarmupSteps, o.Momentum, o.WeightDecay, o.Seed, device.ToString());

        var losses = new List<double>();
        var deviceLosses = new List<Tensor>();
        var evaluations = new List<EvaluationResult>();
        long? divergedAt = null;
        string? divergence = null;
        bool interrupted = false;
        bool stoppedOnForecast = false;
        double lr = o.LearningRate;
        long epochOfOrder = -1;
        Tensor? order = null;
        var sinceLog = Stopwatch.StartNew();
        long stepsSinceLog = 0;
        long done = start;
        try
        {
            for (long step = start; step < totalSteps; step++)
            {
                if (monitor is null && step % o.RecordEvery == 0)
                {
                    monitorOffset = step;
                    relay.Offset = step;
                    monitor = ActivationMonitor.Attach(model, monitorOptions);
                    if (o.BeforeFirstStep is { } prepare)
                    {
                        // e.g. fine-tuning's reference snapshot: its monitor steps are not the run's and are not written.
                        prepare(monitor, model);
                        monitorOffset = relay.Offset = step - monitor.CurrentStep;
                    }
                    subscription = monitor.Subscribe(relay);
                }

                long epoch = step / stepsPerEpoch;
                if (epoch != epochOfOrder)
                {
                    order?.Dispose();
                    using var generator = new Generator(TrainingState.ShuffleSeed(o.Seed, epoch));
                    using var cpuOrder = randperm(train.Count, generator: generator);
                    order = resident ? cpuOrder.to(device) : cpuOrder.alias();
                    epochOfOrder = epoch;
                }

                lr = schedule.At(step, o.LearningRate, totalSteps, stepsPerEpoch);
                OptimizerFactory.SetLearningRate(optimizer, lr);
                using (var scope = NewDisposeScope())
                {
                    var idx = order!.narrow(0, step % stepsPerEpoch * o.BatchSize, o.BatchSize);
                    var x = images.index_select(0, idx).to(device);
                    var y = labels.index_select(0, idx).to(device);
                    optimizer.zero_grad();
                    var loss = nn.functional.cross_entropy(model.call(x), y);
                    if (onCpu)
                    {
                        float value = loss.item<float>();
                        if (!float.IsFinite(value) && !o.ContinueAfterDivergence)
                        {
                            monitor?.Step(loss);   // keeps the record of the step where it happened (on recorded steps)
                            losses.Add(value);
                            divergedAt = step;
                            break;
                        }
                        losses.Add(value);
                        pending.Add(value);
                    }
                    else
                    {
                        deviceLosses.Add(loss.detach().DetachFromDisposeScope());
                    }

                    loss.backward();
                    monitor?.RecordGradients();
                    optimizer.step();
                    monitor?.Step(loss);
                }
                if (relay.Failure is { } failure) throw new IOException(failure.Message, failure);

                done = step + 1;
                stepsSinceLog++;
                bool logStep = done % o.LogEvery == 0 || done == totalSteps;
                if (!onCpu && (logStep || deviceLosses.Count >= 1000))
                {
                    divergedAt = ReadDeviceLosses(deviceLosses, losses, pending, done);
                    if (divergedAt is not null && !o.ContinueAfterDivergence) break;
                    divergedAt = null;
                }
                if (logStep)
                {
                    double seconds = sinceLog.Elapsed.TotalSeconds;
                    double mean = pending.Count > 0 ? pending.Average(v => (double)v) : double.NaN;
                    double examplesPerSecond = stepsSinceLog * o.BatchSize / Math.Max(seconds, 1e-9);
                    trainingLog?.Train(done, (double)done / stepsPerEpoch, mean, lr, examplesPerSecond);
                    Report(log, new TrainProgress(checked((int)done), checked((int)totalSteps), pending.Count > 0 ? pending[^1] : double.NaN, mean, lr, clock.Elapsed,
                        (done - start) / clock.Elapsed.TotalSeconds, (double)done / stepsPerEpoch, best));
                    pending.Clear();
                    sinceLog.Restart();
                    stepsSinceLog = 0;
                }

                bool epochEnd = done % stepsPerEpoch == 0;
                if (test is not null && done < totalSteps && ((o.EvaluateEvery > 0 && done % o.EvaluateEvery == 0) || (o.EvaluateEveryEpoch && epochEnd)))
                {
                    var e = Evaluate(model, test, o.EvaluationBatchSize, checked((int)done), log);
                    evaluations.Add(e);
                    evaluationCount++;
                    best = Math.Max(best ?? double.NegativeInfinity, e.Accuracy);
                    trainingLog?.Test(done, (double)done / stepsPerEpoch, e.Loss, e.Accuracy);
                }
                if (o.WriteCheckpoints && epochEnd && done < totalSteps)
                {
                    SaveCheckpoint(lastPath!, model, optimizer, State(done, false));
                    if (o.KeepCheckpoints > 0) SaveEpochCheckpoint(checkpoints!, done / stepsPerEpoch, lastPath!, o.KeepCheckpoints);
                }
                if (o.StopOnForecast && relay.FirstForecastStep is { } warnedAt && done < totalSteps)
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
            if (!onCpu && deviceLosses.Count > 0) divergedAt ??= ReadDeviceLosses(deviceLosses, losses, pending, done);
        }
        finally
        {
            foreach (var t in deviceLosses) t.Dispose();
            order?.Dispose();
            subscription?.Dispose();
            monitor?.Dispose();
        }

        if (divergedAt is { } at)
        {
            divergence = string.Create(CultureInfo.InvariantCulture,
                $"The training loss became {losses.LastOrDefault(v => !double.IsFinite(v))} at step {at} (learning rate {lr}); training stopped {(onCpu ? "before that step's update" : "at the next logging step")}. ")
                + "Lower the learning rate or add normalization; the monitor's records up to this step show where the activations blew up.";
            log?.Error("Training diverged at step {Step}. {Message}", at, divergence);
        }

        int completed = divergedAt is { } d ? (int)d : checked((int)done);
        if (test is not null && !interrupted && (evaluations.Count == 0 || evaluations[^1].Step != completed))
        {
            var e = Evaluate(model, test, o.EvaluationBatchSize, completed, log);
            evaluations.Add(e);
            evaluationCount++;
            best = Math.Max(best ?? double.NegativeInfinity, e.Accuracy);
            trainingLog?.Test(completed, (double)completed / stepsPerEpoch, e.Loss, e.Accuracy);
        }
        if (o.WriteCheckpoints && divergedAt is null)
        {
            SaveCheckpoint(lastPath!, model, optimizer, State(done, finished: done == totalSteps));
            if (o.KeepCheckpoints > 0 && done % stepsPerEpoch == 0 && done == totalSteps) SaveEpochCheckpoint(checkpoints!, done / stepsPerEpoch, lastPath!, o.KeepCheckpoints);
        }
        trainingLog?.Flush();

        var window = losses.Take(completed - (int)start).TakeLast(o.LossWindow).ToList();
        double finalLoss = window.Count > 0 ? window.Average() : double.NaN;
        var wall = clock.Elapsed;
        var final = evaluations.Count > 0 ? evaluations[^1] : null;
        var result = new TrainResult(
            Steps: completed,
            RequestedSteps: checked((int)totalSteps),
            Epochs: (double)completed * o.BatchSize / train.Count,
            FinalTrainLoss: finalLoss,
            TestAccuracy: final?.Accuracy,
            TestLoss: final?.Loss,
            Evaluations: evaluations,
            WallTime: wall,
            StepsPerSecond: (completed - start) / Math.Max(wall.TotalSeconds, 1e-9),
            OutputDirectory: outputDirectory,
            MetricsPath: metricsPath,
            DivergedAtStep: divergedAt,
            DivergenceMessage: divergence,
            Losses: losses)
        {
            StartStep = start,
            Interrupted = interrupted,
            BestTestAccuracy = best,
            FirstForecastStep = relay.FirstForecastStep,
            StoppedOnForecast = stoppedOnForecast,
            FailureStep = Forecast.FailureLabel.FailureStep(losses.Select((l, i) => (start + i, l)), train.Classes),
        };
        log?.Information(
            "Finished {Steps} of {RequestedSteps} steps ({Epochs:F2} epochs) in {WallSeconds:F1} s ({StepsPerSecond:F1} steps/s): final train loss {FinalTrainLoss:F4} (mean of the last {Window} steps)",
            result.Steps, result.RequestedSteps, result.Epochs, wall.TotalSeconds, result.StepsPerSecond, finalLoss, window.Count);
        return result;

        TrainingState State(long stepsDone, bool finished)
        {
            using var rng = torch.get_rng_state();
            return new TrainingState(stepsDone, totalSteps, stepsPerEpoch, o.Seed, lr, pending.ToArray(), best, evaluationCount, finished, rng.data<byte>().ToArray());
        }
    }

    /// <summary>Reads the losses kept on the device; returns the 0-based step of the first non-finite one, or null.</summary>
    private static long? ReadDeviceLosses(List<Tensor> deviceLosses, List<double> losses, List<float> pending, long done)
    {
        if (deviceLosses.Count == 0) return null;
        float[] values;
        using (var stacked = stack(deviceLosses))
        using (var host = stacked.to(ScalarType.Float32).cpu())
            values = host.data<float>().ToArray();
        foreach (var t in deviceLosses) t.Dispose();
        deviceLosses.Clear();
        long first = done - values.Length;
        for (int i = 0; i < values.Length; i++)
        {
            losses.Add(values[i]);
            pending.Add(values[i]);
            if (!float.IsFinite(values[i])) return first + i;
        }
        return null;
    }

    private static void SaveCheckpoint(string path, nn.Module model, TorchSharp.Modules.OptimizerHelper optimizer, TrainingState state)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        byte[] modelBytes, optimizerBytes;
        using (var ms = new MemoryStream())
        {
            using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true)) model.save(w);
            modelBytes = ms.ToArray();
        }
        using (var ms = new MemoryStream())
        {
            using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true)) optimizer.save_state_dict(w);
            optimizerBytes = ms.ToArray();
        }
        RunCheckpoint.Save(path, new RunCheckpoint.Contents(state, modelBytes, optimizerBytes));
    }

    /// <summary>Copies <c>last</c> to <c>epoch-NNNN</c> (atomically) and removes all but the newest <paramref name="keep"/>.</summary>
    private static void SaveEpochCheckpoint(string directory, long epoch, string lastPath, int keep)
    {
        var bytes = File.ReadAllBytes(lastPath);
        SafeFile.WriteAtomic(Path.Combine(directory, string.Create(CultureInfo.InvariantCulture, $"epoch-{epoch:D4}")), s => s.Write(bytes));
        foreach (var old in Directory.GetFiles(directory, "epoch-*").Order(StringComparer.Ordinal).SkipLast(keep)) File.Delete(old);
    }

    /// <summary>Drops the lines of training.jsonl and metrics.jsonl written after the checkpoint at <paramref name="step"/> steps.</summary>
    private static void TruncateAfter(string directory, long step)
    {
        LineFile.Filter(Path.Combine(directory, TrainerOptions.TrainingLogFileName), line => StepOf(line) <= step);
        LineFile.Filter(Path.Combine(directory, TrainerOptions.MetricsFileName), line => StepOf(line) < step);
        LineFile.Filter(Path.Combine(directory, Forecast.ForecastFile.FileName), line => StepOf(line) < step);
    }

    private static long StepOf(string line)
    {
        try
        {
            using var doc = JsonDocument.Parse(line);
            return doc.RootElement.GetProperty("step").GetInt64();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return long.MaxValue;   // not a line of ours: dropped
        }
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
