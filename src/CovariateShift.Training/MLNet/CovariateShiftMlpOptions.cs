using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using Serilog;

namespace CovariateShift.Training.MLNet;

/// <summary>Optimizer of <see cref="CovariateShiftMlpTrainer"/>.</summary>
public enum MlpOptimizer
{
    /// <summary>SGD with momentum (<see cref="CovariateShiftMlpOptions.Momentum"/>).</summary>
    Sgd,

    /// <summary>Adam (β = 0.9, 0.999).</summary>
    Adam,
}

/// <summary>
/// Settings of <see cref="CovariateShiftMlpTrainer"/>: which columns to read, the TorchSharp MLP (depth, width,
/// activation, init, normalization from <c>CovariateShift.Nn</c>), the optimizer and how the activation monitor reports.
/// </summary>
public sealed record CovariateShiftMlpOptions
{
    /// <summary>The features column: a known-size vector of Single. Default "Features".</summary>
    public string FeatureColumnName { get; init; } = "Features";

    /// <summary>The label column: a key type (e.g. from <c>MapValueToKey</c>). Default "Label".</summary>
    public string LabelColumnName { get; init; } = "Label";

    /// <summary>Hidden layers, at least 1. Default 2.</summary>
    public int Depth { get; init; } = 2;

    /// <summary>Units per hidden layer, at least 1. Default 64.</summary>
    public int Width { get; init; } = 64;

    /// <summary>Hidden nonlinearity. Default ReLU.</summary>
    public ActivationKind Activation { get; init; } = ActivationKind.Relu;

    /// <summary>Weight initialization. Default He.</summary>
    public WeightInit Init { get; init; } = WeightInit.He;

    /// <summary>Normalization of every hidden layer (any kind an MLP supports; not instance). Default none.</summary>
    public NormKind Norm { get; init; } = NormKind.None;

    /// <summary>Optimizer. Default SGD with momentum.</summary>
    public MlpOptimizer Optimizer { get; init; } = MlpOptimizer.Sgd;

    /// <summary>Learning rate, finite and &gt; 0. Default 0.05.</summary>
    public double LearningRate { get; init; } = 0.05;

    /// <summary>SGD momentum in [0, 1). Default 0.9.</summary>
    public double Momentum { get; init; } = 0.9;

    /// <summary>L2 weight decay, &gt;= 0. Default 0.</summary>
    public double WeightDecay { get; init; }

    /// <summary>Passes over the training rows, at least 1. Default 10.</summary>
    public int Epochs { get; init; } = 10;

    /// <summary>Mini-batch size, at least 1 (capped at the row count; the last partial batch of an epoch is kept). Default 32.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Seed of the initialization and the shuffling: the same data and seed give the same model. Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>The monitor records every this many optimizer steps, at least 1. Default 10.</summary>
    public int RecordEvery { get; init; } = 10;

    /// <summary>The monitor's <see cref="MonitorOptions.OverheadBudget"/>, a share of the step time in (0, 1) (e.g. 0.02): it
    /// records every RecordEvery x 2^k steps, adapting k to stay under it. Null (default): every RecordEvery steps.</summary>
    public double? OverheadBudget { get; init; }

    /// <summary>Serilog logger for the monitor (per-layer Debug, per-step Information, anomaly Warnings) and training progress. Null: none.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>The monitor's JSON Lines metrics file (one object per layer per recorded step). Null: none.</summary>
    public string? MetricsPath { get; init; }

    /// <summary>Keep every record in memory (<see cref="CovariateShiftMlpModel.Records"/>, <see cref="CovariateShiftMlpModel.RecordsAsDataView"/>). Default true.</summary>
    public bool KeepRecords { get; init; } = true;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid value and what is expected.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(FeatureColumnName)) throw new ArgumentOutOfRangeException(nameof(FeatureColumnName), FeatureColumnName, "FeatureColumnName must name a column.");
        if (string.IsNullOrWhiteSpace(LabelColumnName)) throw new ArgumentOutOfRangeException(nameof(LabelColumnName), LabelColumnName, "LabelColumnName must name a column.");
        if (Depth < 1) throw new ArgumentOutOfRangeException(nameof(Depth), Depth, $"Depth must be at least 1; got {Depth}.");
        if (Width < 1) throw new ArgumentOutOfRangeException(nameof(Width), Width, $"Width must be at least 1; got {Width}.");
        if (Norm == NormKind.Instance) throw new ArgumentOutOfRangeException(nameof(Norm), Norm, "Instance normalization needs spatial dimensions; an MLP takes none, batch, layer, group, weight-std, rms, batch-renorm or noisy-batch.");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, $"LearningRate must be a finite number > 0; got {LearningRate}.");
        if (!(Momentum >= 0 && Momentum < 1)) throw new ArgumentOutOfRangeException(nameof(Momentum), Momentum, $"Momentum must be in [0, 1); got {Momentum}.");
        if (!(WeightDecay >= 0) || double.IsInfinity(WeightDecay)) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, $"WeightDecay must be a finite number >= 0; got {WeightDecay}.");
        if (Epochs < 1) throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, $"Epochs must be at least 1; got {Epochs}.");
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, $"BatchSize must be at least 1; got {BatchSize}.");
        if (RecordEvery < 1) throw new ArgumentOutOfRangeException(nameof(RecordEvery), RecordEvery, $"RecordEvery must be at least 1; got {RecordEvery}.");
        if (OverheadBudget is { } budget && !(budget > 0 && budget < 1))
            throw new ArgumentOutOfRangeException(nameof(OverheadBudget), budget, $"OverheadBudget must be a share of the step time in (0, 1), e.g. 0.02; got {budget}.");
    }
}
