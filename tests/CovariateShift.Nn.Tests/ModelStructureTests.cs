using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using TorchSharp;
using TorchSharp.Modules;
using static CovariateShift.Nn.Tests.TestTensors;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Tests;

/// <summary>Parameter counts against closed-form formulas, weight initialization statistics, and refused combinations.</summary>
[Collection(TorchGlobalState.Name)]
public sealed class ModelStructureTests
{
    [Theory]
    [InlineData("none", "before")]
    [InlineData("batch", "before")]
    [InlineData("batch", "after")]
    [InlineData("group", "before")]
    [InlineData("weight-std", "before")]
    public void MlpParameterCountMatchesTheFormula(string normName, string placementName)
    {
        var norm = NormKinds.Parse(normName);
        var placement = NormPlacements.Parse(placementName);
        int[] widths = [256, 128, 64];
        const int inputs = 784, classes = 10;
        using var model = ModelZoo.Create(new ModelSpec
        {
            Architecture = "mlp", InputShape = [1, 28, 28], Widths = widths, Norm = norm, NormPlacement = placement,
        });

        // Hidden layer: in·out weights, + out biases unless a batch norm directly follows, + 2·out affine parameters of the norm.
        var hasBias = !(norm == NormKind.Batch && placement == NormPlacement.BeforeActivation);
        long expected = 0, fanIn = inputs;
        foreach (var width in widths)
        {
            expected += fanIn * width + (hasBias ? width : 0) + (norm == NormKind.None ? 0 : 2 * width);
            fanIn = width;
        }

        expected += fanIn * classes + classes;
        Assert.Equal(expected, ParameterCount(model));
    }

    [Theory]
    [InlineData("none", "A", 3)]
    [InlineData("batch", "A", 3)]
    [InlineData("batch", "B", 3)]
    [InlineData("none", "B", 1)]
    [InlineData("batch", "A", 1)]
    public void ResNet20ParameterCountMatchesTheFormula(string normName, string shortcutName, int inputChannels)
    {
        var norm = NormKinds.Parse(normName);
        var shortcut = ResNetShortcuts.Parse(shortcutName);
        using var model = ModelZoo.Create(new ModelSpec
        {
            Architecture = "resnet20", InputShape = [inputChannels, 32, 32], Norm = norm, Shortcut = shortcut,
        });

        var withNorm = norm != NormKind.None;
        long Conv(long cin, long cout, long k) => cin * cout * k * k + (withNorm ? 0 : cout); // BN cancels conv biases
        long Norm(long c) => withNorm ? 2 * c : 0;

        var expected = Conv(inputChannels, 16, 3) + Norm(16);
        long channels = 16;
        foreach (var width in new long[] { 16, 32, 64 })
        {
            for (var block = 0; block < 3; block++)
            {
                expected += Conv(channels, width, 3) + Norm(width) + Conv(width, width, 3) + Norm(width);
                if (shortcut == ResNetShortcut.B && channels != width)
                {
                    expected += Conv(channels, width, 1) + Norm(width);
                }

                channels = width;
            }
        }

        expected += 64 * 10 + 10;
        Assert.Equal(expected, ParameterCount(model));
        if (norm == NormKind.Batch && inputChannels == 3)
        {
            Assert.Equal(0.27, Math.Round(expected / 1e6, 2)); // He et al. (2016), Table 6: ResNet-20 has 0.27M parameters
        }
    }

    [Fact]
    public void CnnParameterCountMatchesTheFormula()
    {
        using var model = ModelZoo.Create(new ModelSpec { Architecture = "cnn", InputShape = [3, 32, 32], Depth = 6, Width = 8, Norm = NormKind.Batch });
        // Depth 6 → stages of 1, 1, 2, 2 layers with widths 8, 16, 32, 32, 64, 64 (3×3 convs without bias, BN 2·C each).
        int[] widths = [8, 16, 32, 32, 64, 64];
        long expected = 0, channels = 3;
        foreach (var width in widths)
        {
            expected += channels * width * 9 + 2 * width;
            channels = width;
        }

        expected += 64 * 10 + 10;
        Assert.Equal(expected, ParameterCount(model));
        Assert.Equal(widths, PlainCnn.DefaultWidths(6, 8));
    }

