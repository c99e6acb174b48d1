using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using CovariateShift.Cli.Commands;
using CovariateShift.Nn.Models;
using CovariateShift.Training.Data;
using CovariateShift.Training.Training;

namespace CovariateShift.Cli.Sweeps;

/// <summary>One point of a sweep: a <c>covshift train</c> run into <c>DIR/runs/&lt;Id&gt;</c>.</summary>
/// <param name="Index">Position in the plan (the Slurm array task id).</param>
/// <param name="Id">Readable, filesystem-safe, unique name: the point's axes as <c>name=value</c> joined by ',' (e.g.
/// <c>norm=batch,lr=0.1</c>); "base" for a point without axes.</param>
/// <param name="Axes">The options that vary across points (grid axes, an explicit point's own keys, the repeat seed).</param>
/// <param name="Options">Every option of the point (base with the axes laid over it), in argument order.</param>
/// <param name="Arguments">The <c>covshift train</c> arguments of the point, without <c>--out</c>.</param>
public sealed record SweepPoint(int Index, string Id, IReadOnlyList<SweepOption> Axes, IReadOnlyList<SweepOption> Options, IReadOnlyList<string> Arguments)
{
    /// <summary>The axis values by name, as text (the id's parts, unencoded).</summary>
    public IReadOnlyDictionary<string, string> AxisValues => Axes.ToDictionary(a => a.Name, a => a.Value.Display, StringComparer.Ordinal);
}

/// <summary>
/// A sweep spec expanded into its points, each with its id and <c>covshift train</c> arguments.
/// <see cref="Validate"/> checks every point with the train command's own parser before anything runs.
/// </summary>
public sealed class SweepPlan
{
    /// <summary>Train options a point may not set: the sweep decides the run directory.</summary>
    public static readonly IReadOnlyList<string> ReservedOptions = ["out", "resume", "overwrite"];

    /// <summary>Longest id (UTF-8 bytes); a longer one is cut and ends in '~' and 8 hex digits of its hash.</summary>
    public const int MaxIdBytes = 200;

    private SweepPlan(SweepSpec spec, IReadOnlyList<SweepPoint> points, IReadOnlyList<string> axisNames)
    {
        Spec = spec;
        Points = points;
        AxisNames = axisNames;
    }

    /// <summary>The spec.</summary>
    public SweepSpec Spec { get; }

    /// <summary>The points, in order (grid: the first axis varies slowest; repeat seeds innermost).</summary>
    public IReadOnlyList<SweepPoint> Points { get; }

    /// <summary>Every axis name of any point, in first-seen order (the results' axis columns).</summary>
    public IReadOnlyList<string> AxisNames { get; }

