using System.Globalization;
using System.Text.Json;

namespace CovariateShift.Cli.Sweeps;

/// <summary>The JSON type of a value in a sweep spec.</summary>
public enum SweepValueKind
{
    /// <summary>A JSON string: passed as it is.</summary>
    Text,

    /// <summary>A JSON number: passed as written in the spec (<c>0.10</c> stays <c>0.10</c>).</summary>
    Number,

    /// <summary>true or false: a flag given or left out.</summary>
    Flag,

    /// <summary>null: the option is left out (the train default applies).</summary>
    Null,

    /// <summary>A list of strings or numbers: several values of one option.</summary>
    List,
}

/// <summary>One option value of a sweep spec, as the command-line text it stands for.</summary>
/// <param name="Kind">The JSON type.</param>
/// <param name="Items">The values as command-line text (one for a string or number, none for null, the flag's
/// "true"/"false" for a boolean, several for a list).</param>
public sealed record SweepValue(SweepValueKind Kind, IReadOnlyList<string> Items)
{
    /// <summary>The value as one piece of text: the item, "true"/"false", "null", or the list items joined by '+'.</summary>
    public string Display => Kind switch
    {
        SweepValueKind.Null => "null",
        SweepValueKind.List => string.Join("+", Items),
        _ => Items[0],
    };

    /// <summary>Whether two values stand for the same command-line text.</summary>
    public bool SameAs(SweepValue other) => other is not null && Kind == other.Kind && Items.SequenceEqual(other.Items, StringComparer.Ordinal);

    /// <summary>Reads a JSON value; <paramref name="where"/> names it in the error.</summary>
    /// <exception cref="InvalidDataException">An object, or a list holding something other than strings and numbers.</exception>
    public static SweepValue From(JsonElement e, string where) => e.ValueKind switch
    {
        JsonValueKind.String => new SweepValue(SweepValueKind.Text, [e.GetString()!]),
        JsonValueKind.Number => new SweepValue(SweepValueKind.Number, [e.GetRawText()]),
        JsonValueKind.True => new SweepValue(SweepValueKind.Flag, ["true"]),
        JsonValueKind.False => new SweepValue(SweepValueKind.Flag, ["false"]),
        JsonValueKind.Null => new SweepValue(SweepValueKind.Null, []),
        JsonValueKind.Array => new SweepValue(SweepValueKind.List, e.EnumerateArray().Select((x, i) => x.ValueKind switch
        {
            JsonValueKind.String => x.GetString()!,
            JsonValueKind.Number => x.GetRawText(),
            _ => throw new InvalidDataException($"{where}[{i}] is {Describe(x)}; expected a string or a number (several values of one option)."),
        }).ToList()),
        _ => throw new InvalidDataException($"{where} is {Describe(e)}; expected a string, a number, true/false, null or a list."),
    };

    internal static string Describe(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "a list",
        JsonValueKind.String => $"the string \"{e.GetString()}\"",
        _ => e.GetRawText(),
    };
}

/// <summary>One option of a sweep spec: the <c>covshift train</c> option name without the leading dashes, and its value.</summary>
/// <param name="Name">Option name, e.g. <c>lr</c> for <c>--lr</c>.</param>
/// <param name="Value">Its value.</param>
public sealed record SweepOption(string Name, SweepValue Value);

/// <summary>One axis of a grid: a train option and the values it takes.</summary>
/// <param name="Name">Option name without the leading dashes.</param>
/// <param name="Values">The values, in the spec's order.</param>
public sealed record SweepAxis(string Name, IReadOnlyList<SweepValue> Values);

/// <summary>
/// A sweep spec (SPEC.json of <c>covshift sweep</c>): <c>base</c> options of <c>covshift train</c> for every point, and
/// either a <c>grid</c> (option → list of values; the cartesian product, the first axis varying slowest) or
/// <c>points</c> (a list of option objects laid over <c>base</c>), and optionally <c>repeat</c> (a count N for seeds
/// 0..N-1, or a list of seeds) that repeats every point once per seed. Option names are those of
/// <c>covshift train</c> without the leading dashes; values are as on the command line (numbers and strings), flags
/// true/false. Parsing checks the shape only; <see cref="SweepPlan.Validate"/> checks the options with the train
/// command's own parser.
/// </summary>
/// <example><code>{"base": {"model": "mlp", "depth": 2, "steps": 30, "record-every": 10}, "grid": {"norm": ["none", "batch"], "lr": [0.01, 0.1]}}</code></example>
public sealed record SweepSpec
{
    /// <summary>The options every point starts from.</summary>
    public IReadOnlyList<SweepOption> Base { get; init; } = [];

    /// <summary>The grid axes, in the spec's order (empty when <see cref="Points"/> is given).</summary>
    public IReadOnlyList<SweepAxis> Grid { get; init; } = [];

    /// <summary>Explicit points (each laid over <see cref="Base"/>); null when the spec has a grid.</summary>
    public IReadOnlyList<IReadOnlyList<SweepOption>>? Points { get; init; }

    /// <summary>The seeds of <c>repeat</c>; null when every point runs once.</summary>
    public IReadOnlyList<long>? Seeds { get; init; }

    /// <summary>The spec document as given (kept in sweep.json).</summary>
    public required string Json { get; init; }

    private static readonly JsonDocumentOptions DocumentOptions = new() { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip };

