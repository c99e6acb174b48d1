using static TorchSharp.torch;

namespace CovariateShift.Nn.Normalization;

/// <summary>Shape checks shared by the normalization layers, with messages that name the layer and both shapes.</summary>
internal static class InputChecks
{
    /// <summary>Requires an input of shape [N, <paramref name="channels"/>, *] (rank at least <paramref name="minRank"/>).</summary>
    public static void RequireChannels(Tensor input, long channels, string layer, int minRank = 2, int maxRank = int.MaxValue)
    {
        if (input.dim() < minRank || input.dim() > maxRank || input.shape[1] != channels)
        {
            var expected = (minRank, maxRank) switch
            {
                (2, 2) => $"[N, {channels}]",
                (4, 4) => $"[N, {channels}, H, W]",
                _ => $"[N, {channels}, *]",
            };
            throw new ArgumentException($"{layer} expects input of shape {expected}, got {FormatShape(input.shape)}.", nameof(input));
        }
    }

    /// <summary>Requires the last dimension to be <paramref name="features"/>.</summary>
    public static void RequireLastDim(Tensor input, long features, string layer)
    {
        if (input.dim() < 1 || input.shape[^1] != features)
        {
            throw new ArgumentException($"{layer} expects input of shape [*, {features}], got {FormatShape(input.shape)}.", nameof(input));
        }
    }

    /// <summary>Formats a shape as <c>[a, b, c]</c>.</summary>
    public static string FormatShape(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>The shape [1, C, 1, ..., 1] of rank <paramref name="rank"/> that broadcasts a per-channel vector.</summary>
    public static long[] ChannelShape(long rank, long channels)
    {
        var shape = Enumerable.Repeat(1L, (int)rank).ToArray();
        shape[1] = channels;
        return shape;
    }

    /// <summary>Every dimension except the channel dimension 1: the dimensions batch statistics reduce over.</summary>
    public static long[] AllButChannelDim(long rank) => Enumerable.Range(0, (int)rank).Where(d => d != 1).Select(d => (long)d).ToArray();
}
