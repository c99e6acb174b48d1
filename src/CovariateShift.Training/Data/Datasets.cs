using System.Globalization;
using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace CovariateShift.Training.Data;

/// <summary>
/// Which data set a run trains on and where it is: the <c>dataset</c> object of a run's config.json, enough to load the
/// same examples again (<see cref="Datasets.Load"/>).
/// </summary>
public sealed record DatasetSpec
{
    /// <summary>fashion-mnist, mnist, cifar10, csv or gaussian.</summary>
    public required string Name { get; init; }

    /// <summary>Directory of the files (image data sets), the CSV file (csv), or null (gaussian; fashion-mnist's default location).</summary>
    public string? Dir { get; init; }

    /// <summary>Use only the first N training examples; null = all.</summary>
    public long? TrainLimit { get; init; }

    /// <summary>Evaluate on only the first N test examples; null = all.</summary>
    public long? TestLimit { get; init; }

    /// <summary>csv: the label column.</summary>
    public string? LabelColumn { get; init; }

    /// <summary>csv: fraction of the rows in the test split. Default 0.2.</summary>
    public double TestFraction { get; init; } = 0.2;

    /// <summary>gaussian: features per example (<see cref="Datasets.GaussianFeatures"/>); null for the other data sets.</summary>
    public int? Features { get; init; }

    /// <summary>gaussian: classes, one cluster each (<see cref="Datasets.GaussianClasses"/>); null for the other data sets.</summary>
    public int? Classes { get; init; }

    /// <summary>The <c>--dataset</c> form: the name, or <c>csv:PATH</c>.</summary>
    [JsonIgnore]
    public string Display => Name == "csv" ? $"csv:{Dir}" : Name;
}

/// <summary>Loads the data sets of <c>--dataset</c> (see <see cref="DatasetSpec"/>).</summary>
public static class Datasets
{
    /// <summary>The names <c>--dataset</c> takes.</summary>
    public static IReadOnlyList<string> Names { get; } = ["fashion-mnist", "mnist", "cifar10", "csv:PATH", "gaussian"];

    /// <summary>Features of the gaussian data set.</summary>
    public const int GaussianFeatures = 16;

    /// <summary>Classes of the gaussian data set.</summary>
    public const int GaussianClasses = 4;

    /// <summary>Training examples of the gaussian data set (before limits).</summary>
    public const int GaussianTrain = 4000;

    /// <summary>Test examples of the gaussian data set (before limits).</summary>
    public const int GaussianTest = 1000;

