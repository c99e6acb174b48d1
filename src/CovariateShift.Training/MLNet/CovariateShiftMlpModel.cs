using System.Text.Json;
using CovariateShift.Nn.Models;
using CovariateShift.Records;
using Microsoft.ML;
using Microsoft.ML.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.MLNet;

/// <summary>
/// A trained <see cref="CovariateShiftMlpTrainer"/>: an ML.NET <see cref="ITransformer"/> that adds <c>Score</c> (class
/// probabilities, a vector of Single with one entry per class) and <c>PredictedLabel</c> (a key with as many values as
/// the label key) to every row, from the TorchSharp MLP in evaluation mode. Also holds what the activation monitor
/// recorded during training. Owns the network (dispose to free it).
/// </summary>
public sealed class CovariateShiftMlpModel : ITransformer, IDisposable
{
    private readonly nn.Module<Tensor, Tensor> _network;
    private readonly ITransformer _mapping;
    private readonly Lock _sync = new();

    internal CovariateShiftMlpModel(nn.Module<Tensor, Tensor> network, ModelSpec spec, string featureColumnName, IReadOnlyList<StepRecord> records, IReadOnlyList<double> losses)
    {
        _network = network;
        _network.eval();
        Spec = spec;
        FeatureColumnName = featureColumnName;
        Records = records;
        TrainLosses = losses;
        Features = (int)spec.InputShape[0];
        Classes = spec.Classes;
        var ml = new MLContext(seed: 0);
        var inDef = SchemaDefinition.Create(typeof(MlpInput));
        inDef[nameof(MlpInput.Features)].ColumnName = featureColumnName;
        inDef[nameof(MlpInput.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, Features);
        var outDef = SchemaDefinition.Create(typeof(MlpOutput));
        outDef[nameof(MlpOutput.Score)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, Classes);
        outDef[nameof(MlpOutput.PredictedLabel)].ColumnType = new KeyDataViewType(typeof(uint), Classes);
        var estimator = ml.Transforms.CustomMapping<MlpInput, MlpOutput>(Map, CovariateShiftMlpMappingFactory.ContractName, inDef, outDef);
        _mapping = estimator.Fit(ml.Data.LoadFromEnumerable(Array.Empty<MlpInput>(), inDef));
    }

    /// <summary>The network's spec (architecture mlp, inputShape [features], classes, depth, width, activation, init, norm).</summary>
    public ModelSpec Spec { get; }

    /// <summary>The features column read when scoring.</summary>
    public string FeatureColumnName { get; }

    /// <summary>Length of the feature vector.</summary>
    public int Features { get; }

    /// <summary>Number of classes (the label key's count).</summary>
    public int Classes { get; }

    /// <summary>Every record the monitor made during training (empty when <see cref="CovariateShiftMlpOptions.KeepRecords"/> was false or after loading).</summary>
    public IReadOnlyList<StepRecord> Records { get; }

    /// <summary>Training loss of every optimizer step (empty after loading).</summary>
    public IReadOnlyList<double> TrainLosses { get; }

    /// <summary>The network (evaluation mode). Owned by this model.</summary>
    public nn.Module<Tensor, Tensor> Network => _network;

    /// <summary>The monitor's records as an IDataView, one row per layer per recorded step (<see cref="MonitorRecordRow"/>); save it with <c>mlContext.Data.SaveAsText</c>.</summary>
    public IDataView RecordsAsDataView(MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        return mlContext.Data.LoadFromEnumerable(MonitorRecordRow.From(Records).ToList());
    }

    /// <summary>Class probabilities for one feature vector (length <see cref="Features"/>).</summary>
    /// <exception cref="ArgumentException">The vector has the wrong length.</exception>
    public float[] Predict(ReadOnlySpan<float> features)
    {
        if (features.Length != Features)
            throw new ArgumentException($"Expected a feature vector of length {Features} (column '{FeatureColumnName}'); got {features.Length}.", nameof(features));
        lock (_sync)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var x = tensor(features.ToArray(), [1, Features], ScalarType.Float32);
            var p = nn.functional.softmax(_network.call(x), 1);
            return p.data<float>().ToArray();
        }
    }

    private void Map(MlpInput input, MlpOutput output)
    {
        var score = Predict(input.Features);
        int best = 0;
        for (int i = 1; i < score.Length; i++)
        {
            if (score[i] > score[best]) best = i;
        }

        output.Score = score;
        output.PredictedLabel = (uint)best;   // a custom mapping writes a key property 0-based: the column gets key value best + 1
    }

    /// <inheritdoc />
    public bool IsRowToRowMapper => _mapping.IsRowToRowMapper;

    /// <inheritdoc />
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => _mapping.GetOutputSchema(inputSchema);

    /// <inheritdoc />
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => _mapping.GetRowToRowMapper(inputSchema);

    /// <inheritdoc />
    public IDataView Transform(IDataView input) => _mapping.Transform(input);

    /// <summary>Saves the scoring step as an ML.NET custom mapping (contract <see cref="CovariateShiftMlpMappingFactory.ContractName"/>); the weights go in with <see cref="CovariateShiftMlpCatalog.SaveCovariateShift"/>.</summary>
    void ICanSaveModel.Save(ModelSaveContext ctx) => _mapping.Save(ctx);

    internal void WriteNetwork(Stream header, Stream weights)
    {
        JsonSerializer.Serialize(header, new SavedHeader(Spec.ToJson(), FeatureColumnName));
        using var writer = new BinaryWriter(weights, System.Text.Encoding.UTF8, leaveOpen: true);
        lock (_sync) _network.save(writer);
    }

    internal static CovariateShiftMlpModel ReadNetwork(Stream header, Stream weights, string source)
    {
        var h = JsonSerializer.Deserialize<SavedHeader>(header) ?? throw new InvalidDataException($"{source}: empty CovariateShiftMlp header.");
        var spec = ModelSpec.FromJson(h.Spec, source);
        var network = ModelZoo.Create(spec);
        using var reader = new BinaryReader(weights, System.Text.Encoding.UTF8, leaveOpen: true);
        network.load(reader);
        return new CovariateShiftMlpModel(network, spec, h.FeatureColumnName, [], []);
    }

    /// <inheritdoc />
    public void Dispose() => _network.Dispose();

    internal sealed record SavedHeader(string Spec, string FeatureColumnName);
}
