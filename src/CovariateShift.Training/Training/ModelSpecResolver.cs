using System.Globalization;
using CovariateShift.Nn.Models;

namespace CovariateShift.Training.Training;

/// <summary>
/// Turns the <c>--model</c> argument of <c>covshift train</c> (a zoo name or the path of a JSON <see cref="ModelSpec"/>)
/// and the override flags into the spec to build, checked against the data set's example shape and class count.
/// </summary>
public static class ModelSpecResolver
{
    /// <summary>Hidden layers of the zoo's default mlp.</summary>
    public const int DefaultMlpDepth = 8;

    /// <summary>Units per hidden layer of the zoo's default mlp.</summary>
    public const int DefaultMlpWidth = 256;

    /// <summary>Conv layers of the zoo's default cnn.</summary>
    public const int DefaultCnnDepth = 4;

    /// <summary>Base width of the zoo's default cnn.</summary>
    public const int DefaultCnnWidth = 32;

    /// <summary>
    /// The default spec of zoo model <paramref name="architecture"/> for examples of <paramref name="inputShape"/> and
    /// <paramref name="classes"/> classes: mlp 8 × 256, cnn depth 4 width 32, resnets as defined; ReLU (or
    /// <paramref name="activation"/>), no normalization; He init for ReLU and GELU, Xavier for sigmoid and tanh.
    /// </summary>
    /// <exception cref="ArgumentException">Unknown architecture; the message lists the zoo names.</exception>
    public static ModelSpec ZooDefault(string architecture, IReadOnlyList<long> inputShape, int classes, ActivationKind activation = ActivationKind.Relu)
    {
        ArgumentNullException.ThrowIfNull(architecture);
        ArgumentNullException.ThrowIfNull(inputShape);
        var name = architecture.Trim().ToLowerInvariant();
        if (!ModelZoo.Names.Contains(name))
            throw new ArgumentException($"Unknown model '{architecture}'. Expected a zoo name ({string.Join(", ", ModelZoo.Names)}) or the path of a .json model spec.");
        var spec = new ModelSpec
        {
            Architecture = name,
            InputShape = inputShape.ToArray(),
            Classes = classes,
            Activation = activation,
            Init = activation is ActivationKind.Sigmoid or ActivationKind.Tanh ? WeightInit.Xavier : WeightInit.He,
        };
        return name switch
        {
            "mlp" => spec with { Depth = DefaultMlpDepth, Width = DefaultMlpWidth },
            "cnn" => spec with { Depth = DefaultCnnDepth, Width = DefaultCnnWidth },
            _ => spec,
        };
    }

    /// <summary>
    /// The spec for <paramref name="model"/>: a zoo name gets <see cref="ZooDefault"/> for the data set's shape and
    /// classes; anything else is read as a JSON spec file (see <see cref="ModelSpec.Load"/>) whose input shape and class
    /// count must fit the data set. Then <paramref name="overrides"/> are applied. The model is not built here
    /// (<see cref="ModelZoo.Create"/> checks the remaining combinations).
    /// </summary>
    /// <param name="model">Zoo name or path of a .json spec.</param>
    /// <param name="overrides">Fields to replace.</param>
    /// <param name="inputShape">Shape of one example of the data set, [C, H, W].</param>
    /// <param name="classes">Classes of the data set.</param>
    /// <exception cref="ArgumentException">Unknown zoo name, a spec that does not fit the data set, or a bad override.</exception>
    /// <exception cref="FileNotFoundException">The spec file does not exist.</exception>
    /// <exception cref="InvalidDataException">The spec file is not a valid spec; the message names the file and the field.</exception>
    public static ModelSpec Resolve(string model, ModelOverrides overrides, IReadOnlyList<long> inputShape, int classes)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(overrides);
        ArgumentNullException.ThrowIfNull(inputShape);
        if (ModelZoo.Names.Contains(model.Trim().ToLowerInvariant()))
        {
            RefuseTabular(model.Trim().ToLowerInvariant(), inputShape);
            return overrides.ApplyTo(ZooDefault(model, inputShape, classes, overrides.Activation ?? ActivationKind.Relu));
        }

        if (Directory.Exists(model))
            throw new ArgumentException($"Model spec '{model}' is a directory; expected a zoo name ({string.Join(", ", ModelZoo.Names)}) or the path of a .json model spec file.");

        bool looksLikePath = model.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || model.Contains('/') || model.Contains(Path.DirectorySeparatorChar);
        if (!looksLikePath && !File.Exists(model))
            throw new ArgumentException($"Unknown model '{model}'. Expected a zoo name ({string.Join(", ", ModelZoo.Names)}) or the path of a .json model spec.");
        if (!File.Exists(model))
            throw new FileNotFoundException($"Model spec file '{model}' does not exist. Expected a zoo name ({string.Join(", ", ModelZoo.Names)}) or the path of a .json model spec (see models/).", model);

