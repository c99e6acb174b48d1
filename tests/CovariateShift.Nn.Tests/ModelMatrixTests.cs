using System.Text.RegularExpressions;
using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Tests;

/// <summary>
/// Every zoo model × every normalization that applies × both data shapes (1×28×28 and 3×32×32; the mlp flattens):
/// forward and backward are finite, every parameter gets a gradient, every leaf module's forward hook fires
/// (i.e. every leaf is invoked with call()), and all module names are readable dotted paths.
/// </summary>
[Collection(TorchGlobalState.Name)]
public sealed partial class ModelMatrixTests
{
    private static readonly long[][] Shapes = [[1, 28, 28], [3, 32, 32]];

    public static TheoryData<string, NormKind, long[]> Cases()
    {
        var data = new TheoryData<string, NormKind, long[]>();
        foreach (var architecture in new[] { "mlp", "cnn", "resnet20" })
        {
            foreach (var norm in Enum.GetValues<NormKind>())
            {
                if (architecture == "mlp" && norm == NormKind.Instance)
                {
                    continue;
                }

                foreach (var shape in Shapes)
                {
                    data.Add(architecture, norm, shape);
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardBackwardAreFiniteAndEveryLeafIsCalled(string architecture, NormKind norm, long[] shape)
    {
        manual_seed(1);
        using var model = ModelZoo.Create(Spec(architecture, norm, shape));
        AssertForwardBackward(model, shape);
    }

    [Theory]
    [InlineData("resnet32", "batch", "A")]
    [InlineData("resnet56", "group", "B")]
    [InlineData("resnet20", "batch-renorm", "B")]
    public void DeeperResNetsAndProjectionShortcutsWork(string architecture, string norm, string shortcut)
    {
        manual_seed(2);
        using var model = ModelZoo.Create(Spec(architecture, NormKinds.Parse(norm), [3, 32, 32]) with { Shortcut = ResNetShortcuts.Parse(shortcut) });
        AssertForwardBackward(model, [3, 32, 32]);
    }

    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    [InlineData("resnet20")]
    public void NormAfterActivationRunsTheActivationFirst(string architecture)
    {
        using var model = ModelZoo.Create(Spec(architecture, NormKind.Batch, [1, 28, 28]) with { NormPlacement = NormPlacement.AfterActivation });
        var order = new List<string>();
        var hooks = Leaves(model).Select(leaf => leaf.Module.register_forward_hook((_, _, output) =>
        {
            order.Add(leaf.Name);
            return output;
        })).ToList();
        using (NewDisposeScope())
        {
            model.call(randn(2, 1, 28, 28));
        }

        hooks.ForEach(h => h.remove());
        var (weighted, act, norm) = architecture switch
        {
            "mlp" => ("layers.0.linear", "layers.0.act", "layers.0.norm"),
            "cnn" => ("layers.0.conv", "layers.0.act", "layers.0.norm"),
            _ => ("stage1.0.conv1", "stage1.0.act1", "stage1.0.norm1"),
        };
        Assert.True(order.IndexOf(weighted) < order.IndexOf(act) && order.IndexOf(act) < order.IndexOf(norm), string.Join(" ", order));
    }

    [Fact]
    public void NamesAreReadableDottedPaths()
    {
        using var mlp = ModelZoo.Create(Spec("mlp", NormKind.Batch, [1, 28, 28]));
        Assert.Superset(new HashSet<string> { "layers.0.linear", "layers.0.norm", "layers.0.act", "layers.2.act", "head" }, Names(mlp));

        using var cnn = ModelZoo.Create(Spec("cnn", NormKind.Group, [3, 32, 32]));
        Assert.Superset(new HashSet<string> { "layers.0.conv", "layers.3.norm", "layers.3.act", "downsample.0", "downsample.2", "gap", "head" }, Names(cnn));

        using var resnet = ModelZoo.Create(Spec("resnet20", NormKind.Batch, [1, 28, 28]) with { Shortcut = ResNetShortcut.B });
        Assert.Superset(
            new HashSet<string> { "pad", "stem.conv", "stem.norm", "stem.act", "stage1.0.conv1", "stage1.0.norm1", "stage1.0.act1", "stage1.2.conv2", "stage1.2.norm2", "stage1.2.act2", "stage2.0.shortcut.conv", "stage2.0.shortcut.norm", "stage3.2.act2", "gap", "head" },
            Names(resnet));

        using var plain = ModelZoo.Create(Spec("resnet20", NormKind.None, [3, 32, 32]));
        Assert.DoesNotContain(Names(plain), name => name.Contains("norm", StringComparison.Ordinal) || name == "pad" || name.Contains("shortcut", StringComparison.Ordinal));

        foreach (var model in new[] { mlp, cnn, resnet, plain })
        {
            Assert.All(Names(model), name => Assert.Matches(ReadableName(), name));
        }
    }

    internal static ModelSpec Spec(string architecture, NormKind norm, long[] shape) => new()
    {
        Architecture = architecture,
        InputShape = shape,
        Norm = norm,
        Depth = architecture switch { "mlp" => 3, "cnn" => 4, _ => null },
        Width = architecture switch { "mlp" => 16, "cnn" => 8, _ => null },
        Groups = norm is NormKind.Group or NormKind.WeightStd && architecture != "resnet20" ? 4 : null,
    };

    internal static List<(string Name, nn.Module<Tensor, Tensor> Module)> Leaves(nn.Module model) =>
        model.named_modules()
            .Where(m => !m.module.children().Any())
            .Select(m => (m.name, m.module as nn.Module<Tensor, Tensor> ?? throw new InvalidOperationException($"Leaf '{m.name}' is not a Module<Tensor, Tensor>.")))
            .ToList();

    private static HashSet<string> Names(nn.Module model) => model.named_modules().Select(m => m.name).Where(n => n.Length > 0).ToHashSet();

    private static void AssertForwardBackward(nn.Module<Tensor, Tensor> model, long[] shape)
    {
        var leaves = Leaves(model);
        var fired = new HashSet<string>();
        var hooks = leaves.Select(leaf => leaf.Module.register_forward_hook((_, _, output) =>
        {
            fired.Add(leaf.Name);
            return output;
        })).ToList();

        using (NewDisposeScope())
        {
            model.train();
            var input = randn([2, .. shape]);
            var logits = model.call(input);
            Assert.Equal([2L, 10L], logits.shape);
            Assert.True(logits.isfinite().all().item<bool>(), "logits are not finite");
            nn.functional.cross_entropy(logits, tensor(new long[] { 3, 7 })).backward();
            foreach (var (name, parameter) in model.named_parameters())
            {
                Assert.True(parameter.grad is not null, $"{name} got no gradient");
                Assert.True(parameter.grad.isfinite().all().item<bool>(), $"{name} has a non-finite gradient");
            }

            model.eval();
            Assert.True(model.call(input).isfinite().all().item<bool>(), "eval logits are not finite");
        }

        hooks.ForEach(h => h.remove());
        Assert.Equal(leaves.Select(l => l.Name).ToHashSet(), fired);
    }

    [GeneratedRegex(@"^[a-z][a-z0-9]*(\.[a-z0-9]+)*$")]
    private static partial Regex ReadableName();
}
