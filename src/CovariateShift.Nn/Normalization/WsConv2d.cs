using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace CovariateShift.Nn.Normalization;

/// <summary>
/// 2-D convolution with Weight Standardization: y = conv2d(x, Ŵ, b, stride, padding), where Ŵ is recomputed from the
/// raw weight W on every forward pass (see <see cref="WeightStandardization"/>; each output channel is standardized
/// over its C_in·k·k entries). Parameters: <c>weight</c> W [C_out, C_in, k, k] and optional <c>bias</c> b [C_out],
/// both initialised like TorchSharp's Conv2d, U(−1/√(C_in·k·k), 1/√(C_in·k·k)).
/// <para>Input: [N, C_in, H, W]. Output: [N, C_out, ⌊(H + 2p − k)/s⌋ + 1, ⌊(W + 2p − k)/s⌋ + 1].</para>
/// </summary>
public sealed class WsConv2d : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter? bias;

    /// <param name="inChannels">C_in.</param>
    /// <param name="outChannels">C_out.</param>
    /// <param name="kernelSize">Square kernel size k.</param>
    /// <param name="stride">Stride s in both spatial dimensions.</param>
    /// <param name="padding">Zero padding p on every side.</param>
    /// <param name="hasBias">Whether the layer has an additive bias.</param>
    public WsConv2d(long inChannels, long outChannels, long kernelSize, long stride = 1, long padding = 0, bool hasBias = true)
        : base(nameof(WsConv2d))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inChannels, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(outChannels, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kernelSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(stride, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(padding);
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Stride = stride;
        Padding = padding;
        var bound = 1.0 / Math.Sqrt(inChannels * kernelSize * kernelSize);
        weight = Owned.Parameter(empty(outChannels, inChannels, kernelSize, kernelSize).uniform_(-bound, bound));
        bias = hasBias ? Owned.Parameter(empty(outChannels).uniform_(-bound, bound)) : null;
        RegisterComponents();
    }

    /// <summary>C_in.</summary>
    public long InChannels { get; }

    /// <summary>C_out.</summary>
    public long OutChannels { get; }

    /// <summary>k.</summary>
    public long KernelSize { get; }

    /// <summary>s.</summary>
    public long Stride { get; }

    /// <summary>p.</summary>
    public long Padding { get; }

    /// <summary>The raw weight W, shape [C_out, C_in, k, k].</summary>
    public Parameter Weight => weight;

    /// <summary>The bias b, shape [C_out], or null.</summary>
    public Parameter? Bias => bias;

    /// <summary>Ŵ, the standardized weight used by the forward pass (a new tensor; dispose it).</summary>
    public Tensor StandardizedWeight() => WeightStandardization.Standardize(weight);

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        InputChecks.RequireChannels(input, InChannels, nameof(WsConv2d), minRank: 4, maxRank: 4);
        using var scope = NewDisposeScope();
        var output = F.conv2d(input, WeightStandardization.Standardize(weight), bias, strides: [Stride, Stride], padding: [Padding, Padding]);
        return output.MoveToOuterDisposeScope();
    }
}
