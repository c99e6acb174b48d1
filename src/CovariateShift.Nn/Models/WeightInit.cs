using System.Globalization;
using CovariateShift.Nn.Normalization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Nn.Models;

/// <summary>
/// Initialization of every linear and convolution weight of a model (Linear, Conv2d, <see cref="WsLinear"/>,
/// <see cref="WsConv2d"/>, including the classifier head and projection shortcuts). fan_in = C_in·k_h·k_w and
/// fan_out = C_out·k_h·k_w (k = 1 for linear layers). Every scheme except <c>default</c> sets biases to 0.
/// Normalization parameters are never touched. Command-line forms: <c>default</c>, <c>he</c>, <c>xavier</c>,
/// <c>lecun</c>, <c>gaussian:σ</c> (e.g. <c>gaussian:0.01</c>).
/// </summary>
public sealed record WeightInit
{
    private static readonly CliNameTable<InitKind> Table = new(
        "init",
        (InitKind.Default, "default"),
        (InitKind.He, "he"),
        (InitKind.Xavier, "xavier"),
        (InitKind.Lecun, "lecun"),
        (InitKind.Gaussian, "gaussian"));

    private WeightInit(InitKind kind, double? gaussianStd)
    {
        Kind = kind;
        GaussianStd = gaussianStd;
    }

    /// <summary>TorchSharp's own per-layer initialization.</summary>
    public static WeightInit Default { get; } = new(InitKind.Default, null);

    /// <summary>He (Kaiming) normal, fan-in: N(0, 2/fan_in).</summary>
    public static WeightInit He { get; } = new(InitKind.He, null);

    /// <summary>Glorot (Xavier) uniform: U(±√(6/(fan_in + fan_out))).</summary>
    public static WeightInit Xavier { get; } = new(InitKind.Xavier, null);

    /// <summary>LeCun normal: N(0, 1/fan_in).</summary>
    public static WeightInit Lecun { get; } = new(InitKind.Lecun, null);

    /// <summary>The family.</summary>
    public InitKind Kind { get; }

    /// <summary>σ of <see cref="InitKind.Gaussian"/>; null for the other kinds.</summary>
    public double? GaussianStd { get; }

    /// <summary>Every command-line form: default, he, xavier, lecun, gaussian:STD.</summary>
    public static IReadOnlyList<string> CliForms { get; } = ["default", "he", "xavier", "lecun", "gaussian:STD"];

    /// <summary>N(0, σ²) with a fixed, finite σ &gt; 0.</summary>
    /// <exception cref="ArgumentException">σ is not finite and positive; the message quotes it.</exception>
    public static WeightInit Gaussian(double std)
    {
        if (!(std > 0.0) || double.IsInfinity(std))
        {
            throw new ArgumentException($"The gaussian init needs a finite standard deviation > 0, got {std.ToString(CultureInfo.InvariantCulture)}.");
        }

        return new WeightInit(InitKind.Gaussian, std);
    }

    /// <summary>Parses <c>default</c>, <c>he</c>, <c>xavier</c>, <c>lecun</c> or <c>gaussian:σ</c> (case-insensitive, invariant culture).</summary>
    /// <exception cref="ArgumentException">Unknown or malformed form; the message quotes it and lists the valid forms.</exception>
    public static WeightInit Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var trimmed = text.Trim();
        var colon = trimmed.IndexOf(':', StringComparison.Ordinal);
        var name = colon < 0 ? trimmed : trimmed[..colon];
        InitKind kind;
        try
        {
            kind = Table.Parse(name);
        }
        catch (ArgumentException)
        {
            throw new ArgumentException($"Unknown init '{text}'. Valid forms: {string.Join(", ", CliForms)} (e.g. gaussian:0.01).");
        }

        if (kind == InitKind.Gaussian)
        {
            if (colon < 0
                || !double.TryParse(trimmed[(colon + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var std)
                || !(std > 0.0)
                || double.IsInfinity(std))
            {
                throw new ArgumentException($"Init '{text}' needs a finite standard deviation > 0 after the colon, e.g. gaussian:0.01.");
            }

            return Gaussian(std);
        }

        if (colon >= 0)
        {
            throw new ArgumentException($"Init '{text}' takes no argument; only gaussian does (e.g. gaussian:0.01).");
        }

        return kind switch
        {
            InitKind.Default => Default,
            InitKind.He => He,
            InitKind.Xavier => Xavier,
            _ => Lecun,
        };
    }

    /// <summary>The command-line form, e.g. <c>he</c> or <c>gaussian:0.01</c>; <see cref="Parse"/> reads it back.</summary>
    public string ToCliName() => Kind == InitKind.Gaussian
        ? $"{Table.NameOf(Kind)}:{GaussianStd!.Value.ToString("R", CultureInfo.InvariantCulture)}"
        : Table.NameOf(Kind);

    /// <inheritdoc/>
    public override string ToString() => ToCliName();

    /// <summary>Initializes every linear/conv weight (and zeroes its bias) in <paramref name="model"/> and its descendants.</summary>
    public void Apply(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (Kind == InitKind.Default)
        {
            return;
        }

        using var noGrad = no_grad();
        foreach (var module in model.modules().Prepend(model).Distinct())
        {
            var (weight, bias) = module switch
            {
                Linear linear => (linear.weight, linear.bias),
                Conv2d conv => (conv.weight, conv.bias),
                WsLinear linear => (linear.Weight, linear.Bias),
                WsConv2d conv => (conv.Weight, conv.Bias),
                _ => ((Parameter?)null, (Parameter?)null),
            };
            if (weight is null)
            {
                continue;
            }

            Initialize(weight);
            if (bias is not null)
            {
                nn.init.zeros_(bias);
            }
        }
    }

    private void Initialize(Tensor weight)
    {
        var receptiveField = weight.shape.Skip(2).Aggregate(1L, (a, b) => a * b);
        var fanIn = weight.shape[1] * receptiveField;
        var fanOut = weight.shape[0] * receptiveField;
        switch (Kind)
        {
            case InitKind.He:
                nn.init.normal_(weight, 0.0, Math.Sqrt(2.0 / fanIn));
                break;
            case InitKind.Xavier:
                var bound = Math.Sqrt(6.0 / (fanIn + fanOut));
                nn.init.uniform_(weight, -bound, bound);
                break;
            case InitKind.Lecun:
                nn.init.normal_(weight, 0.0, Math.Sqrt(1.0 / fanIn));
                break;
            case InitKind.Gaussian:
                nn.init.normal_(weight, 0.0, GaussianStd!.Value);
                break;
            default:
                throw new InvalidOperationException($"Init {Kind} has no weight rule.");
        }
    }
}
