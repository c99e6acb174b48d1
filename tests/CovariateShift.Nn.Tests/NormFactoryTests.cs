using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using TorchSharp;
using TorchSharp.Modules;
using static CovariateShift.Nn.Tests.TestTensors;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Tests;

/// <summary>Which layer <see cref="Norms.Create"/> builds, group counts, initialization and option validation.</summary>
[Collection(TorchGlobalState.Name)]
public sealed class NormFactoryTests
{
    [Theory]
    [InlineData(NormKind.Batch, NormTarget.Features, "BatchNorm1d")]
    [InlineData(NormKind.Batch, NormTarget.Channels, "BatchNorm2d")]
    [InlineData(NormKind.Layer, NormTarget.Features, "LayerNorm")]
    [InlineData(NormKind.Layer, NormTarget.Channels, "GroupNorm")]
    [InlineData(NormKind.Group, NormTarget.Features, "FeatureGroupNorm")]
    [InlineData(NormKind.Group, NormTarget.Channels, "GroupNorm")]
    [InlineData(NormKind.WeightStd, NormTarget.Features, "FeatureGroupNorm")]
    [InlineData(NormKind.WeightStd, NormTarget.Channels, "GroupNorm")]
    [InlineData(NormKind.Instance, NormTarget.Channels, "InstanceNorm2d")]
    [InlineData(NormKind.Rms, NormTarget.Features, "RmsNorm")]
    [InlineData(NormKind.Rms, NormTarget.Channels, "RmsNorm")]
    [InlineData(NormKind.BatchRenorm, NormTarget.Features, "BatchRenorm")]
    [InlineData(NormKind.BatchRenorm, NormTarget.Channels, "BatchRenorm")]
    [InlineData(NormKind.NoisyBatch, NormTarget.Features, "NoisyBatchNorm")]
    [InlineData(NormKind.NoisyBatch, NormTarget.Channels, "NoisyBatchNorm")]
    public void CreatesTheDocumentedLayer(NormKind kind, NormTarget target, string typeName)
    {
        using var norm = Norms.Create(kind, target, 16);
        Assert.NotNull(norm);
        Assert.Equal(typeName, norm.GetType().Name);
    }

    [Theory]
    [InlineData(NormTarget.Features)]
    [InlineData(NormTarget.Channels)]
    public void NoneBuildsNoLayer(NormTarget target) => Assert.Null(Norms.Create(NormKind.None, target, 16));

    [Theory]
    [InlineData(NormKind.Group, NormTarget.Channels, 16)]
    [InlineData(NormKind.Group, NormTarget.Features, 12)]
    [InlineData(NormKind.Layer, NormTarget.Channels, 8)]
    [InlineData(NormKind.WeightStd, NormTarget.Channels, 64)]
    [InlineData(NormKind.WeightStd, NormTarget.Features, 20)]
    public void GroupNormsStartWithWeightOneAndBiasZero(NormKind kind, NormTarget target, int size)
    {
        using var norm = Norms.Create(kind, target, size)!;
        AssertGroupNormInitialized(norm);
    }

    [Theory]
    [InlineData("resnet20", "group")]
    [InlineData("resnet20", "layer")]
    [InlineData("resnet20", "weight-std")]
    [InlineData("cnn", "group")]
    [InlineData("mlp", "weight-std")]
    public void GroupNormsInModelsStartWithWeightOneAndBiasZero(string architecture, string norm)
    {
        var spec = new ModelSpec
        {
            Architecture = architecture,
            InputShape = [3, 32, 32],
            Norm = NormKinds.Parse(norm),
            Depth = architecture.StartsWith("resnet", StringComparison.Ordinal) ? null : 4,
            Width = architecture.StartsWith("resnet", StringComparison.Ordinal) ? null : 32,
            Shortcut = architecture.StartsWith("resnet", StringComparison.Ordinal) ? ResNetShortcut.B : null,
        };
        using var model = ModelZoo.Create(spec);
        var groupNorms = model.modules().Where(m => m is GroupNorm or FeatureGroupNorm).ToList();
        Assert.NotEmpty(groupNorms);
        Assert.All(groupNorms, AssertGroupNormInitialized);
    }

    [Fact]
    public void DefaultGroupsIsTheLargestDivisorUpToThirtyTwo()
    {
        for (var channels = 1; channels <= 300; channels++)
        {
            var expected = Enumerable.Range(1, Math.Min(32, channels)).Last(g => channels % g == 0);
            Assert.Equal(expected, Norms.DefaultGroups(channels));
        }
    }