    /// <summary>Reads a spec file.</summary>
    /// <exception cref="ArgumentException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">It is not a valid spec; the message names the file and the problem.</exception>
    public static SweepSpec Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) throw new ArgumentException($"sweep spec '{path}' is a directory; expected a JSON file.");
        if (!File.Exists(path)) throw new ArgumentException($"sweep spec '{path}' does not exist; expected a JSON file with 'base' and 'grid' or 'points'.");
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses a spec document; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="InvalidDataException">Not valid JSON, or not the shape of a spec; the message says where and what is expected.</exception>
    public static SweepSpec Parse(string json, string source = "sweep spec")
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, DocumentOptions);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source} is not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{source} is {SweepValue.Describe(root)}; expected a JSON object with 'base' and 'grid' or 'points'.");
            IReadOnlyList<SweepOption> baseOptions = [];
            IReadOnlyList<SweepAxis> grid = [];
            List<IReadOnlyList<SweepOption>>? points = null;
            IReadOnlyList<long>? seeds = null;
            bool hasGrid = false;
            foreach (var p in Properties(root, source))
            {
                switch (p.Name)
                {
                    case "base":
                        baseOptions = Options(p.Value, $"{source}: base");
                        break;
                    case "grid":
                        hasGrid = true;
                        grid = Axes(p.Value, $"{source}: grid");
                        break;
                    case "points":
                        if (p.Value.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{source}: points is {SweepValue.Describe(p.Value)}; expected a list of option objects.");
                        points = p.Value.EnumerateArray().Select((e, i) => (IReadOnlyList<SweepOption>)Options(e, $"{source}: points[{i}]")).ToList();
                        if (points.Count == 0) throw new InvalidDataException($"{source}: points is empty; expected at least one option object.");
                        break;
                    case "repeat":
                        seeds = Repeat(p.Value, $"{source}: repeat");
                        break;
                    default:
                        throw new InvalidDataException($"{source}: unknown key '{p.Name}'; expected base, grid, points or repeat.");
                }
            }
            if (hasGrid && points is not null) throw new InvalidDataException($"{source} has both 'grid' and 'points'; give one of them.");
            if (!hasGrid && points is null) throw new InvalidDataException($"{source} has neither 'grid' nor 'points'; expected a grid (option -> list of values) or a list of points.");
            return new SweepSpec { Base = baseOptions, Grid = grid, Points = points, Seeds = seeds, Json = root.GetRawText() };
        }
    }

    private static List<JsonProperty> Properties(JsonElement obj, string where)
    {
        var list = obj.EnumerateObject().ToList();
        var duplicate = list.GroupBy(p => p.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new InvalidDataException($"{where} has the key '{duplicate.Key}' twice; expected each key once.");
        return list;
    }

    private static void CheckName(string name, string where)
    {
        if (name.StartsWith('-')) throw new InvalidDataException($"{where}: option '{name}' starts with a dash; write train options without the leading dashes ('{name.TrimStart('-')}').");
        if (name.Length == 0) throw new InvalidDataException($"{where}: an empty option name; expected a covshift train option such as 'lr'.");
    }

    private static List<SweepOption> Options(JsonElement obj, string where)
    {
        if (obj.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where} is {SweepValue.Describe(obj)}; expected an object of covshift train options (e.g. {{\"lr\": 0.1}}).");
        return Properties(obj, where).Select(p =>
        {
            CheckName(p.Name, where);
            return new SweepOption(p.Name, SweepValue.From(p.Value, $"{where}.{p.Name}"));
        }).ToList();
    }

    private static List<SweepAxis> Axes(JsonElement obj, string where)
    {
        if (obj.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where} is {SweepValue.Describe(obj)}; expected an object of option -> list of values (e.g. {{\"lr\": [0.01, 0.1]}}).");
        var axes = Properties(obj, where).Select(p =>
        {
            CheckName(p.Name, where);
            if (p.Value.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{where}.{p.Name} is {SweepValue.Describe(p.Value)}; expected a list of values (e.g. [{p.Value.GetRawText()}]).");
            var values = p.Value.EnumerateArray().Select((e, i) => SweepValue.From(e, $"{where}.{p.Name}[{i}]")).ToList();
            if (values.Count == 0) throw new InvalidDataException($"{where}.{p.Name} is an empty list; expected at least one value.");
            return new SweepAxis(p.Name, values);
        }).ToList();
        if (axes.Count == 0) throw new InvalidDataException($"{where} is empty; expected at least one axis (option -> list of values).");
        return axes;
    }

    private static List<long> Repeat(JsonElement e, string where)
    {
        if (e.ValueKind == JsonValueKind.Number)
        {
            if (!e.TryGetInt32(out var n) || n < 1 || n > 100_000) throw new InvalidDataException($"{where} is {e.GetRawText()}; expected a whole number of seeds from 1 to 100000, or a list of seeds.");
            return Enumerable.Range(0, n).Select(i => (long)i).ToList();
        }
        if (e.ValueKind == JsonValueKind.Array)
        {
            var seeds = e.EnumerateArray().Select((x, i) => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out var s)
                ? (long)s
                : throw new InvalidDataException($"{where}[{i}] is {SweepValue.Describe(x)}; expected a whole-number seed.")).ToList();
            if (seeds.Count == 0) throw new InvalidDataException($"{where} is an empty list; expected at least one seed.");
            var dup = seeds.GroupBy(s => s).FirstOrDefault(g => g.Count() > 1);
            if (dup is not null) throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"{where} has the seed {dup.Key} twice; expected distinct seeds."));
            return seeds;
        }
        throw new InvalidDataException($"{where} is {SweepValue.Describe(e)}; expected a number of seeds (e.g. 3 for seeds 0, 1, 2) or a list of seeds.");
    }
}
