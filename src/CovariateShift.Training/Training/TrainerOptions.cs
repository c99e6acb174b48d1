using Serilog;
using static TorchSharp.torch;

namespace CovariateShift.Training.Training;

/// <summary>
/// Settings of a <see cref="Trainer"/> run: SGD with momentum on the cross-entropy loss, a fixed number of steps
/// (epochs cycle as needed), optional periodic evaluation, and how the <see cref="ActivationMonitor"/> records.
/// <see cref="Validate"/> (called by <see cref="Trainer.Train"/>) rejects values that cannot work, naming the value
/// and what is expected.
/// </summary>
public sealed record TrainerOptions
{
    /// <summary>Optimizer steps (mini-batches) to train for; epochs repeat with a new shuffle. At least 1. Default 500.</summary>
    public int Steps { get; init; } = 500;

    /// <summary>Mini-batch size; the last partial batch of an epoch is dropped. At least 1. Default 128.</summary>
    public int BatchSize { get; init; } = 128;

    /// <summary>SGD learning rate (constant). Finite and &gt; 0. Default 0.01.</summary>
    public double LearningRate { get; init; } = 0.01;

    /// <summary>SGD momentum, in [0, 1). Default 0.9.</summary>
    public double Momentum { get; init; } = 0.9;

    /// <summary>L2 weight decay added by the optimizer, finite and &gt;= 0. Default 0.</summary>
    public double WeightDecay { get; init; }

    /// <summary>Seed of <c>torch.manual_seed</c> and of the shuffling generator. Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>The monitor records every this many steps (its <see cref="MonitorOptions.RecordEvery"/>). At least 1. Default 10.</summary>
    public int RecordEvery { get; init; } = 10;

    /// <summary>The monitor's <see cref="MonitorOptions.OverheadBudget"/> (e.g. 0.02): it adapts its recording interval,
    /// a power-of-two multiple of <see cref="RecordEvery"/>, to keep its share of the step time under this. Null: off
    /// (or the <see cref="Monitor"/> options' own). In (0, 1).</summary>
    public double? OverheadBudget { get; init; }

    /// <summary>Evaluate on the test set every this many steps; 0 = only after the last step. At least 0. Default 0.</summary>
    public int EvaluateEvery { get; init; }

    /// <summary>Examples per evaluation batch (capped at the test set size). At least 1. Default 1000.</summary>
    public int EvaluationBatchSize { get; init; } = 1000;

    /// <summary>Report progress (logger at Information, <see cref="Progress"/>) every this many steps and after the last. At least 1. Default 50.</summary>
    public int LogEvery { get; init; } = 50;

    /// <summary>The final training loss is the mean loss of this many last steps. At least 1. Default 50.</summary>
    public int LossWindow { get; init; } = 50;

    /// <summary>Where training runs; the model is moved there. Null: CPU.</summary>
    public Device? Device { get; init; }

    /// <summary>
    /// Directory for the monitor's <c>metrics.jsonl</c> (created when missing). Null: no metrics file unless
    /// <see cref="Monitor"/> names one.
    /// </summary>
    public string? OutputDirectory { get; init; }

    /// <summary>Serilog logger for progress (Information) and, through the monitor, per-layer (Debug) and anomaly (Warning) events. Null: none.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>Receives a <see cref="TrainProgress"/> every <see cref="LogEvery"/> steps and after the last step. Null: none.</summary>
    public IProgress<TrainProgress>? Progress { get; init; }

    /// <summary>
    /// Further monitor settings (layer filters, histogram bins, TensorBoard, ...). The trainer overrides
    /// <see cref="MonitorOptions.RecordEvery"/> with <see cref="RecordEvery"/>, <see cref="MonitorOptions.JsonLinesPath"/>
    /// with <c>OutputDirectory/metrics.jsonl</c> when <see cref="OutputDirectory"/> is set, and
    /// <see cref="MonitorOptions.Logger"/> with <see cref="Logger"/> when that is set. Null: defaults.
    /// </summary>
    public MonitorOptions? Monitor { get; init; }

    /// <summary>Train for this many epochs (each <c>training examples / BatchSize</c> steps) instead of <see cref="Steps"/>. Null (default): use <see cref="Steps"/>.</summary>
    public int? Epochs { get; init; }

    /// <summary>
    /// On the CPU, before training, check the float32 gradients of the model's convolution configurations once per
    /// process and switch libtorch's oneDNN backend off when one is wrong
    /// (<see cref="CovariateShift.Nn.Backends.CpuConvolutions.EnsureExact(nn.Module)"/>; a few ms per configuration): the
    /// log says so (Warning), or says that the gradients are still wrong (Error). Default true.
    /// </summary>
    public bool CheckCpuConvolutions { get; init; } = true;

