using Microsoft.ML.Transforms;

namespace CovariateShift.Training.MLNet;

/// <summary>Input row of the scoring mapping: the features vector (its column name is the trainer's feature column).</summary>
public sealed class MlpInput
{
    /// <summary>The feature vector.</summary>
    public float[] Features { get; set; } = [];
}

/// <summary>Output row of the scoring mapping: the usual multiclass columns.</summary>
public sealed class MlpOutput
{
    /// <summary>Class probabilities (softmax of the network's logits), one per class, in key order.</summary>
    public float[] Score { get; set; } = [];

    /// <summary>The index (0-based) of the largest score; ML.NET stores it in the key column as key value index + 1.</summary>
    public uint PredictedLabel { get; set; }
}

/// <summary>
/// The ML.NET custom-mapping factory registered under <see cref="ContractName"/>, so that
/// <c>mlContext.Model.Load</c> can rebuild the scoring step of a saved pipeline. The network's weights are not part of
/// a custom mapping's saved state: <see cref="CovariateShiftMlpCatalog.LoadCovariateShift"/> puts the saved network back
/// in place. A pipeline loaded with plain <c>mlContext.Model.Load</c> fails with a message saying so when it scores.
/// </summary>
[CustomMappingFactoryAttribute(ContractName)]
public sealed class CovariateShiftMlpMappingFactory : CustomMappingFactory<MlpInput, MlpOutput>
{
    /// <summary>The contract name saved with the scoring step.</summary>
    public const string ContractName = "CovariateShift.CovariateShiftMlp";

    /// <inheritdoc />
    public override Action<MlpInput, MlpOutput> GetMapping() => static (_, _) =>
        throw new InvalidOperationException(
            "This CovariateShiftMlp scoring step was loaded without its network: save the model with mlContext.Model.SaveCovariateShift(...) " +
            "and load it with mlContext.Model.LoadCovariateShift(...) (plain mlContext.Model.Save/Load keep the pipeline but not the TorchSharp weights).");
}