    /// <summary>Expands <paramref name="spec"/>: the grid's cartesian product (or the explicit points) times the repeat seeds.</summary>
    /// <exception cref="ArgumentException">Two points would get the same id, repeat conflicts with a seed option, or an
    /// option is not a train option.</exception>
    public static SweepPlan Create(SweepSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var trainOptions = TrainOptions.Instance;
        IEnumerable<IReadOnlyList<SweepOption>> combos = spec.Points ?? Product(spec.Grid);
        var expanded = new List<IReadOnlyList<SweepOption>>();
        foreach (var axes in combos)
        {
            if (spec.Seeds is null)
            {
                expanded.Add(axes);
                continue;
            }
            foreach (var s in spec.Seeds) expanded.Add([.. axes, new SweepOption("seed", new SweepValue(SweepValueKind.Number, [s.ToString(CultureInfo.InvariantCulture)]))]);
        }

        if (spec.Seeds is not null)
        {
            var clash = spec.Base.Concat(spec.Grid.Select(a => new SweepOption(a.Name, a.Values[0]))).Concat(spec.Points?.SelectMany(p => p) ?? []).FirstOrDefault(o => o.Name == "seed");
            if (clash is not null) throw new ArgumentException("The sweep spec has 'repeat' and also sets 'seed'; repeat gives each point its seeds, so remove 'seed' (or 'repeat').");
        }

        var points = new List<SweepPoint>();
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < expanded.Count; i++)
        {
            var axes = expanded[i];
            // Base options keep their place; an axis that overrides a base option takes the base option's place.
            List<SweepOption> options = [.. spec.Base.Select(b => axes.FirstOrDefault(a => a.Name == b.Name) ?? b), .. axes.Where(a => spec.Base.All(b => b.Name != a.Name))];
            var id = MakeId(axes);
            if (seen.TryGetValue(id, out var other))
                throw new ArgumentException($"Sweep points {other} and {i} both get the id '{id}' (the same axis values); every point must differ in its axes.");
            seen[id] = i;
            points.Add(new SweepPoint(i, id, axes, options, trainOptions.Arguments(options, id)));
        }
        var axisNames = points.SelectMany(p => p.Axes.Select(a => a.Name)).Distinct(StringComparer.Ordinal).ToList();
        return new SweepPlan(spec, points, axisNames);
    }

    private static IEnumerable<IReadOnlyList<SweepOption>> Product(IReadOnlyList<SweepAxis> axes)
    {
        IEnumerable<IReadOnlyList<SweepOption>> result = [[]];
        foreach (var axis in axes)
        {
            var current = result;
            result = current.SelectMany(prefix => axis.Values.Select(v => (IReadOnlyList<SweepOption>)[.. prefix, new SweepOption(axis.Name, v)])).ToList();
        }
        return result;
    }

    /// <summary>
    /// The id of a point with <paramref name="axes"/>: <c>name=value</c> joined by ','. Letters, digits and <c>. _ + -</c>
    /// stay as they are; every other byte of the UTF-8 text is written as <c>%XX</c>, so ids are safe file names and
    /// two different axis lists never share an id (cut ids end in a hash of the whole id).
    /// </summary>
    public static string MakeId(IReadOnlyList<SweepOption> axes)
    {
        ArgumentNullException.ThrowIfNull(axes);
        if (axes.Count == 0) return "base";
        var id = string.Join(",", axes.Select(a => $"{Encode(a.Name)}={Encode(a.Value.Display)}"));
        if (Encoding.UTF8.GetByteCount(id) <= MaxIdBytes) return id;
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(id)))[..8];
        return id[..(MaxIdBytes - 9)] + "~" + hash;
    }

    private static string Encode(string text)
    {
        var sb = new StringBuilder();
        foreach (var b in Encoding.UTF8.GetBytes(text))
        {
            char c = (char)b;
            if (b < 128 && (char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '+' or '-')) sb.Append(c);
            else sb.Append('%').Append(b.ToString("X2", CultureInfo.InvariantCulture));
        }
        // "." and ".." alone are not file names (only possible as values, never as a whole id since ids hold '=').
        return sb.ToString();
    }

    /// <summary>
    /// Checks every point as <c>covshift train</c> would before it writes anything: the arguments are parsed by the
    /// train command itself (unknown options, values that do not parse or are out of range), then read into train
    /// settings (names of normalizations, optimizers, schedules, model specs, combinations), and each distinct model is
    /// built once. Reads no data and writes nothing.
    /// </summary>
    /// <exception cref="ArgumentException">The first bad point: the message names the point and the option.</exception>
    public void Validate()
    {
        var root = CliApp.CreateRoot();
        var probed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var point in Points)
        {
            var args = new List<string> { "train" };
            args.AddRange(point.Arguments);
            args.AddRange(["--out", Path.Combine("runs", point.Id)]);
            var parse = root.Parse(args);
            if (parse.Errors.Count > 0)
            {
                var e = parse.Errors[0];
                var option = e.SymbolResult is System.CommandLine.Parsing.OptionResult r ? r.Option.Name : null;
                var message = option is not null && !e.Message.Contains(option, StringComparison.Ordinal) ? $"{option}: {e.Message}" : e.Message;
                throw new ArgumentException($"sweep point '{point.Id}': {message} (its options: {string.Join(" ", point.Arguments)})");
            }

            var set = new TrainOptionSet();
            var command = new Command("train");
            set.AddTo(command);
            var own = command.Parse([.. point.Arguments]);
            try
            {
                var dataset = set.ReadDataset(own);
                if (KnownShape(dataset) is not { } known) continue;   // csv: the shape comes from the file, checked when the point runs
                var settings = set.Read(own, dataset, known.Shape, known.Classes);
                if (settings.Specs.Count != 1)
                    throw new ArgumentException($"--norm gives {settings.Specs.Count} normalizations; a sweep point trains one run (make norm a grid axis instead).");
                var spec = settings.Specs[0];
                if (probed.Add(spec.ToJson()))
                {
                    ModelSpecResolver.CheckSize(spec);
                    using var probe = ModelZoo.Create(spec);
                }
            }
            catch (Exception e) when (e is ArgumentException or InvalidDataException or FormatException or IOException or InvalidOperationException)
            {
                throw new ArgumentException($"sweep point '{point.Id}': {NameOption(e.Message, point)}", e);
            }
        }
    }

    /// <summary>Adds the option whose value the message quotes when the message names no option itself.</summary>
    private static string NameOption(string message, SweepPoint point)
    {
        if (message.Contains("--", StringComparison.Ordinal)) return message;
        var culprit = point.Options.LastOrDefault(o => o.Value.Items.Any(v => v.Length > 0 && message.Contains($"'{v}'", StringComparison.Ordinal)));
        return culprit is null ? message : $"--{culprit.Name}: {message}";
    }

    /// <summary>Example shape and classes of the built-in data sets (known without reading a file); null for csv.</summary>
    private static (long[] Shape, int Classes)? KnownShape(DatasetSpec d) => d.Name switch
    {
        "fashion-mnist" or "mnist" => ([1, 28, 28], MnistFormat.Classes),
        "cifar10" => ([3, 32, 32], Cifar10Format.Classes),
        "gaussian" => ([d.Features ?? Datasets.GaussianFeatures], d.Classes ?? Datasets.GaussianClasses),
        _ => null,
    };

    /// <summary>The options of <c>covshift train</c> by name (without dashes), from the train command itself.</summary>
    private sealed class TrainOptions
    {
        public static readonly TrainOptions Instance = new();

        private readonly Dictionary<string, Option> _byName = new(StringComparer.Ordinal);

        private TrainOptions()
        {
            foreach (var o in TrainCommand.Create().Options)
            {
                foreach (var n in o.Aliases.Append(o.Name)) _byName[n.TrimStart('-')] = o;
            }
        }

        public List<string> Arguments(IReadOnlyList<SweepOption> options, string id)
        {
            var args = new List<string>();
            foreach (var o in options)
            {
                if (ReservedOptions.Contains(o.Name))
                    throw new ArgumentException($"sweep point '{id}': option '{o.Name}' is set by the sweep (each point trains into DIR/runs/<id>); remove it from the spec.");
                if (!_byName.TryGetValue(o.Name, out var option))
                {
                    var near = _byName.Keys.Where(k => !ReservedOptions.Contains(k)).OrderBy(k => Distance(k, o.Name)).First();
                    throw new ArgumentException($"sweep point '{id}': unknown option '{o.Name}': covshift train has no --{o.Name} (did you mean '{near}'? see covshift train --help).");
                }
                var flag = "--" + o.Name;
                switch (o.Value.Kind)
                {
                    case SweepValueKind.Null:
                        break;
                    case SweepValueKind.Flag when option.ValueType == typeof(bool):
                        if (o.Value.Items[0] == "true") args.Add(flag);
                        break;
                    default:
                        args.Add(flag);
                        args.AddRange(o.Value.Items);
                        break;
                }
            }
            return args;
        }

        private static int Distance(string a, string b)
        {
            var d = new int[a.Length + 1, b.Length + 1];
            for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
            for (int j = 0; j <= b.Length; j++) d[0, j] = j;
            for (int i = 1; i <= a.Length; i++)
            {
                for (int j = 1; j <= b.Length; j++) d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }
            return d[a.Length, b.Length];
        }
    }
}
