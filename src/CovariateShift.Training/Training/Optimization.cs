using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Training;

/// <summary>The optimizers of the trainer.</summary>
public enum OptimizerKind
{
    /// <summary>Stochastic gradient descent with (optionally Nesterov) momentum and L2 weight decay.</summary>
    Sgd,

    /// <summary>Adam (Kingma and Ba 2015) with L2 weight decay added to the gradient.</summary>
    Adam,

    /// <summary>AdamW (Loshchilov and Hutter 2019): Adam with decoupled weight decay.</summary>
    AdamW,
}

/// <summary>Learning-rate schedules (each with an optional linear warm-up, see <see cref="LearningRateSchedule"/>).</summary>
public enum ScheduleKind
{
    /// <summary>The base learning rate throughout.</summary>
    Constant,

    /// <summary>The base rate times <see cref="LearningRateSchedule.StepFactor"/> every <see cref="LearningRateSchedule.StepEveryEpochs"/> epochs.</summary>
    Step,

    /// <summary>Cosine decay from the base rate (after the warm-up) to 0 at the last step.</summary>
    Cosine,
}

/// <summary>Command-line names of <see cref="OptimizerKind"/> and <see cref="ScheduleKind"/>.</summary>
public static class OptimizationNames
{
    /// <summary>sgd, adam, adamw.</summary>
    public static IReadOnlyList<string> Optimizers { get; } = ["sgd", "adam", "adamw"];

    /// <summary>constant, step, cosine.</summary>
    public static IReadOnlyList<string> Schedules { get; } = ["constant", "step", "cosine"];

    /// <summary>The optimizer named <paramref name="name"/> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the valid ones.</exception>
    public static OptimizerKind ParseOptimizer(string name) => name?.Trim().ToLowerInvariant() switch
    {
        "sgd" => OptimizerKind.Sgd,
        "adam" => OptimizerKind.Adam,
        "adamw" => OptimizerKind.AdamW,
        _ => throw new ArgumentException($"Unknown optimizer '{name}'; expected one of {string.Join(", ", Optimizers)}."),
    };

    /// <summary>The schedule named <paramref name="name"/> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the valid ones.</exception>
    public static ScheduleKind ParseSchedule(string name) => name?.Trim().ToLowerInvariant() switch
    {
        "constant" => ScheduleKind.Constant,
        "step" => ScheduleKind.Step,
        "cosine" => ScheduleKind.Cosine,
        _ => throw new ArgumentException($"Unknown schedule '{name}'; expected one of {string.Join(", ", Schedules)}."),
    };

    /// <summary>The command-line name of <paramref name="kind"/>.</summary>
    public static string ToCliName(this OptimizerKind kind) => kind.ToString().ToLowerInvariant();

    /// <summary>The command-line name of <paramref name="kind"/>.</summary>
    public static string ToCliName(this ScheduleKind kind) => kind.ToString().ToLowerInvariant();
}

/// <summary>
/// A learning-rate schedule as a pure function of the step, so that resuming needs only the step: with warm-up W
/// steps, step t (0-based) uses base × (t + 1) / W while t &lt; W; afterwards constant: base; step: base ×
/// factor^⌊epoch(t) / K⌋ with epoch(t) = ⌊t / steps per epoch⌋; cosine: base × (1 + cos(π (t − W) / (T − W))) / 2
/// over the T steps of the run.
/// </summary>
public sealed record LearningRateSchedule
{
    /// <summary>The schedule's shape. Default constant.</summary>
    public ScheduleKind Kind { get; init; } = ScheduleKind.Constant;

    /// <summary>Steps of linear warm-up from base/W to base. 0 (default) = none.</summary>
    public int WarmupSteps { get; init; }

    /// <summary>Step schedule: multiply by <see cref="StepFactor"/> every this many epochs. At least 1. Default 10.</summary>
    public int StepEveryEpochs { get; init; } = 10;

    /// <summary>Step schedule: the factor, in (0, 1]. Default 0.1.</summary>
    public double StepFactor { get; init; } = 0.1;

    /// <summary>The learning rate of step <paramref name="step"/> (0-based).</summary>
    public double At(long step, double baseRate, long totalSteps, long stepsPerEpoch)
    {
        if (step < WarmupSteps) return baseRate * (step + 1) / WarmupSteps;
        return Kind switch
        {
            ScheduleKind.Step => baseRate * Math.Pow(StepFactor, step / Math.Max(1, stepsPerEpoch) / StepEveryEpochs),
            ScheduleKind.Cosine => totalSteps <= WarmupSteps ? baseRate : baseRate * 0.5 * (1 + Math.Cos(Math.PI * (step - WarmupSteps) / (totalSteps - WarmupSteps))),
            _ => baseRate,
        };
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid value and what is expected.</summary>
    public void Validate()
    {
        if (WarmupSteps < 0)
            throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps, $"WarmupSteps must be at least 0; got {WarmupSteps}.");
        if (StepEveryEpochs < 1)
            throw new ArgumentOutOfRangeException(nameof(StepEveryEpochs), StepEveryEpochs, $"StepEveryEpochs must be at least 1; got {StepEveryEpochs}.");
        if (!(StepFactor > 0 && StepFactor <= 1))
            throw new ArgumentOutOfRangeException(nameof(StepFactor), StepFactor, string.Create(CultureInfo.InvariantCulture, $"StepFactor must be in (0, 1]; got {StepFactor}."));
    }
}

/// <summary>Builds the TorchSharp optimizer of <see cref="TrainerOptions"/> and sets its learning rate.</summary>
public static class OptimizerFactory
{
    /// <summary>The optimizer of <paramref name="o"/> over <paramref name="parameters"/>.</summary>
    public static TorchSharp.Modules.OptimizerHelper Create(TrainerOptions o, IEnumerable<TorchSharp.Modules.Parameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(o);
        return o.Optimizer switch
        {
            OptimizerKind.Adam => optim.Adam(parameters, o.LearningRate, o.Beta1, o.Beta2, o.AdamEpsilon, o.WeightDecay),
            OptimizerKind.AdamW => optim.AdamW(parameters, o.LearningRate, o.Beta1, o.Beta2, o.AdamEpsilon, o.WeightDecay),
            _ => optim.SGD(parameters, o.LearningRate, o.Momentum, dampening: 0, weight_decay: o.WeightDecay, nesterov: o.Nesterov),
        };
    }

    /// <summary>Sets the learning rate of every parameter group of <paramref name="optimizer"/>.</summary>
    public static void SetLearningRate(optim.Optimizer optimizer, double rate)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        foreach (var group in optimizer.ParamGroups) group.LearningRate = rate;
    }
}
