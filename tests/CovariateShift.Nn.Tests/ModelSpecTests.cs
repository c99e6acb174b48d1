using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Tests;

/// <summary>JSON model specs: the repository's models/*.json, round trips, and errors that name the file and the field.</summary>
[Collection(TorchGlobalState.Name)]
public sealed class ModelSpecTests
{
    public static TheoryData<string> RepositorySpecs()
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.GetFiles(ModelsDirectory(), "*.json").Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetFileName(file));
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(RepositorySpecs))]
    public void RepositorySpecsLoadBuildAndRun(string fileName)
    {
        var spec = ModelSpec.Load(Path.Combine(ModelsDirectory(), fileName));
        manual_seed(0);
        using var model = ModelZoo.Create(spec);
        using var scope = NewDisposeScope();
        var logits = model.call(randn([2, .. spec.InputShape]));
        Assert.Equal([2L, spec.Classes], logits.shape);
        Assert.True(logits.isfinite().all().item<bool>());
    }

    [Fact]
    public void ThePapersSpecsDescribeTheBatchNormPaperNetwork()
    {
        var plain = ModelSpec.Load(Path.Combine(ModelsDirectory(), "bn-paper-mnist-sigmoid.json"));
        var batch = ModelSpec.Load(Path.Combine(ModelsDirectory(), "bn-paper-mnist-sigmoid-batch.json"));
        Assert.Equal([100, 100, 100], plain.Widths!);
        Assert.Equal(ActivationKind.Sigmoid, plain.Activation);
        Assert.Equal(InitKind.Gaussian, plain.Init.Kind);
        Assert.Equal(NormKind.None, plain.Norm);
        Assert.Equal(plain.ToJson(), (batch with { Norm = NormKind.None, NormPlacement = NormPlacement.BeforeActivation }).ToJson());
    }

    [Fact]
    public void EveryFieldRoundTrips()
    {
        var spec = new ModelSpec
        {
            Architecture = "resnet32",
            InputShape = [3, 32, 32],
            Classes = 100,
            Activation = ActivationKind.Gelu,
            Init = WeightInit.Gaussian(0.02),
            Norm = NormKind.Group,
            NormPlacement = NormPlacement.AfterActivation,
            Groups = 8,
            Eps = 1e-3,
            Momentum = 0.05,
            BatchRenorm = new BatchRenormSchedule(2.5, 4, 100),
            NoisyBatch = new NoisyBatchNormOptions(0.25, 1.0, 1.5, 0.05, 0.2),
            Shortcut = ResNetShortcut.B,
        };
        using var directory = new TempDirectory();
        var path = directory.File("spec.json");
        spec.Save(path);
        var loaded = ModelSpec.Load(path);
        Assert.Equal(spec.ToJson(), loaded.ToJson());
        Assert.Equal(spec.NormOptions, loaded.NormOptions);
        Assert.Equal(spec.LayerSettings, loaded.LayerSettings);
        var json = File.ReadAllText(path);
        Assert.Contains("\"normPlacement\": \"after\"", json);
        Assert.Contains("\"init\": \"gaussian:0.02\"", json);
        Assert.Contains("\"rMax\": 2.5", json);
    }

    [Fact]
    public void OmittedFieldsTakeTheDefaults()
    {
        var spec = ModelSpec.FromJson("""{ "architecture": "mlp", "inputShape": [784], "depth": 2, "width": 8 }""");
        Assert.Equal(10, spec.Classes);
        Assert.Equal(ActivationKind.Relu, spec.Activation);
        Assert.Equal(WeightInit.Default, spec.Init);
        Assert.Equal(NormKind.None, spec.Norm);
        Assert.Equal(new NormOptions(), spec.NormOptions);
        Assert.DoesNotContain("batchRenorm", spec.ToJson());
    }

    [Theory]
    [InlineData("""{ "architecture": "mlp", "inputShape": [784], "norm": "bach" }""", "field 'norm'", "'bach'")]
    [InlineData("""{ "architecture": "mlp", "inputShape": [784], "activation": "swish" }""", "field 'activation'", "'swish'")]
    [InlineData("""{ "architecture": "mlp", "inputShape": [784], "init": "gaussian" }""", "field 'init'", "'gaussian'")]
    [InlineData("""{ "architecture": "mlp", "inputShape": [784], "normPlacement": 3 }""", "field 'normPlacement'", "Number")]
    [InlineData("""{ "architecture": "vgg", "inputShape": [784] }""", "field 'architecture'", "'vgg'")]
    [InlineData("""{ "architecture": "mlp", "inputShape": [784], "widht": 8 }""", "widht", "could not be mapped")]
    [InlineData("""{ "inputShape": [784] }""", "architecture", "missing required")]
    [InlineData("""{ "architecture": "mlp", "inputShape": [0, 28] }""", "field 'inputShape'", "[0, 28]")]
    [InlineData("""{ "architecture": "mlp", "inputShape": [784], "eps": -1 }""", "eps", "-1")]
    [InlineData("""{ "architecture": "mlp", "inputShape": [784], "batchRenorm": { "rMax": 0.5 } }""", "rMax", "0.5")]
    [InlineData("""{ "architecture": "mlp", "inputShape": [784], "depth": "eight" }""", "field 'depth'", "Int32")]
    [InlineData("""{ "architecture": "mlp", "inputShape": [784] """, "spec.json", "LineNumber")]
    [InlineData("""{ "architecture": "mlp", "inputShape": [784], "init": null }""", "field 'init'", "Null")]
    [InlineData("""{ "architecture": null, "inputShape": [784] }""", "field 'architecture'", "null")]
    public void BadFilesNameTheFileAndTheField(string json, string field, string detail)
    {
        using var directory = new TempDirectory();
        var path = directory.File("spec.json");
        File.WriteAllText(path, json);
        var ex = Assert.Throws<InvalidDataException>(() => ModelSpec.Load(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains(field, ex.Message);
        Assert.Contains(detail, ex.Message);
    }

    [Fact]
    public void AMissingFileIsReported()
    {
        using var directory = new TempDirectory();
        var path = directory.File("absent.json");
        var ex = Assert.Throws<FileNotFoundException>(() => ModelSpec.Load(path));
        Assert.Contains("absent.json", ex.Message);
    }

    /// <summary>The repository's models/ folder, found by walking up from the test binaries to the solution.</summary>
    private static string ModelsDirectory()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "CovariateShift.sln")))
            {
                return Path.Combine(directory.FullName, "models");
            }
        }

        throw new DirectoryNotFoundException($"No CovariateShift.sln above {AppContext.BaseDirectory}.");
    }
}
