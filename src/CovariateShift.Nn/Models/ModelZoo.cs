using CovariateShift.Nn.Normalization;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Models;

/// <summary>
/// Builds models from a <see cref="ModelSpec"/>: <c>mlp</c> (<see cref="Mlp"/>), <c>cnn</c> (<see cref="PlainCnn"/>),
/// <c>resnet20</c>, <c>resnet32</c>, <c>resnet56</c> (<see cref="CifarResNet"/> with n = 3, 5, 9).
/// </summary>
public static class ModelZoo
{
    /// <summary>The architecture names, in documentation order.</summary>
    public static IReadOnlyList<string> Names { get; } = ["mlp", "cnn", "resnet20", "resnet32", "resnet56"];

    /// <summary>Builds the model <paramref name="spec"/> describes, in training mode, on the CPU.</summary>
    /// <exception cref="ArgumentException">
    /// An unknown architecture (the message lists the valid names) or a combination that does not apply — e.g. instance
    /// norm on an mlp, a group count that does not divide a layer's channels, a cnn depth outside 4..20, a field the
    /// architecture does not use — with the given value and what fits.
    /// </exception>
    public static nn.Module<Tensor, Tensor> Create(ModelSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var architecture = spec.Architecture.Trim().ToLowerInvariant();
        if (spec.Groups is not null && spec.Norm is not (NormKind.Group or NormKind.WeightStd))
        {
            throw new ArgumentException($"groups={spec.Groups} applies only to norm group or weight-std, but norm is '{spec.Norm.ToCliName()}'.");
        }

        if (spec.Shortcut is not null && !architecture.StartsWith("resnet", StringComparison.Ordinal))
        {
            throw new ArgumentException($"shortcut '{spec.Shortcut.Value.ToCliName()}' applies only to resnet architectures, not to '{spec.Architecture}'.");
        }

        return architecture switch
        {
            "mlp" => CreateMlp(spec),
            "cnn" => CreateCnn(spec),
            "resnet20" => CreateResNet(spec, 3),
            "resnet32" => CreateResNet(spec, 5),
            "resnet56" => CreateResNet(spec, 9),
            _ => throw new ArgumentException($"Unknown architecture '{spec.Architecture}'. Valid names: {string.Join(", ", Names)}."),
        };
    }

    private static Mlp CreateMlp(ModelSpec spec)
    {
        var features = spec.InputShape.Aggregate(1L, (a, b) => a * b);
        IReadOnlyList<int> widths;
        if (spec.Widths is not null)
        {
            if (spec.Width is not null)
            {
                throw new ArgumentException($"mlp: give either width ({spec.Width}) with depth, or widths [{string.Join(", ", spec.Widths)}], not both.");
            }

            if (spec.Depth is not null && spec.Depth != spec.Widths.Count)
            {
                throw new ArgumentException($"mlp: depth {spec.Depth} does not match the {spec.Widths.Count} entries of widths [{string.Join(", ", spec.Widths)}].");
            }

            widths = spec.Widths;
        }
        else
        {
            if (spec.Depth is null || spec.Width is null)
            {
                throw new ArgumentException($"mlp needs depth and width (or widths); got depth={Show(spec.Depth)}, width={Show(spec.Width)}.");
            }

            if (spec.Depth < 1)
            {
                throw new ArgumentException($"mlp depth {spec.Depth} is out of range: an mlp needs at least 1 hidden layer.");
            }

            widths = Enumerable.Repeat(spec.Width.Value, spec.Depth.Value).ToArray();
        }

        return new Mlp(features, widths, spec.Classes, spec.LayerSettings);
    }

    private static PlainCnn CreateCnn(ModelSpec spec)
    {
        var (channels, height, width) = ImageShape(spec);
        if (height < PlainCnn.MinInputSize || width < PlainCnn.MinInputSize)
        {
            throw new ArgumentException($"cnn needs images of at least {PlainCnn.MinInputSize}x{PlainCnn.MinInputSize} (three 2x2 max-pools), got {height}x{width}.");
        }

        IReadOnlyList<int> widths;
        if (spec.Widths is not null)
        {
            if (spec.Width is not null)
            {
                throw new ArgumentException($"cnn: give either width ({spec.Width}) with depth, or widths [{string.Join(", ", spec.Widths)}], not both.");
            }

            if (spec.Depth is not null && spec.Depth != spec.Widths.Count)
            {
                throw new ArgumentException($"cnn: depth {spec.Depth} does not match the {spec.Widths.Count} entries of widths [{string.Join(", ", spec.Widths)}].");
            }

            widths = spec.Widths;
        }
        else
        {
            if (spec.Depth is null)
            {
                throw new ArgumentException($"cnn needs depth ({PlainCnn.MinDepth} to {PlainCnn.MaxDepth}) or widths.");
            }

            widths = PlainCnn.DefaultWidths(spec.Depth.Value, spec.Width ?? 32);
        }

        return new PlainCnn(channels, widths, spec.Classes, spec.LayerSettings);
    }

    private static CifarResNet CreateResNet(ModelSpec spec, int blocksPerStage)
    {
        if (spec.Depth is not null || spec.Width is not null || spec.Widths is not null)
        {
            throw new ArgumentException(
                $"{spec.Architecture} has a fixed depth ({6 * blocksPerStage + 2}) and widths (16, 32, 64); remove depth/width/widths (got depth={Show(spec.Depth)}, width={Show(spec.Width)}, widths={(spec.Widths is null ? "none" : $"[{string.Join(", ", spec.Widths)}]")}).");
        }

        var (channels, height, width) = ImageShape(spec);
        return new CifarResNet(blocksPerStage, channels, height, width, spec.Classes, spec.Shortcut ?? ResNetShortcut.A, spec.LayerSettings);
    }

    private static (long Channels, long Height, long Width) ImageShape(ModelSpec spec)
    {
        if (spec.InputShape.Count != 3)
        {
            throw new ArgumentException($"{spec.Architecture} needs inputShape [C, H, W], got [{string.Join(", ", spec.InputShape)}].");
        }

        return (spec.InputShape[0], spec.InputShape[1], spec.InputShape[2]);
    }

    private static string Show(int? value) => value?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none";
}