    [Fact]
    public void AGroupCountThatDoesNotDivideTheChannelsIsRefused()
    {
        var ex = Assert.Throws<ArgumentException>(() => Norms.Create(NormKind.Group, NormTarget.Channels, 16, new NormOptions { Groups = 5 }));
        Assert.Contains("groups=5", ex.Message);
        Assert.Contains("1, 2, 4, 8, 16", ex.Message);
    }

    [Fact]
    public void InstanceNormOnFeaturesIsRefusedWithAHint()
    {
        var ex = Assert.Throws<ArgumentException>(() => Norms.Create(NormKind.Instance, NormTarget.Features, 16));
        Assert.Contains("instance normalization needs a spatial input", ex.Message);
        Assert.Contains("use layer, group, rms or batch", ex.Message);
    }

    public static TheoryData<NormOptions, string> BadOptions => new()
    {
        { new NormOptions { Eps = 0 }, "eps" },
        { new NormOptions { Momentum = 1.5 }, "momentum" },
        { new NormOptions { Groups = 0 }, "groups" },
        { new NormOptions { BatchRenorm = new BatchRenormSchedule(RMax: 0.5) }, "rMax" },
        { new NormOptions { BatchRenorm = new BatchRenormSchedule(DMax: -1) }, "dMax" },
        { new NormOptions { BatchRenorm = new BatchRenormSchedule(WarmupSteps: -3) }, "warmupSteps" },
        { new NormOptions { NoisyBatch = new NoisyBatchNormOptions(ScaleLow: 2, ScaleHigh: 1) }, "scaleLow" },
        { new NormOptions { NoisyBatch = new NoisyBatchNormOptions(ScaleStd: -0.1) }, "scaleStd" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void InvalidOptionsAreRefusedNamingTheField(NormOptions options, string field)
    {
        var ex = Assert.Throws<ArgumentException>(() => Norms.Create(NormKind.Batch, NormTarget.Channels, 8, options));
        Assert.Contains(field, ex.Message);
    }

    [Fact]
    public void LayersBuiltInsideADisposeScopeSurviveIt()
    {
        nn.Module<Tensor, Tensor>[] layers;
        using (NewDisposeScope())
        {
            layers = [new RmsNorm(4), new BatchRenorm(4), new NoisyBatchNorm(4), new FeatureGroupNorm(2, 4), new WsLinear(4, 4), new WsConv2d(4, 4, 1)];
        }

        using var scope = NewDisposeScope();
        foreach (var layer in layers)
        {
            var input = layer is WsConv2d ? ones(2, 4, 1, 1) : ones(2, 4);
            Assert.True(layer.call(input).isfinite().all().item<bool>(), layer.GetType().Name);
            layer.Dispose();
        }
    }

    [Fact]
    public void CustomLayersFollowAConversionToFloat64()
    {
        // Module.to() replaces parameters and buffers and re-binds them to the fields by component name; the layers
        // must then compute in float64 with the same values (tolerance 1e-5: the float32 rounding of the first run).
        nn.Module<Tensor, Tensor>[] layers =
            [new RmsNorm(4), new BatchRenorm(4), new NoisyBatchNorm(4), new FeatureGroupNorm(2, 4), new WsLinear(4, 4), new WsConv2d(4, 4, 1)];
        using var scope = NewDisposeScope();
        foreach (var layer in layers)
        {
            layer.eval();
            var input = layer is WsConv2d ? Input(1, 1.0, 2, 4, 1, 1) : Input(1, 1.0, 2, 4);
            var single = Values(layer.call(input));
            layer.to(ScalarType.Float64);
            Assert.All(layer.parameters(), p => Assert.Equal(ScalarType.Float64, p.dtype));
            var output = layer.call(input.to_type(ScalarType.Float64));
            Assert.Equal(ScalarType.Float64, output.dtype);
            AssertClose(single, Values(output), 1e-5, layer.GetType().Name);
            layer.Dispose();
        }
    }

    private static void AssertGroupNormInitialized(nn.Module norm)
    {
        var parameters = norm.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.All(Values(parameters["weight"]), v => Assert.Equal(1.0, v));
        Assert.All(Values(parameters["bias"]), v => Assert.Equal(0.0, v));
    }
}
