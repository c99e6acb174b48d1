using System.Globalization;
using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;

namespace CovariateShift.Training.Training;

/// <summary>
/// Fields that replace those of a <see cref="ModelSpec"/> (the <c>covshift train</c> flags <c>--norm</c>, <c>--depth</c>,
/// <c>--width</c>, <c>--activation</c>, <c>--init</c>, <c>--norm-placement</c>, <c>--groups</c>). Null keeps the spec's value.
/// </summary>
public sealed record ModelOverrides
{
    /// <summary>Normalization of every hidden layer.</summary>
    public NormKind? Norm { get; init; }

    /// <summary>Hidden layers (mlp) or conv layers (cnn).</summary>
    public int? Depth { get; init; }

    /// <summary>Units per hidden layer (mlp) or base width (cnn).</summary>
    public int? Width { get; init; }

    /// <summary>Hidden-layer nonlinearity.</summary>
    public ActivationKind? Activation { get; init; }

    /// <summary>Weight initialization.</summary>
    public WeightInit? Init { get; init; }

    /// <summary>Normalization before or after the activation.</summary>
    public NormPlacement? NormPlacement { get; init; }

    /// <summary>Group count of group and weight-std normalization.</summary>
    public int? Groups { get; init; }

    /// <summary>
    /// <paramref name="spec"/> with the non-null fields replaced. A depth or width given for a spec with per-layer
    /// <see cref="ModelSpec.Widths"/> turns them into depth × width (the missing one taken from the widths). When the
    /// normalization is replaced by one that takes no group count, the spec's group count is dropped.
    /// </summary>
    /// <exception cref="ArgumentException">A depth, width or group count below 1, depth/width for a resnet, or a width
    /// missing for a spec whose per-layer widths differ; the message names the value and what is expected.</exception>
    public ModelSpec ApplyTo(ModelSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        AtLeastOne("--depth", Depth);
        AtLeastOne("--width", Width);
        AtLeastOne("--groups", Groups);
        var result = spec;
        if (Depth is not null || Width is not null)
        {
            if (spec.Architecture.StartsWith("resnet", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"--depth/--width do not apply to {spec.Architecture} (fixed depth and widths 16, 32, 64); got depth {Show(Depth)}, width {Show(Width)}. Use mlp or cnn to choose them.");
            if (spec.Widths is { } widths)
            {
                int width = Width ?? (widths.Distinct().Count() == 1
                    ? widths[0]
                    : throw new ArgumentException($"The spec has per-layer widths [{string.Join(", ", widths)}]; with --depth {Show(Depth)} give --width too."));
                result = result with { Widths = null, Depth = Depth ?? widths.Count, Width = width };
            }
            else
            {
                result = result with { Depth = Depth ?? spec.Depth, Width = Width ?? spec.Width };
            }
        }

        if (Norm is { } norm)
        {
            result = result with { Norm = norm };
            if (Groups is null && norm is not (NormKind.Group or NormKind.WeightStd)) result = result with { Groups = null };
        }

        if (Activation is { } activation) result = result with { Activation = activation };
        if (Init is { } init) result = result with { Init = init };
        if (NormPlacement is { } placement) result = result with { NormPlacement = placement };
        if (Groups is { } groups) result = result with { Groups = groups };
        return result;
    }

    private static void AtLeastOne(string name, int? value)
    {
        if (value is < 1) throw new ArgumentException($"{name} must be at least 1; got {value}.");
    }

    private static string Show(int? value) => value?.ToString(CultureInfo.InvariantCulture) ?? "none";
}
