using CovariateShift.Nn.Normalization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Models;

/// <summary>
/// Fully connected classifier: the input is flattened to [N, F], passes through the hidden layers
/// <c>layers.0</c> … <c>layers.{depth−1}</c> (each an <see cref="MlpBlock"/>: <c>layers.i.linear</c>,
/// <c>layers.i.norm</c>, <c>layers.i.act</c>) and a plain linear <c>head</c> that outputs logits.
/// <para>Input: [N, F] or [N, *] with F elements per sample (e.g. [N, 1, 28, 28] for F = 784). Output: [N, classes].</para>
/// Intermediate activations are not disposed here; run each batch inside <c>torch.NewDisposeScope()</c>.
/// </summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<MlpBlock> layers;
    private readonly nn.Module<Tensor, Tensor> head;

    /// <param name="inputFeatures">F, the number of input values per sample.</param>
    /// <param name="hiddenWidths">Units of each hidden layer; its length is the depth (≥ 1).</param>
    /// <param name="classes">Number of output logits (≥ 1).</param>
    /// <param name="settings">Activation, normalization, placement and weight init.</param>
    public Mlp(long inputFeatures, IReadOnlyList<int> hiddenWidths, int classes, LayerSettings settings)
        : base(nameof(Mlp))
    {
        ArgumentNullException.ThrowIfNull(hiddenWidths);
        ArgumentNullException.ThrowIfNull(settings);
        if (inputFeatures < 1)
        {
            throw new ArgumentException($"mlp input features must be >= 1, got {inputFeatures}.");
        }

        if (hiddenWidths.Count < 1 || hiddenWidths.Any(w => w < 1))
        {
            throw new ArgumentException($"mlp needs at least one hidden layer and every width >= 1, got widths [{string.Join(", ", hiddenWidths)}].");
        }

        if (classes < 1)
        {
            throw new ArgumentException($"classes must be >= 1, got {classes}.");
        }

        InputFeatures = inputFeatures;
        HiddenWidths = hiddenWidths.ToArray();
        Classes = classes;
        Settings = settings;
        var blocks = new MlpBlock[hiddenWidths.Count];
        var width = inputFeatures;
        for (var i = 0; i < blocks.Length; i++)
        {
            blocks[i] = new MlpBlock(width, hiddenWidths[i], settings);
            width = hiddenWidths[i];
        }

        layers = nn.ModuleList(blocks);
        head = nn.Linear(width, classes);
        RegisterComponents();
        settings.Init.Apply(this);
    }

    /// <summary>F.</summary>
    public long InputFeatures { get; }

    /// <summary>Units per hidden layer.</summary>
    public IReadOnlyList<int> HiddenWidths { get; }

    /// <summary>Number of logits.</summary>
    public int Classes { get; }

    /// <summary>The hidden-layer settings the model was built with.</summary>
    public LayerSettings Settings { get; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        var x = input.dim() == 2 ? input : input.flatten(1);
        if (x.dim() != 2 || x.shape[1] != InputFeatures)
        {
            throw new ArgumentException($"Mlp expects [N, {InputFeatures}] or [N, *] with {InputFeatures} values per sample, got {InputChecks.FormatShape(input.shape)}.", nameof(input));
        }

        foreach (var layer in layers)
        {
            x = layer.call(x);
        }

        return head.call(x);
    }
}
