using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Data;

/// <summary>
/// Loads MNIST-format data sets (MNIST, Fashion-MNIST): <c>train-images-idx3-ubyte[.gz]</c>,
/// <c>train-labels-idx1-ubyte[.gz]</c>, <c>t10k-images-idx3-ubyte[.gz]</c>, <c>t10k-labels-idx1-ubyte[.gz]</c> in one
/// directory. Pixels are scaled to [0, 1] and standardized with the mean and standard deviation of the training images
/// (computed from the files, not hard-coded), so every pixel of the training set has mean 0 and std 1 overall.
/// </summary>
public static class MnistFormat
{
    /// <summary>Where Debian's dataset-fashion-mnist package installs the files.</summary>
    public const string DefaultFashionMnistDirectory = "/usr/share/datasets/fashion-mnist";

    /// <summary>Classes of MNIST and Fashion-MNIST; a label outside 0..9 is an error naming the file and record.</summary>
    public const int Classes = 10;

    /// <summary>Environment variable that overrides <see cref="DefaultFashionMnistDirectory"/>.</summary>
    public const string FashionMnistVariable = "COVSHIFT_FASHION_MNIST";

    /// <summary>The Fashion-MNIST directory: $COVSHIFT_FASHION_MNIST, else the Debian package location.</summary>
    public static string FashionMnistDirectory =>
        Environment.GetEnvironmentVariable(FashionMnistVariable) is { Length: > 0 } d ? d : DefaultFashionMnistDirectory;

    /// <summary>Loads Fashion-MNIST from <see cref="FashionMnistDirectory"/>.</summary>
    public static ImageDataset LoadFashionMnist(bool train, long? limit = null) => Load(FashionMnistDirectory, "fashion-mnist", train, limit);

    /// <summary>
    /// Loads the training (<paramref name="train"/>) or test split from <paramref name="directory"/>, at most
    /// <paramref name="limit"/> examples. Standardization always uses the full training images' statistics.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The directory or one of the files is missing; the message says which and how to get it.</exception>
    public static ImageDataset Load(string directory, string name, bool train, long? limit = null)
    {
        var (mean, std) = TrainingPixelStatistics(directory);
        var prefix = train ? "train" : "t10k";
        var imagesPath = Find(directory, $"{prefix}-images-idx3-ubyte");
        var labelsPath = Find(directory, $"{prefix}-labels-idx1-ubyte");
        var (shape, pixels) = IdxReader.Read(imagesPath);
        var (lshape, labels) = IdxReader.Read(labelsPath);
        if (shape.Length != 3) throw new InvalidDataException($"'{imagesPath}' has {shape.Length} dimensions, expected 3 (N, H, W).");
        if (shape[0] == 0 || shape[1] == 0 || shape[2] == 0)
            throw new InvalidDataException($"'{imagesPath}' holds no images (shape {string.Join("x", shape)}); expected at least one {(train ? "training" : "test")} image.");
        if (lshape.Length != 1 || lshape[0] != shape[0])
            throw new InvalidDataException($"'{labelsPath}' has shape [{string.Join(", ", lshape)}], but '{imagesPath}' has {shape[0]} images; expected [{shape[0]}] labels.");
        int bad = Array.FindIndex(labels, b => b >= Classes);
        if (bad >= 0) throw new InvalidDataException($"'{labelsPath}', record {bad}: label {labels[bad]} is out of range; expected 0..{Classes - 1}.");
        long n = limit is { } l ? Math.Min(l, shape[0]) : shape[0];
        int h = shape[1], w = shape[2];
        using var scope = NewDisposeScope();
        var x = tensor(pixels.AsSpan(0, (int)(n * h * w)).ToArray(), [n, 1, h, w], ScalarType.Byte)
            .to_type(ScalarType.Float32).div_(255f).sub_(mean).div_(std);
        var y = tensor(labels.AsSpan(0, (int)n).ToArray().Select(b => (long)b).ToArray(), [n], ScalarType.Int64);
        return new ImageDataset($"{name}/{(train ? "train" : "test")}", x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope(), Classes);
    }

    private static readonly Dictionary<string, (float, float)> StatisticsCache = [];

    /// <summary>Mean and standard deviation of all training pixels scaled to [0, 1] (cached per directory).</summary>
    public static (float Mean, float Std) TrainingPixelStatistics(string directory)
    {
        var key = Path.GetFullPath(directory);
        lock (StatisticsCache)
        {
            if (StatisticsCache.TryGetValue(key, out var cached)) return cached;
            var (_, pixels) = IdxReader.Read(Find(directory, "train-images-idx3-ubyte"));
            double sum = 0, sumSq = 0;
            foreach (var p in pixels)
            {
                double v = p / 255.0;
                sum += v;
                sumSq += v * v;
            }
            double mean = sum / pixels.Length;
            double std = Math.Sqrt(Math.Max(1e-12, sumSq / pixels.Length - mean * mean));
            return StatisticsCache[key] = ((float)mean, (float)std);
        }
    }

    private static string Find(string directory, string stem)
    {
        if (File.Exists(directory)) throw new DirectoryNotFoundException($"Data directory '{directory}' is a file; expected the directory holding the four MNIST-format idx files.");
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException(
                $"Data directory '{directory}' does not exist. For Fashion-MNIST run scripts/bootstrap.sh (installs the Debian package dataset-fashion-mnist) " +
                $"or set {FashionMnistVariable}; for MNIST give the directory holding the four idx files.");
        }

        foreach (var candidate in new[] { stem + ".gz", stem })
        {
            var p = Path.Combine(directory, candidate);
            if (File.Exists(p)) return p;
        }
        throw new DirectoryNotFoundException($"'{directory}' has no {stem} or {stem}.gz; expected the four MNIST-format idx files there.");
    }
}
