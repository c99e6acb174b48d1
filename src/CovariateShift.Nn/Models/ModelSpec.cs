using System.Text.Json;
using System.Text.Json.Serialization;
using CovariateShift.Nn.Normalization;

namespace CovariateShift.Nn.Models;

/// <summary>
/// A model description that <see cref="ModelZoo.Create"/> builds, stored as JSON with camelCase fields:
/// <code>
/// {
///   "architecture": "mlp" | "cnn" | "resnet20" | "resnet32" | "resnet56",   (required)
///   "inputShape": [1, 28, 28],          (required; [C, H, W], or [F] for an mlp)
///   "classes": 10,
///   "depth": 8,                          (mlp: hidden layers; cnn: conv layers 4..20; not for resnet)
///   "width": 256,                        (mlp: units per hidden layer; cnn: base width, default 32; not for resnet)
///   "widths": [256, 128],                (per-layer widths instead of depth + width; not for resnet)
///   "activation": "relu" | "sigmoid" | "tanh" | "gelu",
///   "init": "default" | "he" | "xavier" | "lecun" | "gaussian:0.01",
///   "norm": "none" | "batch" | "layer" | "group" | "instance" | "weight-std" | "rms" | "batch-renorm" | "noisy-batch",
///   "normPlacement": "before" | "after",
///   "groups": 8,                         (group / weight-std only; default: largest divisor of C that is ≤ 32)
///   "eps": 1e-5, "momentum": 0.1,
///   "batchRenorm": { "rMax": 3, "dMax": 5, "warmupSteps": 5000 },
///   "noisyBatch": { "meanBound": 0.5, "scaleLow": 1, "scaleHigh": 1.25, "meanJitter": 0.1, "scaleStd": 0.1 },
///   "shortcut": "A" | "B"                (resnet only; default A)
/// }
/// </code>
/// Omitted optional fields take the defaults shown by the properties; unknown fields are errors.
/// </summary>
public sealed record ModelSpec
{
    private static readonly JsonSerializerOptions JsonOptions = CreateJsonOptions();

    /// <summary>Zoo name: one of <see cref="ModelZoo.Names"/>.</summary>
    public required string Architecture { get; init; }

    /// <summary>Shape of one input sample: [C, H, W] for images ([1, 28, 28], [3, 32, 32]); an mlp also accepts [F].</summary>
    public required IReadOnlyList<long> InputShape { get; init; }

    /// <summary>Number of classes (logits). Default 10.</summary>
    public int Classes { get; init; } = 10;

    /// <summary>mlp: number of hidden layers; cnn: number of conv layers (4 to 20). Not used by resnets.</summary>
    public int? Depth { get; init; }

    /// <summary>mlp: units of every hidden layer; cnn: width of the first stage (default 32, doubling per stage). Not used by resnets.</summary>
    public int? Width { get; init; }

    /// <summary>Explicit width of every hidden (mlp) or conv (cnn) layer; its length is the depth. Not used by resnets.</summary>
    public IReadOnlyList<int>? Widths { get; init; }

    /// <summary>Hidden-layer nonlinearity. Default relu.</summary>
    public ActivationKind Activation { get; init; } = ActivationKind.Relu;

    /// <summary>Weight initialization. Default: TorchSharp's own.</summary>
    public WeightInit Init { get; init; } = WeightInit.Default;

    /// <summary>Normalization of every hidden layer. Default none.</summary>
    public NormKind Norm { get; init; } = NormKind.None;

    /// <summary>Normalization before (default) or after the activation.</summary>
    public NormPlacement NormPlacement { get; init; } = NormPlacement.BeforeActivation;

    /// <summary>Group count for group and weight-std; null selects <see cref="Norms.DefaultGroups"/> per layer.</summary>
    public int? Groups { get; init; }

    /// <summary>Normalization ε. Default 1e-5.</summary>
    public double Eps { get; init; } = 1e-5;

    /// <summary>Running-statistics momentum. Default 0.1.</summary>
    public double Momentum { get; init; } = 0.1;

    /// <summary>Batch-renorm clipping schedule; null uses the defaults of <see cref="BatchRenormSchedule"/>.</summary>
    public BatchRenormSchedule? BatchRenorm { get; init; }

    /// <summary>Noisy-batch noise distribution; null uses the paper's values.</summary>
    public NoisyBatchNormOptions? NoisyBatch { get; init; }

