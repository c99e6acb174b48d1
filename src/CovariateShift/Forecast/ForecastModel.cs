using System.Text.Json;
using System.Text.Json.Serialization;

namespace CovariateShift.Forecast;

/// <summary>
/// The <see cref="DivergenceForecaster"/>'s model: a logistic regression over <see cref="ForecastFeatures"/> and the rule
/// that turns its output into warnings. score = 1 / (1 + exp(-z)), z = <see cref="Bias"/> + sum over features k of
/// <see cref="Weights"/>[k] x (x_k - <see cref="Means"/>[k]) / <see cref="Scales"/>[k] (the features standardized on the
/// training records). A warning starts when the score is at least <see cref="Threshold"/> on <see cref="Patience"/>
/// consecutive records. The shipped model (<see cref="Default"/>) is <c>models/forecast/forecast-model.json</c>, embedded in the
/// assembly; <c>covshift experiment forecast</c> trains it on its tuning runs and writes the same file again.
/// </summary>
public sealed record ForecastModel
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    private static readonly Lazy<ForecastModel> Shipped = new(() =>
    {
        using var stream = typeof(ForecastModel).Assembly.GetManifestResourceStream("CovariateShift.forecast-model.json")
            ?? throw new InvalidOperationException("The forecast model resource is missing from the assembly.");
        return Read(stream, "the built-in forecast model");
    });

    /// <summary>The shipped model (models/forecast/forecast-model.json).</summary>
    public static ForecastModel Default => Shipped.Value;

    /// <summary>How the model was made (free text: the command, the runs it was trained on).</summary>
    public string Description { get; init; } = "";

    /// <summary>The feature names (<see cref="ForecastFeatures.Names"/>), one per weight.</summary>
    public IReadOnlyList<string> Features { get; init; } = [];

    /// <summary>Per feature: its mean on the training records.</summary>
    public IReadOnlyList<double> Means { get; init; } = [];

    /// <summary>Per feature: its standard deviation on the training records (positive).</summary>
    public IReadOnlyList<double> Scales { get; init; } = [];

    /// <summary>Per feature: the weight of the standardized feature.</summary>
    public IReadOnlyList<double> Weights { get; init; } = [];

    /// <summary>The intercept.</summary>
    public double Bias { get; init; }

    /// <summary>Score (in (0, 1)) at or above which a record counts towards a warning.</summary>
    public double Threshold { get; init; } = 0.5;

    /// <summary>Consecutive records at or above <see cref="Threshold"/> before a warning starts (a single spike does not warn). At least 1.</summary>
    public int Patience { get; init; } = 1;

    /// <summary>The standardized contribution of each feature to z, in the order of <see cref="ForecastFeatures.Names"/>
    /// (0 for a feature the model does not use), and z (<see cref="Bias"/> plus their sum).</summary>
    /// <remarks>Call only on a validated model.</remarks>
    internal double Logit(IReadOnlyList<double> values, double[] contributions, int[] index)
    {
        double z = Bias;
        Array.Clear(contributions);
        for (int k = 0; k < index.Length; k++)
        {
            double c = Weights[k] * (values[index[k]] - Means[k]) / Scales[k];
            contributions[index[k]] = c;
            z += c;
        }
        return z;
    }

    /// <summary>For each of <see cref="Features"/>, its index in <see cref="ForecastFeatures.Names"/>.</summary>
    internal int[] FeatureIndex()
    {
        var names = ForecastFeatures.Names;
        return [.. Features.Select(f => names.ToList().IndexOf(f))];
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid value and what is expected.</summary>
    public void Validate()
    {
        if (Features.Count == 0 || Means.Count != Features.Count || Scales.Count != Features.Count || Weights.Count != Features.Count)
            throw new ArgumentOutOfRangeException(nameof(Features), Features.Count, $"Forecast model: features, means, scales and weights must have one entry per feature; got {Features.Count}, {Means.Count}, {Scales.Count}, {Weights.Count}.");
        foreach (var f in Features)
        {
            if (!ForecastFeatures.Names.Contains(f))
                throw new ArgumentOutOfRangeException(nameof(Features), f, $"Forecast model: unknown feature '{f}'; expected one of {string.Join(", ", ForecastFeatures.Names)}.");
        }
        if (Features.Distinct().Count() != Features.Count)
            throw new ArgumentOutOfRangeException(nameof(Features), Features.Count, "Forecast model: a feature is listed twice.");
        for (int k = 0; k < Features.Count; k++)
        {
            if (!double.IsFinite(Means[k]) || !double.IsFinite(Weights[k]) || !(Scales[k] > 0) || double.IsInfinity(Scales[k]))
                throw new ArgumentOutOfRangeException(nameof(Weights), Weights[k], $"Forecast model: feature '{Features[k]}' needs a finite mean and weight and a positive scale; got {Means[k]}, {Weights[k]}, {Scales[k]}.");
        }
        if (!double.IsFinite(Bias))
            throw new ArgumentOutOfRangeException(nameof(Bias), Bias, $"Forecast model: Bias must be finite; got {Bias}.");
        if (!(Threshold > 0 && Threshold < 1))
            throw new ArgumentOutOfRangeException(nameof(Threshold), Threshold, $"Forecast Threshold must be a score between 0 and 1 (exclusive); got {Threshold}.");
        if (Patience < 1)
            throw new ArgumentOutOfRangeException(nameof(Patience), Patience, $"Forecast Patience must be at least 1 record; got {Patience}.");
    }

    /// <summary>Reads a model file.</summary>
    /// <exception cref="InvalidDataException">Not a valid model (the message names the file and the problem).</exception>
    public static ForecastModel Load(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        using var stream = File.OpenRead(path);
        return Read(stream, $"'{path}'");
    }

    /// <summary>Reads a model from <paramref name="stream"/> (UTF-8 JSON); <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="InvalidDataException">Not a valid model (the message names the source and the problem).</exception>
    public static ForecastModel Read(Stream stream, string source)
    {
        ArgumentNullException.ThrowIfNull(stream);
        try
        {
            var model = JsonSerializer.Deserialize<ForecastModel>(stream, Json) ?? throw new InvalidDataException("empty");
            model.Validate();
            return model;
        }
        catch (Exception e) when (e is JsonException or InvalidDataException or NotSupportedException or ArgumentOutOfRangeException)
        {
            throw new InvalidDataException($"{source} is not a forecast model: {e.Message}", e);
        }
    }

    /// <summary>The model as JSON (the form of models/forecast/forecast-model.json), with a final newline.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json) + "\n";

    /// <inheritdoc />
    public bool Equals(ForecastModel? other) =>
        other is not null && Description == other.Description && Features.SequenceEqual(other.Features) && Means.SequenceEqual(other.Means)
        && Scales.SequenceEqual(other.Scales) && Weights.SequenceEqual(other.Weights) && Bias == other.Bias && Threshold == other.Threshold && Patience == other.Patience;

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Features.Count, Bias, Threshold, Patience);
}