    /// <summary>
    /// The spec of <c>--dataset <paramref name="dataset"/></c> with <c>--data-dir <paramref name="dataDir"/></c>: the data
    /// directory is resolved to a full path (fashion-mnist defaults to <see cref="MnistFormat.FashionMnistDirectory"/>).
    /// </summary>
    /// <exception cref="ArgumentException">Unknown name, a missing --data-dir or --label-column, or options that do not apply.</exception>
    public static DatasetSpec Parse(string dataset, string? dataDir, long? trainLimit, long? testLimit, string? labelColumn, double? testFraction)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        var raw = dataset.Trim();
        var name = raw.ToLowerInvariant();
        if (name.StartsWith("csv:", StringComparison.Ordinal))
        {
            var path = raw[4..];
            if (path.Length == 0) throw new ArgumentException("--dataset csv:PATH needs the path of the CSV file after 'csv:'.");
            if (labelColumn is null) throw new ArgumentException($"--dataset {raw} needs --label-column NAME (the column holding the class).");
            if (dataDir is not null) throw new ArgumentException($"--data-dir does not apply to --dataset {raw} (the path is part of it).");
            if (testFraction is { } tf && !(tf > 0 && tf < 1))
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"--test-fraction must be in (0, 1); got {tf}."));
            return new DatasetSpec { Name = "csv", Dir = Path.GetFullPath(path), TrainLimit = trainLimit, TestLimit = testLimit, LabelColumn = labelColumn, TestFraction = testFraction ?? 0.2 };
        }
        if (labelColumn is not null) throw new ArgumentException($"--label-column applies only to --dataset csv:PATH; got --dataset {raw}.");
        if (testFraction is not null) throw new ArgumentException($"--test-fraction applies only to --dataset csv:PATH; got --dataset {raw}.");
        return name switch
        {
            "fashion-mnist" => new DatasetSpec { Name = name, Dir = Path.GetFullPath(dataDir ?? MnistFormat.FashionMnistDirectory), TrainLimit = trainLimit, TestLimit = testLimit },
            "mnist" or "cifar10" => new DatasetSpec
            {
                Name = name,
                Dir = Path.GetFullPath(dataDir ?? throw new ArgumentException($"--dataset {name} needs --data-dir DIR ({(name == "mnist" ? "the four MNIST idx files" : "data_batch_1..5.bin and test_batch.bin")})")),
                TrainLimit = trainLimit,
                TestLimit = testLimit,
            },
            "gaussian" => dataDir is null
                ? new DatasetSpec { Name = name, TrainLimit = trainLimit, TestLimit = testLimit, Features = GaussianFeatures, Classes = GaussianClasses }
                : throw new ArgumentException("--data-dir does not apply to --dataset gaussian (synthetic, no files)."),
            _ => throw new ArgumentException($"--dataset '{dataset}' is not supported; valid values: {string.Join(", ", Names)}."),
        };
    }

    /// <summary>Loads both splits of <paramref name="spec"/> (validating every file); <paramref name="seed"/> drives the csv split and the gaussian data.</summary>
    /// <exception cref="DirectoryNotFoundException">A directory or file is missing.</exception>
    /// <exception cref="InvalidDataException">A file is truncated or corrupt; the message names it and what was expected.</exception>
    public static (ImageDataset Train, ImageDataset Test) Load(DatasetSpec spec, long seed)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var (train, test) = LoadSplits(spec, seed);
        if (!train.ExampleShape.SequenceEqual(test.ExampleShape) || train.Count == 0 || test.Count == 0)
        {
            var where = spec.Dir is { } d ? $"{spec.Display} in '{d}'" : spec.Display;
            var message = train.Count == 0 || test.Count == 0
                ? $"Data set {where}: the {(train.Count == 0 ? "training" : "test")} split has no examples; expected at least one."
                : $"Data set {where}: the training examples have shape [{string.Join(", ", train.ExampleShape)}] but the test examples [{string.Join(", ", test.ExampleShape)}]; expected the same shape in both splits.";
            train.Dispose();
            test.Dispose();
            throw new InvalidDataException(message);
        }
        return (train, test);
    }

    private static (ImageDataset Train, ImageDataset Test) LoadSplits(DatasetSpec spec, long seed)
    {
        ImageDataset? train = null;
        try
        {
            switch (spec.Name)
            {
                case "fashion-mnist":
                case "mnist":
                    train = MnistFormat.Load(spec.Dir!, spec.Name, train: true, spec.TrainLimit);
                    return (train, MnistFormat.Load(spec.Dir!, spec.Name, train: false, spec.TestLimit));
                case "cifar10":
                    train = Cifar10Format.Load(spec.Dir!, train: true, spec.TrainLimit);
                    return (train, Cifar10Format.Load(spec.Dir!, train: false, spec.TestLimit));
                case "csv":
                {
                    var (tr, te, _) = CsvDataset.Load(spec.Dir!, spec.LabelColumn!, spec.TestFraction, seed);
                    return (Limit(tr, spec.TrainLimit), Limit(te, spec.TestLimit));
                }
                case "gaussian":
                {
                    train = Gaussian(spec.Features ?? GaussianFeatures, spec.Classes ?? GaussianClasses, (int)Math.Min(spec.TrainLimit ?? GaussianTrain, int.MaxValue), seed, "gaussian/train", 0);
                    return (train, Gaussian(spec.Features ?? GaussianFeatures, spec.Classes ?? GaussianClasses, (int)Math.Min(spec.TestLimit ?? GaussianTest, int.MaxValue), seed, "gaussian/test", 1));
                }
                default:
                    throw new ArgumentException($"Unknown data set '{spec.Name}'; expected one of {string.Join(", ", Names)}.");
            }
        }
        catch
        {
            train?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Synthetic clusters: <paramref name="classes"/> centres drawn once from N(0, I) in <paramref name="features"/>
    /// dimensions (from <paramref name="seed"/>), each example a centre plus N(0, I) noise, classes in turn.
    /// </summary>
    public static ImageDataset Gaussian(int features, int classes, int count, long seed, string name = "gaussian", int stream = 0)
    {
        if (features < 1 || classes < 2 || count < 1)
            throw new ArgumentOutOfRangeException(nameof(count), $"Gaussian clusters need features >= 1, classes >= 2, count >= 1; got {features}, {classes}, {count}.");
        using var scope = NewDisposeScope();
        using var centresGen = new Generator(unchecked((ulong)seed) ^ 0x6A09E667F3BCC908UL);
        var centres = randn([classes, features], generator: centresGen);
        using var gen = new Generator(unchecked((ulong)seed + 0x3C6EF372FE94F82BUL * (ulong)(stream + 1)));
        var y = arange(count, ScalarType.Int64).remainder(classes);
        var x = centres.index_select(0, y).add(randn([count, features], generator: gen));
        return new ImageDataset(name, x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope(), classes);
    }

    private static ImageDataset Limit(ImageDataset data, long? limit)
    {
        if (limit is not { } l || l >= data.Count) return data;
        try
        {
            return data.Take(l);
        }
        finally
        {
            data.Dispose();
        }
    }
}
