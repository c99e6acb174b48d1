using CovariateShift.Nn.Models;
using CovariateShift.Records;
using Microsoft.ML;
using Microsoft.ML.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.MLNet;

/// <summary>
/// An ML.NET multiclass trainer (<see cref="IEstimator{TTransformer}"/>) that trains a TorchSharp MLP from
/// <c>CovariateShift.Nn</c> on a known-size Single vector feature column and a key label column, with an
/// <see cref="ActivationMonitor"/> attached for the whole training (Serilog, metrics file, in-memory records).
/// Create it with <c>mlContext.MulticlassClassification.Trainers.CovariateShiftMlp(...)</c>.
/// </summary>
/// <remarks>
/// Training: cross-entropy, <see cref="CovariateShiftMlpOptions.Epochs"/> passes over the rows in a new random order each
/// (from <see cref="CovariateShiftMlpOptions.Seed"/>), mini-batches of <see cref="CovariateShiftMlpOptions.BatchSize"/>
/// (an epoch's last partial batch is kept unless it has a single row, which batch statistics cannot use). Rows whose
/// label is missing (key value 0) are skipped. Every step runs in its own dispose scope.
/// </remarks>
public sealed class CovariateShiftMlpTrainer : IEstimator<CovariateShiftMlpModel>
{
    private readonly CovariateShiftMlpOptions _options;

    /// <summary>A trainer with <paramref name="options"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the message names it.</exception>
    public CovariateShiftMlpTrainer(CovariateShiftMlpOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
    }

    /// <summary>The options in use.</summary>
    public CovariateShiftMlpOptions Options => _options;

    /// <summary>The input columns plus <c>Score</c> (Single vector) and <c>PredictedLabel</c> (key).</summary>
    /// <exception cref="ArgumentException">A column is missing or has the wrong type; the message names it and what is expected.</exception>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var columns = inputSchema.Select(c => c.Name).ToList();
        var f = inputSchema.FirstOrDefault(c => c.Name == _options.FeatureColumnName);
        if (f.Name is null) throw MissingColumn("feature", _options.FeatureColumnName, columns);
        if (f.Kind != SchemaShape.Column.VectorKind.Vector || f.ItemType != NumberDataViewType.Single)
            throw new ArgumentException($"Feature column '{_options.FeatureColumnName}' must be a known-size vector of Single (e.g. from Concatenate); got {f.Kind} of {f.ItemType}.");
        var l = inputSchema.FirstOrDefault(c => c.Name == _options.LabelColumnName);
        if (l.Name is null) throw MissingColumn("label", _options.LabelColumnName, columns);
        if (!l.IsKey) throw NotKey(_options.LabelColumnName, l.ItemType?.ToString() ?? "?");
        var ml = new MLContext(seed: 0);
        var inDef = SchemaDefinition.Create(typeof(MlpInput));
        inDef[nameof(MlpInput.Features)].ColumnName = _options.FeatureColumnName;
        inDef[nameof(MlpInput.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, 1);
        var outDef = SchemaDefinition.Create(typeof(MlpOutput));
        outDef[nameof(MlpOutput.Score)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, 2);
        outDef[nameof(MlpOutput.PredictedLabel)].ColumnType = new KeyDataViewType(typeof(uint), 2);
        return ml.Transforms.CustomMapping<MlpInput, MlpOutput>(static (_, _) => { }, null, inDef, outDef).GetOutputSchema(inputSchema);
    }

