using CovariateShift.Nn.Normalization;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace CovariateShift.Nn.Models;

/// <summary>
/// The two-conv residual block of the CIFAR ResNet (He et al. 2016). With norm before the activation (default):
/// <code>
///   y = act2( norm2(conv2( act1(norm1(conv1(x))) )) + shortcut(x) )
/// </code>
/// and with norm after the activation: y = norm2( act2( conv2( norm1(act1(conv1(x))) ) + shortcut(x) ) ).
/// conv1 is 3×3 with stride s, conv2 3×3 with stride 1 (padding 1; <see cref="WsConv2d"/> for weight-std; no bias
/// when the norm right after cancels it). shortcut is the identity when the shape is kept, otherwise option A
/// (subsample + zero channels) or option B (<see cref="ProjectionShortcut"/>, named <c>shortcut</c>), see
/// <see cref="ResNetShortcut"/>. Submodules: <c>conv1</c>, <c>norm1</c>, <c>act1</c>, <c>conv2</c>, <c>norm2</c>,
/// <c>shortcut</c> (option B only), <c>act2</c>.
/// <para>Input: [N, C_in, H, W]. Output: [N, C_out, ⌈H/s⌉, ⌈W/s⌉].</para>
/// </summary>
public sealed class BasicBlock : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> conv1;
    private readonly nn.Module<Tensor, Tensor>? norm1;
    private readonly nn.Module<Tensor, Tensor> act1;
    private readonly nn.Module<Tensor, Tensor> conv2;
    private readonly nn.Module<Tensor, Tensor>? norm2;
    private readonly ProjectionShortcut? shortcut;
    private readonly nn.Module<Tensor, Tensor> act2;
    private readonly NormPlacement placement;
    private readonly long stride;
    private readonly long padChannelsBefore;
    private readonly long padChannelsAfter;

    /// <param name="inChannels">C_in.</param>
    /// <param name="outChannels">C_out (≥ C_in for option A).</param>
    /// <param name="stride">s of conv1 (and of the shortcut).</param>
    /// <param name="shortcutOption">Shortcut used when the shape changes.</param>
    /// <param name="settings">Activation, normalization and placement.</param>
    public BasicBlock(long inChannels, long outChannels, long stride, ResNetShortcut shortcutOption, LayerSettings settings)
        : base(nameof(BasicBlock))
    {
        ArgumentNullException.ThrowIfNull(settings);
        var hasBias = settings.HiddenLayerHasBias;
        conv1 = Layers.Conv(inChannels, outChannels, 3, stride, 1, hasBias, settings.Norm);
        norm1 = Norms.Create(settings.Norm, NormTarget.Channels, outChannels, settings.NormOptions);
        act1 = settings.Activation.Create();
        conv2 = Layers.Conv(outChannels, outChannels, 3, 1, 1, hasBias, settings.Norm);
        norm2 = Norms.Create(settings.Norm, NormTarget.Channels, outChannels, settings.NormOptions);
        var reshapes = stride != 1 || inChannels != outChannels;
        if (reshapes && shortcutOption == ResNetShortcut.B)
        {
            shortcut = new ProjectionShortcut(inChannels, outChannels, stride, settings);
        }
        else if (reshapes && outChannels < inChannels)
        {
            throw new ArgumentException($"Option-A shortcut can only add channels, got {inChannels} -> {outChannels}.");
        }

        act2 = settings.Activation.Create();
        placement = settings.Placement;
        this.stride = stride;
        padChannelsBefore = (outChannels - inChannels) / 2;
        padChannelsAfter = outChannels - inChannels - padChannelsBefore;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        var residual = Shortcut(input);
        var x = Layers.NormAct(conv1.call(input), norm1, act1, placement);
        x = conv2.call(x);
        if (placement == NormPlacement.BeforeActivation)
        {
            if (norm2 is not null)
            {
                x = norm2.call(x);
            }

            return act2.call(x.add(residual));
        }

        x = act2.call(x.add(residual));
        return norm2 is null ? x : norm2.call(x);
    }

    private Tensor Shortcut(Tensor input)
    {
        if (shortcut is not null)
        {
            return shortcut.call(input);
        }

        if (stride == 1 && padChannelsBefore + padChannelsAfter == 0)
        {
            return input;
        }

        var subsampled = input.slice(2, 0, input.shape[2], stride).slice(3, 0, input.shape[3], stride);
        return F.pad(subsampled, [0, 0, 0, 0, padChannelsBefore, padChannelsAfter]);
    }
}
