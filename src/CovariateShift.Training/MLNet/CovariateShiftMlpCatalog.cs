using System.IO.Compression;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;

namespace CovariateShift.Training.MLNet;

/// <summary>
/// ML.NET catalog extensions: <c>mlContext.MulticlassClassification.Trainers.CovariateShiftMlp(...)</c>, and
/// <c>mlContext.Model.SaveCovariateShift</c> / <c>LoadCovariateShift</c> for pipelines that contain one.
/// </summary>
/// <remarks>
/// Saving: ML.NET keeps a custom transformer's saved state private to its own assemblies, so the scoring step is saved as
/// an ML.NET custom mapping (contract <see cref="CovariateShiftMlpMappingFactory.ContractName"/>) by
/// <c>mlContext.Model.Save</c>, and <see cref="SaveCovariateShift"/> adds the network (spec and TorchSharp weights) as
/// entries <c>CovariateShiftMlp/{i}/header.json</c> and <c>CovariateShiftMlp/{i}/weights.bin</c> of the same zip file.
/// <see cref="LoadCovariateShift"/> loads the pipeline with <c>mlContext.Model.Load</c> and puts each saved network back in
/// place of its custom mapping, in pipeline order.
/// </remarks>
public static class CovariateShiftMlpCatalog
{
    private const string EntryPrefix = "CovariateShiftMlp/";

    /// <summary>A <see cref="CovariateShiftMlpTrainer"/> with <paramref name="options"/>.</summary>
    public static CovariateShiftMlpTrainer CovariateShiftMlp(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, CovariateShiftMlpOptions options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new CovariateShiftMlpTrainer(options);
    }

    /// <summary>A <see cref="CovariateShiftMlpTrainer"/> with the common settings; the rest as in <see cref="CovariateShiftMlpOptions"/>.</summary>
    public static CovariateShiftMlpTrainer CovariateShiftMlp(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string labelColumnName = "Label",
        string featureColumnName = "Features",
        int depth = 2,
        int width = 64,
        int epochs = 10,
        long seed = 0)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new CovariateShiftMlpTrainer(new CovariateShiftMlpOptions
        {
            LabelColumnName = labelColumnName, FeatureColumnName = featureColumnName, Depth = depth, Width = width, Epochs = epochs, Seed = seed,
        });
    }

    /// <summary>
    /// <c>mlContext.Model.Save(model, inputSchema, path)</c>, then every <see cref="CovariateShiftMlpModel"/> in
    /// <paramref name="model"/> (itself or inside transformer chains) is added to the zip file.
    /// </summary>
    public static void SaveCovariateShift(this ModelOperationsCatalog catalog, ITransformer model, DataViewSchema inputSchema, string path)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        catalog.Save(model, inputSchema, path);
        var networks = Flatten(model).OfType<CovariateShiftMlpModel>().ToList();
        using var zip = ZipFile.Open(path, ZipArchiveMode.Update);
        for (int i = 0; i < networks.Count; i++)
        {
            using var header = zip.CreateEntry($"{EntryPrefix}{i}/header.json").Open();
            using var weights = zip.CreateEntry($"{EntryPrefix}{i}/weights.bin").Open();
            networks[i].WriteNetwork(header, weights);
        }
    }

    /// <summary>
    /// Loads a model saved with <see cref="SaveCovariateShift"/>: <c>mlContext.Model.Load(path, out inputSchema)</c> with
    /// every CovariateShiftMlp scoring step given its network back.
    /// </summary>
    /// <exception cref="InvalidDataException">The file holds a different number of networks than scoring steps.</exception>
    public static ITransformer LoadCovariateShift(this ModelOperationsCatalog catalog, string path, out DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var loaded = catalog.Load(path, out inputSchema);
        var networks = new List<CovariateShiftMlpModel>();
        using (var zip = ZipFile.OpenRead(path))
        {
            for (int i = 0; zip.GetEntry($"{EntryPrefix}{i}/header.json") is { } header; i++)
            {
                var weights = zip.GetEntry($"{EntryPrefix}{i}/weights.bin") ?? throw new InvalidDataException($"'{path}': {EntryPrefix}{i}/weights.bin is missing.");
                using var h = header.Open();
                using var w = weights.Open();
                using var buffer = new MemoryStream();
                w.CopyTo(buffer);
                buffer.Position = 0;
                networks.Add(CovariateShiftMlpModel.ReadNetwork(h, buffer, $"{path}:{EntryPrefix}{i}"));
            }
        }

        int next = 0;
        var result = Replace(loaded, networks, ref next);
        if (next != networks.Count)
            throw new InvalidDataException($"'{path}' holds {networks.Count} CovariateShiftMlp networks but its pipeline has {next} CovariateShiftMlp scoring steps.");
        return result;
    }

    private static IEnumerable<ITransformer> Flatten(ITransformer t) =>
        t is IEnumerable<ITransformer> chain ? chain.SelectMany(Flatten) : [t];

    private static ITransformer Replace(ITransformer t, List<CovariateShiftMlpModel> networks, ref int next)
    {
        if (t is CustomMappingTransformer<MlpInput, MlpOutput>)
        {
            if (next >= networks.Count)
                throw new InvalidDataException("The model has a CovariateShiftMlp scoring step but no saved network for it: it was saved with mlContext.Model.Save instead of SaveCovariateShift.");
            return networks[next++];
        }

        if (t is IEnumerable<ITransformer> chain)
        {
            var parts = new List<ITransformer>();
            foreach (var part in chain) parts.Add(Replace(part, networks, ref next));
            return new TransformerChain<ITransformer>([.. parts]);
        }

        return t;
    }
}
