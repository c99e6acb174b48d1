using System.Diagnostics;
using System.Globalization;
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
    /// <see cref="TrainerOptions.Steps"/> steps on <paramref name="train"/>, evaluating on <paramref name="test"/> (when
    /// given) every <see cref="TrainerOptions.EvaluateEvery"/> steps and after the last step.
    /// </summary>
    /// <exception cref="ArgumentException">The batch size is larger than the training set, or the monitor cannot attach.</exception>
    /// <exception cref="IOException">The metrics file cannot be written; nothing is left behind.</exception>
    public TrainResult Train(nn.Module<Tensor, Tensor> model, ImageDataset train, ImageDataset? test = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(train);
        var o = _options;
        if (o.BatchSize > train.Count)
            throw new ArgumentException($"Batch size {o.BatchSize} is larger than the training set '{train.Name}' ({train.Count} examples); expected at most {train.Count}.");

        var log = o.Logger?.ForContext(Serilog.Core.Constants.SourceContextPropertyName, "CovariateShift.Training");
        var device = o.Device ?? CPU;
        var clock = Stopwatch.StartNew();
        torch.manual_seed(o.Seed);
        using var generator = new Generator(unchecked((ulong)o.Seed));
        model.to(device);
        model.train();
        using var optimizer = optim.SGD(model.parameters(), o.LearningRate, o.Momentum, weight_decay: o.WeightDecay);

        var outputDirectory = o.OutputDirectory is { } dir ? Path.GetFullPath(dir) : null;
        var monitorOptions = (o.Monitor ?? new MonitorOptions()) with { RecordEvery = o.RecordEvery };
        if (outputDirectory is not null) monitorOptions = monitorOptions with { JsonLinesPath = Path.Combine(outputDirectory, TrainerOptions.MetricsFileName) };
        if (o.Logger is not null) monitorOptions = monitorOptions with { Logger = o.Logger };
        using var monitor = ActivationMonitor.Attach(model, monitorOptions);
        var metricsPath = monitorOptions.JsonLinesPath is { } m ? Path.GetFullPath(m) : null;

        log?.Information(
            "Training {Model} on {Dataset} ({Examples} examples): {Steps} steps of {BatchSize}, SGD lr {LearningRate} momentum {Momentum} weight decay {WeightDecay}, seed {Seed}, device {Device}; monitor records {LayerCount} layers every {RecordEvery} steps",
            model.GetType().Name, train.Name, train.Count, o.Steps, o.BatchSize, o.LearningRate, o.Momentum, o.WeightDecay, o.Seed, device.ToString(), monitor.Layers.Count, o.RecordEvery);

        var losses = new List<double>(o.Steps);
        var evaluations = new List<EvaluationResult>();
        long? divergedAt = null;
        string? divergence = null;
        double sinceReport = 0;
        int reportCount = 0;
        IEnumerator<(Tensor Images, Tensor Labels)>? batches = null;
        try
        {
            for (int step = 0; step < o.Steps; step++)
            {
                // Drawn before the step's scope opens (a new epoch's permutation must outlive the step), then handed to it.
                var (images, labels) = NextBatch(train, o.BatchSize, generator, ref batches);
                using var scope = NewDisposeScope();
                scope.Attach(images, labels);
                var x = images.to(device);
                var y = labels.to(device);
                optimizer.zero_grad();
                var loss = nn.functional.cross_entropy(model.call(x), y);
                double value = loss.item<float>();
                losses.Add(value);
                if (!double.IsFinite(value))
                {
                    monitor.Step(loss);   // keeps the record of the step where it happened (on recorded steps)
                    divergedAt = step;
                    divergence = string.Create(CultureInfo.InvariantCulture,
                        $"The training loss became {value} at step {step} (learning rate {o.LearningRate}); training stopped before that step's update. ")
                        + "Lower the learning rate or add normalization; the monitor's records up to this step show where the activations blew up.";
                    log?.Error("Training diverged at step {Step}: loss {Loss}. {Message}", step, value, divergence);
                    break;
                }

                loss.backward();
                monitor.RecordGradients();
                optimizer.step();
                monitor.Step(loss);

                int done = step + 1;
                sinceReport += value;
                reportCount++;
                if (done % o.LogEvery == 0 || done == o.Steps)
                {
                    Report(log, new TrainProgress(done, o.Steps, value, sinceReport / reportCount, o.LearningRate, clock.Elapsed, done / clock.Elapsed.TotalSeconds));
                    sinceReport = 0;
                    reportCount = 0;
                }

                if (test is not null && o.EvaluateEvery > 0 && done % o.EvaluateEvery == 0 && done < o.Steps)
                    evaluations.Add(Evaluate(model, test, o.EvaluationBatchSize, done, log));
            }
        }
        finally
        {
            batches?.Dispose();
        }

        int completed = divergedAt is { } d ? (int)d : o.Steps;
        if (test is not null && (evaluations.Count == 0 || evaluations[^1].Step != completed))
            evaluations.Add(Evaluate(model, test, o.EvaluationBatchSize, completed, log));

        var window = losses.Take(completed).TakeLast(o.LossWindow).ToList();
        double finalLoss = window.Count > 0 ? window.Average() : double.NaN;
        var wall = clock.Elapsed;
        var final = evaluations.Count > 0 ? evaluations[^1] : null;
        var result = new TrainResult(
            Steps: completed,
            RequestedSteps: o.Steps,
            Epochs: (double)completed * o.BatchSize / train.Count,
            FinalTrainLoss: finalLoss,
            TestAccuracy: final?.Accuracy,
            TestLoss: final?.Loss,
            Evaluations: evaluations,
            WallTime: wall,
            StepsPerSecond: completed / Math.Max(wall.TotalSeconds, 1e-9),
            OutputDirectory: outputDirectory,
            MetricsPath: metricsPath,
            DivergedAtStep: divergedAt,
            DivergenceMessage: divergence,
            Losses: losses);
        log?.Information(
            "Finished {Steps} of {RequestedSteps} steps ({Epochs:F2} epochs) in {WallSeconds:F1} s ({StepsPerSecond:F1} steps/s): final train loss {FinalTrainLoss:F4} (mean of the last {Window} steps)",
            result.Steps, result.RequestedSteps, result.Epochs, wall.TotalSeconds, result.StepsPerSecond, finalLoss, window.Count);
        return result;
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
            double lossSum = 0;
            long correct = 0;
            foreach (var (images, labels) in data.Batches((int)Math.Min(batchSize, data.Count), generator: null, shuffle: false, dropLast: false))
            {
                using var scope = NewDisposeScope();
                scope.Attach(images, labels);
                var y = labels.to(device);
                var logits = model.call(images.to(device));
                lossSum += nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.Sum).to_type(ScalarType.Float64).item<double>();
                correct += logits.argmax(1).eq(y).sum().item<long>();
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

    private static (Tensor Images, Tensor Labels) NextBatch(ImageDataset train, int batchSize, Generator generator, ref IEnumerator<(Tensor Images, Tensor Labels)>? batches)
    {
        if (batches is not null && batches.MoveNext()) return batches.Current;
        batches?.Dispose();
        batches = train.Batches(batchSize, generator, shuffle: true, dropLast: true).GetEnumerator();
        if (!batches.MoveNext())
            throw new InvalidOperationException($"The training set '{train.Name}' yielded no batch of {batchSize}.");
        return batches.Current;
    }

    private void Report(ILogger? log, TrainProgress p)
    {
        _options.Progress?.Report(p);
        log?.Information(
            "Step {Step}/{Steps}: loss {Loss:F4} (mean {MeanLoss:F4} since the last report), lr {LearningRate}, {ElapsedSeconds:F1} s elapsed, {StepsPerSecond:F1} steps/s",
            p.Step, p.Steps, p.Loss, p.MeanLoss, p.LearningRate, p.Elapsed.TotalSeconds, p.StepsPerSecond);
    }
}
