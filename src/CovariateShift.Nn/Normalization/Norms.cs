using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Normalization;

/// <summary>
/// Builds the normalization layer for a <see cref="NormKind"/> and a <see cref="NormTarget"/>:
/// <list type="table">
/// <listheader><term>kind</term><description>features [N, F] / channels [N, C, H, W]</description></listheader>
/// <item><term>none</term><description>no layer (null) / no layer (null)</description></item>
/// <item><term>batch</term><description>BatchNorm1d(F) / BatchNorm2d(C)</description></item>
/// <item><term>layer</term><description>LayerNorm(F) / GroupNorm(1, C): per sample over (C, H, W) with a per-channel affine, independent of H, W</description></item>
/// <item><term>group</term><description><see cref="FeatureGroupNorm"/>(G, F) / GroupNorm(G, C)</description></item>
/// <item><term>instance</term><description>refused / InstanceNorm2d(C, affine: true, no running statistics)</description></item>
/// <item><term>weight-std</term><description>the norm after a <see cref="WsLinear"/>/<see cref="WsConv2d"/>: as group</description></item>
/// <item><term>rms</term><description><see cref="RmsNorm"/>(F) / <see cref="RmsNorm"/>(C), per position over channels</description></item>
/// <item><term>batch-renorm</term><description><see cref="BatchRenorm"/>(F) / <see cref="BatchRenorm"/>(C)</description></item>
/// <item><term>noisy-batch</term><description><see cref="NoisyBatchNorm"/>(F) / <see cref="NoisyBatchNorm"/>(C)</description></item>
/// </list>
/// Every GroupNorm built here has weight 1 and bias 0 (TorchSharp's GroupNorm leaves them uninitialised).
/// </summary>
public static class Norms
{
    /// <summary>The largest group count <see cref="DefaultGroups"/> picks.</summary>
    public const int MaxDefaultGroups = 32;

    /// <summary>
    /// The default group count for C channels: the largest divisor of C that is ≤ 32. That is 32 (Wu &amp; He's default)
    /// whenever 32 divides C; for C ≤ 32 it is C itself (one channel per group, i.e. instance normalization with a
    /// per-channel affine), and e.g. 25 for C = 100.
    /// </summary>
    public static int DefaultGroups(long channels)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(channels, 1);
        for (var groups = (int)Math.Min(MaxDefaultGroups, channels); ; groups--)
        {
            if (channels % groups == 0)
            {
                return groups;
            }
        }
    }

    /// <summary>
    /// <paramref name="requested"/> if it divides <paramref name="channels"/>, else <see cref="DefaultGroups"/> when it is null.
    /// </summary>
    /// <exception cref="ArgumentException">The requested count does not divide C; the message lists the counts that do.</exception>
    public static int ResolveGroups(long channels, int? requested)
    {
        if (requested is null)
        {
            return DefaultGroups(channels);
        }

        if (requested < 1 || channels % requested.Value != 0)
        {
            var fits = Enumerable.Range(1, (int)channels).Where(g => channels % g == 0);
            throw new ArgumentException(
                $"groups={requested} does not divide the {channels} channels of a normalized layer; group counts that fit {channels}: {string.Join(", ", fits)}.");
        }

        return requested.Value;
    }

    /// <summary>TorchSharp's GroupNorm(G, C) with weight set to 1 and bias to 0.</summary>
    public static GroupNorm CreateGroupNorm(long groups, long channels, double eps = 1e-5)
    {
        var norm = nn.GroupNorm(groups, channels, eps, affine: true);
        using (no_grad())
        {
            nn.init.ones_(norm.weight);
            nn.init.zeros_(norm.bias!);
        }

        return norm;
    }

    /// <summary>
    /// The normalization layer for <paramref name="kind"/> normalizing <paramref name="size"/> features or channels,
    /// or null for <see cref="NormKind.None"/>.
    /// </summary>
    /// <param name="kind">The normalization.</param>
    /// <param name="target">Whether the input is [N, F] features or [N, C, H, W] channels.</param>
    /// <param name="size">F or C.</param>
    /// <param name="options">Hyper-parameters; null uses the defaults.</param>
    /// <exception cref="ArgumentException">
    /// The kind does not apply to the target (instance on features), the group count does not divide
    /// <paramref name="size"/>, or an option is out of range.
    /// </exception>
    public static nn.Module<Tensor, Tensor>? Create(NormKind kind, NormTarget target, long size, NormOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        options ??= new NormOptions();
        options.Validate();
        var features = target switch
        {
            NormTarget.Features => true,
            NormTarget.Channels => false,
            _ => throw new ArgumentOutOfRangeException(nameof(target), target, "Unknown normalization target."),
        };

        return kind switch
        {
            NormKind.None => null,
            NormKind.Batch => features
                ? nn.BatchNorm1d(size, options.Eps, options.Momentum)
                : nn.BatchNorm2d(size, options.Eps, options.Momentum),
            NormKind.Layer => features
                ? nn.LayerNorm(size, options.Eps)
                : CreateGroupNorm(1, size, options.Eps),
            NormKind.Group or NormKind.WeightStd => features
                ? new FeatureGroupNorm(ResolveGroups(size, options.Groups), size, options.Eps)
                : CreateGroupNorm(ResolveGroups(size, options.Groups), size, options.Eps),
            NormKind.Instance => features
                ? throw new ArgumentException(
                    "instance normalization needs a spatial input (conv); an MLP has none — use layer, group, rms or batch.")
                : nn.InstanceNorm2d(size, options.Eps, options.Momentum, affine: true, track_running_stats: false),
            NormKind.Rms => new RmsNorm(size, options.Eps),
            NormKind.BatchRenorm => new BatchRenorm(size, options.Eps, options.Momentum, options.BatchRenorm),
            NormKind.NoisyBatch => new NoisyBatchNorm(size, options.Eps, options.Momentum, options.NoisyBatch),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown normalization kind."),
        };
    }
}