    [Theory]
    [InlineData("he")]
    [InlineData("lecun")]
    [InlineData("xavier")]
    [InlineData("gaussian:0.05")]
    public void InitSetsTheDocumentedWeightDistributionAndZeroBiases(string initName)
    {
        manual_seed(4);
        using var model = ModelZoo.Create(new ModelSpec
        {
            Architecture = "mlp", InputShape = [784], Widths = [512], Init = WeightInit.Parse(initName), Norm = NormKind.Rms,
        });
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var weights = Values(parameters["layers.0.linear.weight"]); // 512 × 784 = 401,408 draws
        var std = Math.Sqrt(weights.Sum(w => w * w) / weights.Length);
        const double fanIn = 784, fanOut = 512;
        var expectedStd = initName switch
        {
            "he" => Math.Sqrt(2 / fanIn),
            "lecun" => Math.Sqrt(1 / fanIn),
            "xavier" => Math.Sqrt(6 / (fanIn + fanOut)) / Math.Sqrt(3), // std of U(−a, a) is a/√3
            _ => 0.05,
        };
        Assert.InRange(std / expectedStd, 0.99, 1.01); // relative sampling error of the std ≈ 1/√(2·401408) ≈ 0.1%
        if (initName == "xavier")
        {
            Assert.All(weights, w => Assert.InRange(Math.Abs(w), 0, Math.Sqrt(6 / (fanIn + fanOut))));
        }

        Assert.All(Values(parameters["layers.0.linear.bias"]), b => Assert.Equal(0.0, b));
        Assert.All(Values(parameters["head.bias"]), b => Assert.Equal(0.0, b));
        Assert.All(Values(parameters["layers.0.norm.weight"]), g => Assert.Equal(1.0, g)); // norms are not re-initialized
    }

    [Fact]
    public void WeightStdModelsUseStandardizedLayers()
    {
        using var model = ModelZoo.Create(ModelMatrixTests.Spec("resnet20", NormKind.WeightStd, [3, 32, 32]) with { Shortcut = ResNetShortcut.B });
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        Assert.IsType<WsConv2d>(modules["stem.conv"]);
        Assert.IsType<WsConv2d>(modules["stage2.0.shortcut.conv"]);
        Assert.IsType<GroupNorm>(modules["stage2.0.norm1"]);
        Assert.IsType<Linear>(modules["head"]);
        Assert.DoesNotContain(modules.Values, m => m is Conv2d);
    }

    public static TheoryData<ModelSpec, string> RefusedSpecs => new()
    {
        { new ModelSpec { Architecture = "vgg16", InputShape = [3, 32, 32] }, "vgg16" },
        { ModelMatrixTests.Spec("mlp", NormKind.Instance, [1, 28, 28]), "instance" },
        { ModelMatrixTests.Spec("resnet20", NormKind.Group, [3, 32, 32]) with { Groups = 5 }, "groups=5" },
        { ModelMatrixTests.Spec("cnn", NormKind.Group, [3, 32, 32]) with { Groups = 3 }, "groups=3" },
        { ModelMatrixTests.Spec("cnn", NormKind.Batch, [3, 32, 32]) with { Depth = 3 }, "depth 3" },
        { ModelMatrixTests.Spec("cnn", NormKind.Batch, [3, 32, 32]) with { Depth = 21 }, "depth 21" },
        { ModelMatrixTests.Spec("cnn", NormKind.Batch, [3, 6, 6]), "6x6" },
        { ModelMatrixTests.Spec("resnet20", NormKind.Batch, [3, 64, 64]), "64" },
        { ModelMatrixTests.Spec("resnet20", NormKind.Batch, [3, 32, 32]) with { Depth = 20 }, "depth=20" },
        { ModelMatrixTests.Spec("resnet20", NormKind.Batch, [784]), "[784]" },
        { ModelMatrixTests.Spec("mlp", NormKind.Batch, [784]) with { Groups = 4 }, "groups=4" },
        { ModelMatrixTests.Spec("mlp", NormKind.Batch, [784]) with { Shortcut = ResNetShortcut.B }, "shortcut 'B'" },
        { ModelMatrixTests.Spec("mlp", NormKind.Batch, [784]) with { Depth = null }, "depth=none" },
        { ModelMatrixTests.Spec("mlp", NormKind.Batch, [784]) with { Depth = 2, Width = null, Widths = [8, 8, 8] }, "depth 2" },
    };

    [Theory]
    [MemberData(nameof(RefusedSpecs))]
    public void CombinationsThatDoNotApplyAreRefused(ModelSpec spec, string quoted)
    {
        var ex = Assert.Throws<ArgumentException>(() => ModelZoo.Create(spec));
        Assert.Contains(quoted, ex.Message);
    }

    [Fact]
    public void UnknownArchitectureListsTheZoo()
    {
        var ex = Assert.Throws<ArgumentException>(() => ModelZoo.Create(new ModelSpec { Architecture = "vgg16", InputShape = [3, 32, 32] }));
        Assert.Contains("mlp, cnn, resnet20, resnet32, resnet56", ex.Message);
    }

    [Fact]
    public void ModelsRejectInputOfTheWrongShape()
    {
        using var scope = NewDisposeScope();
        using var resnet = ModelZoo.Create(ModelMatrixTests.Spec("resnet20", NormKind.Batch, [1, 28, 28]));
        var ex = Assert.Throws<ArgumentException>(() => resnet.call(zeros(2, 3, 32, 32)));
        Assert.Contains("[N, 1, 28, 28]", ex.Message);
        Assert.Contains("[2, 3, 32, 32]", ex.Message);
    }

    private static long ParameterCount(nn.Module model) => model.parameters().Sum(p => p.numel());
}