        RefuseDuplicateKeys(model);
        var spec = ModelSpec.Load(model);
        RefuseTabular(spec.Architecture.ToLowerInvariant(), inputShape);
        var expected = string.Join(", ", inputShape);
        long expectedElements = inputShape.Aggregate(1L, (a, b) => a * b);
        bool flatMlp = spec.Architecture.Equals("mlp", StringComparison.OrdinalIgnoreCase) && spec.InputShape.Count == 1 && spec.InputShape[0] == expectedElements;
        if (!flatMlp && !spec.InputShape.SequenceEqual(inputShape))
            throw new ArgumentException($"Model spec '{model}': inputShape [{string.Join(", ", spec.InputShape)}] does not fit the data set's examples [{expected}]; expected [{expected}]{(spec.Architecture.Equals("mlp", StringComparison.OrdinalIgnoreCase) ? $" or [{expectedElements}]" : "")}.");
        if (spec.Classes != classes)
            throw new ArgumentException($"Model spec '{model}': classes {spec.Classes} does not match the data set's {classes} classes; expected {classes}.");
        return overrides.ApplyTo(spec);
    }

    /// <summary>Largest number of parameters a model may have (4 GiB of float32): a larger spec is refused before it is allocated.</summary>
    public const long MaxParameters = 1L << 30;

    /// <summary>
    /// Refuses a spec whose parameters could not be allocated (more than <see cref="MaxParameters"/>, estimated from its
    /// widths before anything is built), naming the sizes.
    /// </summary>
    /// <exception cref="ArgumentException">The model is too large.</exception>
    public static void CheckSize(ModelSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        double parameters;
        long inputs = spec.InputShape.Aggregate(1L, (a, b) => a * b);
        if (spec.Architecture.Equals("mlp", StringComparison.OrdinalIgnoreCase))
        {
            var widths = spec.Widths?.Select(w => (double)w).ToList() ?? Enumerable.Repeat((double)(spec.Width ?? DefaultMlpWidth), spec.Depth ?? DefaultMlpDepth).ToList();
            parameters = 0;
            double previous = inputs;
            foreach (var w in widths)
            {
                parameters += previous * w + w;
                previous = w;
            }
            parameters += previous * spec.Classes;
        }
        else if (spec.Architecture.Equals("cnn", StringComparison.OrdinalIgnoreCase))
        {
            double widest = 8.0 * (spec.Width ?? DefaultCnnWidth);
            parameters = 9.0 * widest * widest * (spec.Depth ?? DefaultCnnDepth);
        }
        else
        {
            return;   // resnets have fixed widths
        }
        if (parameters > MaxParameters)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"The {spec.Architecture} (depth {spec.Depth?.ToString(CultureInfo.InvariantCulture) ?? "default"}, width {spec.Width?.ToString(CultureInfo.InvariantCulture) ?? (spec.Widths is { } ws ? string.Join("/", ws) : "default")}) would have about {parameters:G3} parameters; expected at most {MaxParameters:G3} (it could not be allocated). Use a smaller --width or --depth."));
        }
    }

    private static void RefuseTabular(string architecture, IReadOnlyList<long> inputShape)
    {
        if (inputShape.Count == 1 && architecture != "mlp")
            throw new ArgumentException($"Model {architecture} takes images [C, H, W], but the data set's examples are feature vectors [{inputShape[0]}]; use --model mlp for tabular data.");
    }

    private static void RefuseDuplicateKeys(string path)
    {
        if (!File.Exists(path)) return;
        try
        {
            var reader = new System.Text.Json.Utf8JsonReader(File.ReadAllBytes(path), new System.Text.Json.JsonReaderOptions { CommentHandling = System.Text.Json.JsonCommentHandling.Skip, AllowTrailingCommas = true });
            var stack = new Stack<HashSet<string>>();
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case System.Text.Json.JsonTokenType.StartObject:
                        stack.Push(new HashSet<string>(StringComparer.OrdinalIgnoreCase));
                        break;
                    case System.Text.Json.JsonTokenType.EndObject:
                        stack.Pop();
                        break;
                    case System.Text.Json.JsonTokenType.PropertyName:
                        var name = reader.GetString()!;
                        if (!stack.Peek().Add(name))
                            throw new InvalidDataException($"Model spec '{path}', field '{name}': given twice; expected each field once.");
                        break;
                }
            }
        }
        catch (System.Text.Json.JsonException)
        {
            // Malformed JSON: ModelSpec.Load reports it with the field.
        }
    }
}
