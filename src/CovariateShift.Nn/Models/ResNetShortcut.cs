namespace CovariateShift.Nn.Models;

/// <summary>
/// How a CIFAR ResNet block whose shape changes (stride 2, twice the channels) forms its shortcut (He et al. 2016, Sec. 3.3).
/// Blocks that keep the shape always use the identity. Command-line names: <c>A</c>, <c>B</c>.
/// </summary>
public enum ResNetShortcut
{
    /// <summary>
    /// Option A (the paper's CIFAR choice, default): parameter-free. The input is subsampled with stride 2
    /// (x[:, :, ::2, ::2]) and the missing channels are zeros, split evenly before and after the existing ones.
    /// </summary>
    A,

    /// <summary>Option B: a 1×1 stride-2 projection conv followed by the block's normalization (<c>shortcut.conv</c>, <c>shortcut.norm</c>).</summary>
    B,
}
