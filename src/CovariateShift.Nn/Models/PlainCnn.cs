using CovariateShift.Nn.Normalization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Models;

/// <summary>
/// VGG-style convolutional classifier without shortcuts. <see cref="Depth"/> ∈ [4, 20] 3×3 conv layers (padding 1,
/// stride 1), each a <see cref="ConvBlock"/> named <c>layers.i</c> (<c>layers.i.conv</c>, <c>layers.i.norm</c>,
/// <c>layers.i.act</c>), are split into 4 stages of ⌊depth/4⌋ layers, the last depth mod 4 stages getting one more.
/// A 2×2 max-pool (<c>downsample.0</c> … <c>downsample.2</c>) follows each of the first three stages, then a global
/// average pool (<c>gap</c>) and a linear <c>head</c>. Three pools take 28×28 to 3×3 and 32×32 to 4×4, so any input of at
/// least <see cref="MinInputSize"/>×<see cref="MinInputSize"/> keeps every feature map ≥ 1×1. Default widths
/// (<see cref="DefaultWidths"/>) double at each stage: 32, 64, 128, 256.
/// <para>Input: [N, C, H, W]. Output: [N, classes].</para>
/// Intermediate activations are not disposed here; run each batch inside <c>torch.NewDisposeScope()</c>.
/// </summary>
public sealed class PlainCnn : nn.Module<Tensor, Tensor>
{
    /// <summary>Fewest conv layers.</summary>
    public const int MinDepth = 4;

    /// <summary>Most conv layers.</summary>
    public const int MaxDepth = 20;

    /// <summary>Number of stages (resolutions).</summary>
    public const int Stages = 4;

    /// <summary>Smallest input height and width: 8 → 4 → 2 → 1 after the three pools.</summary>
    public const int MinInputSize = 8;

    private readonly ModuleList<ConvBlock> layers;
    private readonly ModuleList<MaxPool2d> downsample;
    private readonly AdaptiveAvgPool2d gap;
    private readonly nn.Module<Tensor, Tensor> head;
    private readonly int[] stageLastLayer;

    /// <param name="inputChannels">C of the input images (1 or 3).</param>
    /// <param name="widths">Output channels of every conv layer; its length is the depth (4 to 20).</param>
    /// <param name="classes">Number of logits (≥ 1).</param>
    /// <param name="settings">Activation, normalization, placement and weight init.</param>
    public PlainCnn(long inputChannels, IReadOnlyList<int> widths, int classes, LayerSettings settings)
        : base(nameof(PlainCnn))
    {
        ArgumentNullException.ThrowIfNull(widths);
        ArgumentNullException.ThrowIfNull(settings);
        CheckDepth(widths.Count);
        if (inputChannels < 1 || widths.Any(w => w < 1))
        {
            throw new ArgumentException($"cnn needs input channels >= 1 and every width >= 1, got {inputChannels} input channels and widths [{string.Join(", ", widths)}].");
        }

        if (classes < 1)
        {
            throw new ArgumentException($"classes must be >= 1, got {classes}.");
        }

        InputChannels = inputChannels;
        Widths = widths.ToArray();
        Classes = classes;
        Settings = settings;
        var blocks = new ConvBlock[widths.Count];
        var channels = inputChannels;
        for (var i = 0; i < blocks.Length; i++)
        {
            blocks[i] = new ConvBlock(channels, widths[i], 1, settings);
            channels = widths[i];
        }

        var stageSizes = StageSizes(widths.Count);
        stageLastLayer = stageSizes.Select((_, s) => stageSizes.Take(s + 1).Sum() - 1).ToArray();
        layers = nn.ModuleList(blocks);
        downsample = nn.ModuleList(Enumerable.Range(0, Stages - 1).Select(_ => nn.MaxPool2d(2)).ToArray());
        gap = nn.AdaptiveAvgPool2d(1);
        head = nn.Linear(channels, classes);
        RegisterComponents();
        settings.Init.Apply(this);
    }

    /// <summary>C of the input.</summary>
    public long InputChannels { get; }

    /// <summary>Output channels per conv layer.</summary>
    public IReadOnlyList<int> Widths { get; }

    /// <summary>Number of conv layers.</summary>
    public int Depth => Widths.Count;

    /// <summary>Number of logits.</summary>
    public int Classes { get; }

    /// <summary>The hidden-layer settings the model was built with.</summary>
    public LayerSettings Settings { get; }

    /// <summary>Conv layers per stage: ⌊depth/4⌋ each, plus one for each of the last depth mod 4 stages.</summary>
    public static int[] StageSizes(int depth)
    {
        CheckDepth(depth);
        return Enumerable.Range(0, Stages).Select(s => depth / Stages + (s >= Stages - depth % Stages ? 1 : 0)).ToArray();
    }

    /// <summary>Default widths: every layer of stage s has <paramref name="baseWidth"/>·2^s channels.</summary>
    public static int[] DefaultWidths(int depth, int baseWidth = 32)
    {
        if (baseWidth < 1)
        {
            throw new ArgumentException($"cnn width must be >= 1, got {baseWidth}.");
        }

        return StageSizes(depth).SelectMany((size, s) => Enumerable.Repeat(baseWidth << s, size)).ToArray();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        if (input.dim() != 4 || input.shape[1] != InputChannels || input.shape[2] < MinInputSize || input.shape[3] < MinInputSize)
        {
            throw new ArgumentException($"PlainCnn expects [N, {InputChannels}, H, W] with H, W >= {MinInputSize}, got {InputChecks.FormatShape(input.shape)}.", nameof(input));
        }

        var x = input;
        for (var i = 0; i < layers.Count; i++)
        {
            x = layers[i].call(x);
            var stage = Array.IndexOf(stageLastLayer, i);
            if (stage >= 0 && stage < downsample.Count)
            {
                x = downsample[stage].call(x);
            }
        }

        return head.call(gap.call(x).flatten(1));
    }

    private static void CheckDepth(int depth)
    {
        if (depth is < MinDepth or > MaxDepth)
        {
            throw new ArgumentException($"cnn depth {depth} is out of range: the plain CNN has {MinDepth} to {MaxDepth} conv layers.");
        }
    }
}