    /// <summary>The optimizer. Default SGD (with <see cref="Momentum"/>).</summary>
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Sgd;

    /// <summary>SGD: Nesterov momentum (needs <see cref="Momentum"/> &gt; 0). Default false.</summary>
    public bool Nesterov { get; init; }

    /// <summary>Adam/AdamW: decay of the first-moment estimate, in [0, 1). Default 0.9.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>Adam/AdamW: decay of the second-moment estimate, in [0, 1). Default 0.999.</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>Adam/AdamW: epsilon added to the denominator, finite and &gt; 0. Default 1e-8.</summary>
    public double AdamEpsilon { get; init; } = 1e-8;

    /// <summary>The learning-rate schedule around <see cref="LearningRate"/>. Null (default): constant.</summary>
    public LearningRateSchedule? Schedule { get; init; }

    /// <summary>Also evaluate on the test set at the end of every epoch. Default false (the CLI turns it on).</summary>
    public bool EvaluateEveryEpoch { get; init; }

    /// <summary>
    /// Write the run directory's training checkpoints in <see cref="OutputDirectory"/><c>/checkpoints</c>: <c>last</c>
    /// after the last step, on cancellation and every epoch, plus one per epoch (<see cref="KeepCheckpoints"/>).
    /// Default false.
    /// </summary>
    public bool WriteCheckpoints { get; init; }

    /// <summary>Per-epoch checkpoints to keep (the newest; 0 = none besides <c>last</c>). At least 0. Default 0.</summary>
    public int KeepCheckpoints { get; init; }

    /// <summary>Continue from <see cref="OutputDirectory"/><c>/checkpoints/last</c> (same next batch, same step numbers). Default false.</summary>
    public bool Resume { get; init; }

    /// <summary>
    /// Stops training at the end of the current step when cancelled (Ctrl+C): <c>last</c> is written (with
    /// <see cref="WriteCheckpoints"/>), every file is flushed and the result says <see cref="TrainResult.Interrupted"/>.
    /// </summary>
    public CancellationToken Cancellation { get; init; }

    /// <summary>Copy the whole training set to <see cref="Device"/> once when it is smaller than this many bytes (instead of copying every batch). Default 2 GiB.</summary>
    public long DeviceDataLimitBytes { get; init; } = 2L << 30;

    /// <summary>Write TensorBoard event files (the monitor's and the training/test curves) to <see cref="OutputDirectory"/><c>/tensorboard</c>. Default false.</summary>
    public bool TensorBoard { get; init; }

    /// <summary>
    /// Stop at the end of the step at which the monitor's divergence forecaster (<see cref="MonitorOptions.Forecast"/>, set
    /// in <see cref="Monitor"/>) first warns: <c>last</c> is written (with <see cref="WriteCheckpoints"/>) and the result
    /// says <see cref="TrainResult.StoppedOnForecast"/>. Default false: warnings are logged (and written to
    /// <c>forecast.jsonl</c> in <see cref="OutputDirectory"/>) and training goes on.
    /// </summary>
    public bool StopOnForecast { get; init; }

    /// <summary>Keep training when the loss becomes NaN or infinite? Default false: stop at that step.</summary>
    public bool ContinueAfterDivergence { get; init; }

    /// <summary>
    /// Called once per <see cref="Trainer.Train"/> of a new run (or of a resumed one whose checkpoint holds no monitor
    /// state), right after the monitor is attached and before the first step, with the monitor and the model (e.g.
    /// fine-tuning captures the reference snapshot here with <see cref="ActivationMonitor.CaptureReference(Action)"/>).
    /// It must leave the model's parameters and buffers as they were and should not call
    /// <see cref="ActivationMonitor.Step"/> (the run's steps are the monitor's steps). A resumed run restores the
    /// monitor's state (reference included) from its checkpoint instead. Null: nothing.
    /// </summary>
    public Action<ActivationMonitor, nn.Module<Tensor, Tensor>>? BeforeFirstStep { get; init; }

    /// <summary>In-memory consumers of the monitor's records (<see cref="ActivationMonitor.Subscribe"/>), subscribed when the
    /// monitor is attached, also on a resumed run. Default none.</summary>
    public IReadOnlyList<IObserver<Records.StepRecord>> MonitorObservers { get; init; } = [];

    /// <summary>Called every step after <c>optimizer.step()</c> and before the monitor's <see cref="ActivationMonitor.Step"/>,
    /// with the step's batch (e.g. the gradient-ICS probe recomputes the loss on it). Null: nothing.</summary>
    public Action<TrainStep>? AfterOptimizerStep { get; init; }

    /// <summary>File name of the per-step training curve in <see cref="OutputDirectory"/>.</summary>
    public const string TrainingLogFileName = "training.jsonl";