    /// <summary>ResNet shortcut option; null means A. Only for resnets.</summary>
    public ResNetShortcut? Shortcut { get; init; }

    /// <summary>The normalization options this spec describes.</summary>
    [JsonIgnore]
    public NormOptions NormOptions => new()
    {
        Groups = Groups,
        Eps = Eps,
        Momentum = Momentum,
        BatchRenorm = BatchRenorm ?? new BatchRenormSchedule(),
        NoisyBatch = NoisyBatch ?? new NoisyBatchNormOptions(),
    };

    /// <summary>The hidden-layer settings this spec describes.</summary>
    [JsonIgnore]
    public LayerSettings LayerSettings => new()
    {
        Activation = Activation,
        Norm = Norm,
        Placement = NormPlacement,
        NormOptions = NormOptions,
        Init = Init,
    };

    /// <summary>Reads a spec from a JSON file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">Malformed JSON, a missing required field, an unknown field or an invalid value; the message names the file and the field.</exception>
    public static ModelSpec Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return FromJson(File.ReadAllText(path), path);
    }

    /// <summary>Parses a spec from JSON text.</summary>
    /// <param name="json">The JSON document.</param>
    /// <param name="source">What to call the document in error messages (e.g. its file name).</param>
    /// <exception cref="InvalidDataException">Malformed JSON, a missing required field, an unknown field or an invalid value; the message names the source and the field.</exception>
    public static ModelSpec FromJson(string json, string source = "(json)")
    {
        ArgumentNullException.ThrowIfNull(json);
        ModelSpec? spec;
        try
        {
            spec = JsonSerializer.Deserialize<ModelSpec>(json, JsonOptions);
        }
        catch (JsonException ex)
        {
            var field = ex.Path is null or "$" ? string.Empty : $", field '{ex.Path.TrimStart('$', '.')}'";
            throw new InvalidDataException($"Model spec '{source}'{field}: {ex.Message}", ex);
        }

        if (spec is null)
        {
            throw new InvalidDataException($"Model spec '{source}': expected a JSON object, got null.");
        }

        spec.Validate(source);
        return spec;
    }

    /// <summary>Writes the spec to <paramref name="path"/> as indented JSON (null fields omitted).</summary>
    public void Save(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        File.WriteAllText(path, ToJson() + Environment.NewLine);
    }

    /// <summary>The spec as indented JSON; <see cref="FromJson"/> reads it back.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    private static JsonSerializerOptions CreateJsonOptions()
    {
        var options = new JsonSerializerOptions
        {
            PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
            UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
            WriteIndented = true,
            AllowTrailingCommas = true,
            ReadCommentHandling = JsonCommentHandling.Skip,
        };
        options.Converters.Add(new CliNameJsonConverter<NormKind>(NormKinds.Parse, NormKinds.ToCliName));
        options.Converters.Add(new CliNameJsonConverter<NormPlacement>(NormPlacements.Parse, NormPlacements.ToCliName));
        options.Converters.Add(new CliNameJsonConverter<ActivationKind>(ActivationKinds.Parse, ActivationKinds.ToCliName));
        options.Converters.Add(new CliNameJsonConverter<ResNetShortcut>(ResNetShortcuts.Parse, ResNetShortcuts.ToCliName));
        options.Converters.Add(new CliNameJsonConverter<WeightInit>(WeightInit.Parse, init => init.ToCliName()));
        return options;
    }

    private void Validate(string source)
    {
        string? problem = null;
        if (Architecture is null || InputShape is null)
        {
            problem = $"field '{(Architecture is null ? "architecture" : "inputShape")}' must not be null.";
        }
        else if (!ModelZoo.Names.Contains(Architecture, StringComparer.OrdinalIgnoreCase))
        {
            problem = $"field 'architecture': Unknown architecture '{Architecture}'. Valid names: {string.Join(", ", ModelZoo.Names)}.";
        }
        else if (InputShape.Count == 0 || InputShape.Any(d => d < 1))
        {
            problem = $"field 'inputShape': every dimension must be >= 1 and there must be at least one, got [{string.Join(", ", InputShape)}].";
        }
        else if (Classes < 1)
        {
            problem = $"field 'classes': must be >= 1, got {Classes}.";
        }
        else
        {
            try
            {
                NormOptions.Validate();
            }
            catch (ArgumentException ex)
            {
                problem = ex.Message;
            }
        }

        if (problem is not null)
        {
            throw new InvalidDataException($"Model spec '{source}': {problem}");
        }
    }
}
