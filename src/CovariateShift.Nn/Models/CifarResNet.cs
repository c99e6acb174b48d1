using CovariateShift.Nn.Normalization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Models;

/// <summary>
/// The CIFAR ResNet of He et al. (2016, Sec. 4.2) with depth 6n + 2 (ResNet-20/32/56 for n = 3/5/9):
/// <c>stem</c> (a <see cref="ConvBlock"/>: 3×3 conv to 16 channels, norm, act), three stages <c>stage1</c>, <c>stage2</c>,
/// <c>stage3</c> of n <see cref="BasicBlock"/>s with 16, 32 and 64 channels (the first block of stages 2 and 3 has stride 2;
/// names like <c>stage2.0.conv1</c>, <c>stage2.0.norm1</c>), global average pooling <c>gap</c> and a linear <c>head</c>.
/// Feature maps are 32×32, 16×16 and 8×8. Inputs smaller than 32×32 (e.g. 28×28 MNIST) are zero-padded to 32×32 by a
/// first <c>pad</c> layer (ZeroPad2d, split evenly, the odd pixel after), so feature-map sizes match CIFAR; larger
/// inputs are refused. Shortcuts follow <see cref="ResNetShortcut"/> (default option A, parameter-free).
/// <para>Input: [N, C, H, W] with the C, H, W given at construction. Output: [N, classes].</para>
/// Intermediate activations are not disposed here; run each batch inside <c>torch.NewDisposeScope()</c>.
/// </summary>
public sealed class CifarResNet : nn.Module<Tensor, Tensor>
{
    /// <summary>The working resolution: inputs are padded up to 32×32.</summary>
    public const int Resolution = 32;

    /// <summary>Channels of the three stages.</summary>
    public static readonly IReadOnlyList<int> StageWidths = [16, 32, 64];

    private readonly ZeroPad2d? pad;
    private readonly ConvBlock stem;
    private readonly ModuleList<BasicBlock> stage1;
    private readonly ModuleList<BasicBlock> stage2;
    private readonly ModuleList<BasicBlock> stage3;
    private readonly AdaptiveAvgPool2d gap;
    private readonly nn.Module<Tensor, Tensor> head;

    /// <param name="blocksPerStage">n ≥ 1; the depth is 6n + 2.</param>
    /// <param name="inputChannels">C of the images (1 or 3).</param>
    /// <param name="inputHeight">H ≤ 32.</param>
    /// <param name="inputWidth">W ≤ 32.</param>
    /// <param name="classes">Number of logits (≥ 1).</param>
    /// <param name="shortcutOption">Shortcut of the two down-sampling blocks.</param>
    /// <param name="settings">Activation, normalization, placement and weight init.</param>
    public CifarResNet(int blocksPerStage, long inputChannels, long inputHeight, long inputWidth, int classes, ResNetShortcut shortcutOption, LayerSettings settings)
        : base(nameof(CifarResNet))
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (blocksPerStage < 1)
        {
            throw new ArgumentException($"A CIFAR ResNet needs at least one block per stage, got {blocksPerStage}.");
        }

        if (inputChannels < 1 || inputHeight < 1 || inputWidth < 1 || inputHeight > Resolution || inputWidth > Resolution)
        {
            throw new ArgumentException(
                $"The CIFAR ResNet takes [C, H, W] images with H, W <= {Resolution} (smaller ones are zero-padded to {Resolution}x{Resolution}), got [{inputChannels}, {inputHeight}, {inputWidth}].");
        }

        if (classes < 1)
        {
            throw new ArgumentException($"classes must be >= 1, got {classes}.");
        }

        BlocksPerStage = blocksPerStage;
        InputChannels = inputChannels;
        InputHeight = inputHeight;
        InputWidth = inputWidth;
        Classes = classes;
        Shortcut = shortcutOption;
        Settings = settings;
        if (inputHeight < Resolution || inputWidth < Resolution)
        {
            var left = (Resolution - inputWidth) / 2;
            var top = (Resolution - inputHeight) / 2;
            pad = nn.ZeroPad2d((left, Resolution - inputWidth - left, top, Resolution - inputHeight - top));
        }

        stem = new ConvBlock(inputChannels, StageWidths[0], 1, settings);
        stage1 = Stage(StageWidths[0], StageWidths[0], 1);
        stage2 = Stage(StageWidths[0], StageWidths[1], 2);
        stage3 = Stage(StageWidths[1], StageWidths[2], 2);
        gap = nn.AdaptiveAvgPool2d(1);
        head = nn.Linear(StageWidths[2], classes);
        RegisterComponents();
        settings.Init.Apply(this);

        ModuleList<BasicBlock> Stage(int inChannels, int outChannels, int firstStride) => nn.ModuleList(
            Enumerable.Range(0, blocksPerStage)
                .Select(i => new BasicBlock(i == 0 ? inChannels : outChannels, outChannels, i == 0 ? firstStride : 1, shortcutOption, settings))
                .ToArray());
    }

    /// <summary>n, blocks per stage.</summary>
    public int BlocksPerStage { get; }

    /// <summary>6n + 2 weighted layers (convs of the main path plus the head).</summary>
    public int Depth => 6 * BlocksPerStage + 2;

    /// <summary>C of the input.</summary>
    public long InputChannels { get; }

    /// <summary>H of the input.</summary>
    public long InputHeight { get; }

    /// <summary>W of the input.</summary>
    public long InputWidth { get; }

    /// <summary>Number of logits.</summary>
    public int Classes { get; }

    /// <summary>The shortcut option of the down-sampling blocks.</summary>
    public ResNetShortcut Shortcut { get; }

    /// <summary>The hidden-layer settings the model was built with.</summary>
    public LayerSettings Settings { get; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        if (input.dim() != 4 || input.shape[1] != InputChannels || input.shape[2] != InputHeight || input.shape[3] != InputWidth)
        {
            throw new ArgumentException($"CifarResNet was built for input [N, {InputChannels}, {InputHeight}, {InputWidth}], got {InputChecks.FormatShape(input.shape)}.", nameof(input));
        }

        var x = pad is null ? input : pad.call(input);
        x = stem.call(x);
        foreach (var stage in new[] { stage1, stage2, stage3 })
        {
            foreach (var block in stage)
            {
                x = block.call(x);
            }
        }

        return head.call(gap.call(x).flatten(1));
    }
}