    /// <summary>Directory of the checkpoints in <see cref="OutputDirectory"/>.</summary>
    public const string CheckpointsDirectoryName = "checkpoints";

    /// <summary>Name of the latest checkpoint in <see cref="CheckpointsDirectoryName"/>.</summary>
    public const string LastCheckpointName = "last";

    /// <summary>Directory of the TensorBoard event files in <see cref="OutputDirectory"/>.</summary>
    public const string TensorBoardDirectoryName = "tensorboard";

    /// <summary>File name of the monitor's metrics in <see cref="OutputDirectory"/>.</summary>
    public const string MetricsFileName = "metrics.jsonl";

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid value and what is expected.</summary>
    public void Validate()
    {
        if (Steps < 1)
            throw new ArgumentOutOfRangeException(nameof(Steps), Steps, $"Steps must be at least 1; got {Steps}.");
        if (BatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, $"BatchSize must be at least 1; got {BatchSize}.");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate))
            throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, $"LearningRate must be a finite number > 0; got {LearningRate}.");
        if (!(Momentum >= 0 && Momentum < 1))
            throw new ArgumentOutOfRangeException(nameof(Momentum), Momentum, $"Momentum must be in [0, 1); got {Momentum}.");
        if (!(WeightDecay >= 0) || double.IsInfinity(WeightDecay))
            throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, $"WeightDecay must be a finite number >= 0; got {WeightDecay}.");
        if (RecordEvery < 1)
            throw new ArgumentOutOfRangeException(nameof(RecordEvery), RecordEvery, $"RecordEvery must be at least 1 (1 = every step); got {RecordEvery}.");
        if (OverheadBudget is { } budget && !(budget > 0 && budget < 1))
            throw new ArgumentOutOfRangeException(nameof(OverheadBudget), budget, $"OverheadBudget must be a share of the step time in (0, 1), e.g. 0.02; got {budget}.");
        if (EvaluateEvery < 0)
            throw new ArgumentOutOfRangeException(nameof(EvaluateEvery), EvaluateEvery, $"EvaluateEvery must be at least 0 (0 = only after the last step); got {EvaluateEvery}.");
        if (EvaluationBatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(EvaluationBatchSize), EvaluationBatchSize, $"EvaluationBatchSize must be at least 1; got {EvaluationBatchSize}.");
        if (LogEvery < 1)
            throw new ArgumentOutOfRangeException(nameof(LogEvery), LogEvery, $"LogEvery must be at least 1; got {LogEvery}.");
        if (LossWindow < 1)
            throw new ArgumentOutOfRangeException(nameof(LossWindow), LossWindow, $"LossWindow must be at least 1; got {LossWindow}.");
        if (Epochs is < 1)
            throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, $"Epochs must be at least 1 (or null to use Steps); got {Epochs}.");
        if (!(Beta1 >= 0 && Beta1 < 1))
            throw new ArgumentOutOfRangeException(nameof(Beta1), Beta1, $"Beta1 must be in [0, 1); got {Beta1}.");
        if (!(Beta2 >= 0 && Beta2 < 1))
            throw new ArgumentOutOfRangeException(nameof(Beta2), Beta2, $"Beta2 must be in [0, 1); got {Beta2}.");
        if (!(AdamEpsilon > 0) || double.IsInfinity(AdamEpsilon))
            throw new ArgumentOutOfRangeException(nameof(AdamEpsilon), AdamEpsilon, $"AdamEpsilon must be a finite number > 0; got {AdamEpsilon}.");
        if (Nesterov && (Optimizer != OptimizerKind.Sgd || Momentum <= 0))
            throw new ArgumentOutOfRangeException(nameof(Nesterov), Nesterov, $"Nesterov momentum needs the SGD optimizer with momentum > 0; got optimizer {Optimizer.ToCliName()}, momentum {Momentum}.");
        if (KeepCheckpoints < 0)
            throw new ArgumentOutOfRangeException(nameof(KeepCheckpoints), KeepCheckpoints, $"KeepCheckpoints must be at least 0; got {KeepCheckpoints}.");
        if ((WriteCheckpoints || Resume || TensorBoard) && OutputDirectory is null)
            throw new ArgumentOutOfRangeException(nameof(OutputDirectory), OutputDirectory, "WriteCheckpoints, Resume and TensorBoard need an OutputDirectory; got null.");
        Schedule?.Validate();
        if (OutputDirectory is { } dir && string.IsNullOrWhiteSpace(dir))
            throw new ArgumentOutOfRangeException(nameof(OutputDirectory), OutputDirectory, "OutputDirectory must be a directory path or null; got an empty string.");
        Monitor?.Validate();
    }
}