    /// <summary>Reads the feature and label columns, trains the network with the monitor attached and returns the model.</summary>
    /// <exception cref="ArgumentException">A column is missing or has the wrong type, or no row has a label.</exception>
    public CovariateShiftMlpModel Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var o = _options;
        var (x, y, features, classes) = Read(input);
        var log = o.Logger?.ForContext(Serilog.Core.Constants.SourceContextPropertyName, "CovariateShift.MLNet");
        torch.manual_seed(o.Seed);
        var spec = new ModelSpec
        {
            Architecture = "mlp", InputShape = [features], Classes = classes, Depth = o.Depth, Width = o.Width,
            Activation = o.Activation, Init = o.Init, Norm = o.Norm,
        };
        var network = ModelZoo.Create(spec);
        var records = new List<StepRecord>();
        var losses = new List<double>();
        try
        {
            using var xs = tensor(x, [y.Length, features], ScalarType.Float32);
            using var ys = tensor(y, ScalarType.Int64);
            using var generator = new Generator(unchecked((ulong)o.Seed));
            network.train();
            using var optimizer = o.Optimizer == MlpOptimizer.Adam
                ? (optim.Optimizer)optim.Adam(network.parameters(), o.LearningRate, weight_decay: o.WeightDecay)
                : optim.SGD(network.parameters(), o.LearningRate, o.Momentum, weight_decay: o.WeightDecay);
            var monitorOptions = new MonitorOptions { RecordEvery = o.RecordEvery, OverheadBudget = o.OverheadBudget, Logger = o.Logger, JsonLinesPath = o.MetricsPath };
            using var monitor = ActivationMonitor.Attach(network, monitorOptions);
            using var subscription = o.KeepRecords ? monitor.Subscribe(new Collector(records)) : null;
            log?.Information("Training a {Depth}x{Width} {Activation} MLP ({Norm} norm) on {Rows} rows of {Features} features, {Classes} classes: {Epochs} epochs of batches of {BatchSize}, {Optimizer} lr {LearningRate}, seed {Seed}",
                o.Depth, o.Width, o.Activation, o.Norm, y.Length, features, classes, o.Epochs, o.BatchSize, o.Optimizer, o.LearningRate, o.Seed);
            int batch = Math.Min(o.BatchSize, y.Length);
            for (int epoch = 0; epoch < o.Epochs; epoch++)
            {
                using var order = randperm(y.Length, generator: generator);
                for (int start = 0; start < y.Length; start += batch)
                {
                    int end = Math.Min(y.Length, start + batch);
                    if (end - start < 2 && start > 0) break;
                    using var scope = NewDisposeScope();
                    var idx = order[start..end];
                    optimizer.zero_grad();
                    var loss = nn.functional.cross_entropy(network.call(xs.index_select(0, idx)), ys.index_select(0, idx));
                    loss.backward();
                    monitor.RecordGradients();
                    optimizer.step();
                    losses.Add(loss.item<float>());
                    monitor.Step(loss);
                }

                log?.Information("Epoch {Epoch}/{Epochs}: last loss {Loss:F4}", epoch + 1, o.Epochs, losses.Count > 0 ? losses[^1] : double.NaN);
            }
        }
        catch
        {
            network.Dispose();
            throw;
        }

        return new CovariateShiftMlpModel(network, spec, o.FeatureColumnName, records, losses);
    }

    private (float[] X, long[] Y, int Features, int Classes) Read(IDataView input)
    {
        var o = _options;
        var schema = input.Schema;
        var columns = schema.Select(c => c.Name).ToList();
        var f = schema.GetColumnOrNull(o.FeatureColumnName) ?? throw MissingColumn("feature", o.FeatureColumnName, columns);
        if (f.Type is not VectorDataViewType { ItemType: NumberDataViewType n, IsKnownSize: true } vt || n != NumberDataViewType.Single)
            throw new ArgumentException($"Feature column '{o.FeatureColumnName}' must be a known-size vector of Single (e.g. from Concatenate); got {f.Type}.");
        var l = schema.GetColumnOrNull(o.LabelColumnName) ?? throw MissingColumn("label", o.LabelColumnName, columns);
        if (l.Type is not KeyDataViewType key) throw NotKey(o.LabelColumnName, l.Type.ToString() ?? "?");
        if (key.Count > int.MaxValue || key.Count < 2)
            throw new ArgumentException($"Label column '{o.LabelColumnName}' must be a key with 2 or more values; got {key.Count}.");
        int features = vt.Size, classes = (int)key.Count;
        var x = new List<float>();
        var y = new List<long>();
        using (var cursor = input.GetRowCursor([f, l]))
        {
            var getFeatures = cursor.GetGetter<VBuffer<float>>(f);
            var getLabel = cursor.GetGetter<uint>(l);
            VBuffer<float> buffer = default;
            uint label = 0;
            while (cursor.MoveNext())
            {
                getLabel(ref label);
                if (label == 0) continue;
                getFeatures(ref buffer);
                foreach (var v in buffer.DenseValues()) x.Add(v);
                y.Add(label - 1);
            }
        }

        if (y.Count == 0) throw new ArgumentException($"No row of the training data has a label in column '{o.LabelColumnName}'.");
        return ([.. x], [.. y], features, classes);
    }

    private static ArgumentException MissingColumn(string role, string name, IEnumerable<string> columns) =>
        new($"The {role} column '{name}' is not in the data; its columns are: {string.Join(", ", columns)}. " +
            $"Name it in the options ({(role == "feature" ? "FeatureColumnName" : "LabelColumnName")}) or create it (e.g. Concatenate / MapValueToKey).");

    private static ArgumentException NotKey(string name, string type) =>
        new($"The label column '{name}' must be a key type; got {type}. Map it to a key first: mlContext.Transforms.Conversion.MapValueToKey(\"{name}\").");

    private sealed class Collector(List<StepRecord> records) : IObserver<StepRecord>
    {
        public void OnCompleted()
        {
        }

        public void OnError(Exception error)
        {
        }

        public void OnNext(StepRecord value) => records.Add(value);
    }
}
