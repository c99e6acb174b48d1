using System.Globalization;
using CovariateShift.Training.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;
using Xunit.Abstractions;

namespace CovariateShift.Training.Tests;

/// <summary>The ML.NET trainer in a real pipeline (CSV -> concatenate -> normalize -> trainer -> evaluate), save/load, records, bad options.</summary>
public sealed class MlNetTrainerTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-mlnet-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>One CSV row: two informative features on very different scales, one pure-noise feature, a text label.</summary>
    private sealed class Row
    {
        [LoadColumn(0)] public float Size { get; set; }

        [LoadColumn(1)] public float Ratio { get; set; }

        [LoadColumn(2)] public float Noise { get; set; }

        [LoadColumn(3)] public string Label { get; set; } = "";
    }

    /// <summary>
    /// Writes n rows: u = (Size − 50) / 50 and v = Ratio in [−1, 1], label = the 120° sector of the angle of (u, v)
    /// ("east" / "north" / "west"): a known, noise-free, non-linear decision boundary (Bayes accuracy 1).
    /// </summary>
    private static string WriteCsv(string path, int n, int seed)
    {
        var rng = new Random(seed);
        var lines = new List<string> { "size,ratio,noise,label" };
        for (int i = 0; i < n; i++)
        {
            double u = rng.NextDouble() * 2 - 1, v = rng.NextDouble() * 2 - 1;
            lines.Add(string.Create(CultureInfo.InvariantCulture, $"{50 + 50 * u:R},{v:R},{rng.NextDouble() * 1000:R},{TrueLabel(u, v)}"));
        }

        File.WriteAllLines(path, lines);
        return path;
    }

    private static string TrueLabel(double u, double v)
    {
        double angle = Math.Atan2(v, u);
        if (angle < 0) angle += 2 * Math.PI;
        return (int)(angle / (2 * Math.PI / 3)) switch { 0 => "east", 1 => "north", _ => "west" };
    }

    private (MLContext Ml, IDataView Train, IDataView Test) Data(int trainRows = 1500, int testRows = 500)
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromTextFile<Row>(WriteCsv(Path.Combine(_dir, "train.csv"), trainRows, 1), separatorChar: ',', hasHeader: true);
        var test = ml.Data.LoadFromTextFile<Row>(WriteCsv(Path.Combine(_dir, "test.csv"), testRows, 2), separatorChar: ',', hasHeader: true);
        return (ml, train, test);
    }

    private static EstimatorChain<CovariateShiftMlpModel> Pipeline(MLContext ml, CovariateShiftMlpOptions options) =>
        ml.Transforms.Concatenate("Features", nameof(Row.Size), nameof(Row.Ratio), nameof(Row.Noise))
            .Append(ml.Transforms.NormalizeMeanVariance("Features"))
            .Append(ml.Transforms.Conversion.MapValueToKey("Label"))
            .Append(ml.MulticlassClassification.Trainers.CovariateShiftMlp(options));

    private static readonly CovariateShiftMlpOptions Small = new()
    {
        Depth = 2, Width = 32, Epochs = 20, BatchSize = 32, LearningRate = 0.05, Seed = 3, RecordEvery = 20,
    };

    [Fact]
    [Trait("Category", "Slow")]
    public void The_pipeline_learns_a_known_boundary_evaluates_with_mlnet_and_round_trips_through_save_and_load()
    {
        var (ml, train, test) = Data();
        var metricsPath = Path.Combine(_dir, "metrics.jsonl");
        var model = Pipeline(ml, Small with { Norm = Nn.Normalization.NormKind.Batch, MetricsPath = metricsPath }).Fit(train);
        var scored = model.Transform(test);
        var metrics = ml.MulticlassClassification.Evaluate(scored);

        // Independent accuracy: PredictedLabel's key text against the true label recomputed from the raw columns.
        var rows = ml.Data.CreateEnumerable<Row>(test, reuseRowObject: false).ToList();
        var keyNames = default(VBuffer<ReadOnlyMemory<char>>);
        scored.Schema["Label"].GetKeyValues(ref keyNames);   // PredictedLabel uses the label key's values
        var names = keyNames.DenseValues().Select(m => m.ToString()).ToArray();
        var predicted = scored.GetColumn<uint>("PredictedLabel").ToList();
        double accuracy = rows.Zip(predicted).Count(p => names[p.Second - 1] == TrueLabel((p.First.Size - 50) / 50, p.First.Ratio)) / (double)rows.Count;
        output.WriteLine($"ML.NET micro accuracy {metrics.MicroAccuracy:F4}, macro {metrics.MacroAccuracy:F4}, log-loss {metrics.LogLoss:F4}; recomputed accuracy {accuracy:F4}");
        Assert.True(metrics.MicroAccuracy >= 0.9, $"accuracy {metrics.MicroAccuracy} on a noise-free boundary");
        Assert.Equal(accuracy, metrics.MicroAccuracy, 12);

        // Scores are probabilities.
        foreach (var s in scored.GetColumn<float[]>("Score").Take(50)) Assert.Equal(1.0, s.Sum(), 4);

        // The monitor ran: records in memory, as an IDataView, in the metrics file.
        var mlp = model.LastTransformer;
        Assert.NotEmpty(mlp.Records);
        int layers = mlp.Records[0].Layers.Count;
        Assert.Equal(mlp.Records.Count * layers, File.ReadAllLines(metricsPath).Length);
        var view = mlp.RecordsAsDataView(ml);
        var means = view.GetColumn<float>("Mean").ToList();
        Assert.Equal(mlp.Records.Count * layers, means.Count);
        Assert.Equal((float)mlp.Records[1].Layers[2].Statistics!.Mean, means[layers + 2]);
        var csv = Path.Combine(_dir, "records.csv");
        using (var stream = File.Create(csv)) ml.Data.SaveAsText(view, stream, separatorChar: ',', headerRow: true, schema: false);
        var csvLines = File.ReadAllLines(csv);
        Assert.Contains("Layer", csvLines[0], StringComparison.Ordinal);
        Assert.Equal(means.Count + 1, csvLines.Length);

        // Save / load: identical predictions.
        var path = Path.Combine(_dir, "model.zip");
        ml.Model.SaveCovariateShift(model, train.Schema, path);
        var ml2 = new MLContext(seed: 5);
        var loaded = ml2.Model.LoadCovariateShift(path, out var schema);
        Assert.Equal(train.Schema.Count, schema.Count);
        var again = loaded.Transform(test);
        Assert.Equal(scored.GetColumn<float[]>("Score").ToList(), again.GetColumn<float[]>("Score").ToList());
        Assert.Equal(predicted, again.GetColumn<uint>("PredictedLabel").ToList());
        Assert.Equal(metrics.MicroAccuracy, ml2.MulticlassClassification.Evaluate(again).MicroAccuracy, 12);

        // Plain Save/Load keeps the pipeline but not the weights, and says so when scoring.
        var plain = Path.Combine(_dir, "plain.zip");
        ml.Model.Save(model, train.Schema, plain);
        var withoutNetwork = new MLContext().Model.Load(plain, out _);
        var e = Assert.ThrowsAny<Exception>(() => withoutNetwork.Transform(test).GetColumn<uint>("PredictedLabel").ToList());
        Assert.Contains("SaveCovariateShift", e.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Same_seed_same_model()
    {
        var (ml, train, test) = Data(200, 50);
        var options = Small with { Epochs = 2 };
        var a = Pipeline(ml, options).Fit(train).Transform(test).GetColumn<float[]>("Score").ToList();
        var b = Pipeline(ml, options).Fit(train).Transform(test).GetColumn<float[]>("Score").ToList();
        Assert.Equal(a, b);
    }

    [Fact]
    public void An_overhead_budget_reaches_the_monitor()
    {
        // 200 rows in batches of 32: 7 steps per epoch, 140 steps. Without a budget every step is recorded; with one no
        // monitor can meet (1e-6 of the step time) the interval goes from 1 to its maximum (1,024) at the first decision
        // (the first record is not used; then at least two records and 50 steps), and nothing is recorded after it.
        var (ml, train, _) = Data(200, 50);
        var options = Small with { Epochs = 20, RecordEvery = 1 };
        var all = Pipeline(ml, options).Fit(train).LastTransformer.Records.Select(r => r.Step).ToList();
        Assert.Equal(Enumerable.Range(0, 140).Select(i => (long)i), all);
        var budgeted = Pipeline(ml, options with { OverheadBudget = 1e-6 }).Fit(train).LastTransformer.Records.Select(r => r.Step).ToList();
        Assert.Equal(Enumerable.Range(0, budgeted.Count).Select(i => (long)i), budgeted);
        Assert.InRange(budgeted.Count, 51, 70);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.CovariateShiftMlp(Small with { OverheadBudget = 1.5 }));
        Assert.Equal("OverheadBudget", e.ParamName);
    }

    [Fact]
    public void A_missing_feature_column_is_named_with_the_columns_there_are()
    {
        var (ml, train, _) = Data(100, 10);
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.MulticlassClassification.Trainers.CovariateShiftMlp(Small with { FeatureColumnName = "Pixels" }));
        var e = Assert.Throws<ArgumentException>(() => pipeline.Fit(train));
        Assert.Contains("'Pixels'", e.Message, StringComparison.Ordinal);
        Assert.Contains("Size, Ratio, Noise, Label", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_label_that_is_text_or_a_number_rather_than_a_key_says_to_map_it_to_a_key()
    {
        var (ml, train, _) = Data(100, 10);
        var text = ml.Transforms.Concatenate("Features", "Size", "Ratio").Append(ml.MulticlassClassification.Trainers.CovariateShiftMlp(Small));
        var e = Assert.Throws<ArgumentException>(() => text.Fit(train));
        Assert.Contains("must be a key type", e.Message, StringComparison.Ordinal);
        Assert.Contains("MapValueToKey", e.Message, StringComparison.Ordinal);
        var number = ml.Transforms.Concatenate("Features", "Size", "Ratio")
            .Append(ml.MulticlassClassification.Trainers.CovariateShiftMlp(Small with { LabelColumnName = "Noise" }));
        e = Assert.Throws<ArgumentException>(() => number.Fit(train));
        Assert.Contains("'Noise' must be a key type; got Single", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_numeric_options_are_rejected_by_name()
    {
        var ml = new MLContext();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.CovariateShiftMlp(Small with { Epochs = 0 }));
        Assert.Equal("Epochs", e.ParamName);
    }
}
