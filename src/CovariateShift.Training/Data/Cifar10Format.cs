using static TorchSharp.torch;

namespace CovariateShift.Training.Data;

/// <summary>
/// Reads the binary version of CIFAR-10 (<c>data_batch_1.bin</c> .. <c>data_batch_5.bin</c>, <c>test_batch.bin</c>):
/// records of 3,073 bytes, a label byte (0..9) then 3×32×32 pixel bytes (red, green, blue planes, row-major). Pixels
/// are scaled to [0, 1] and standardized per channel with the training images' mean and standard deviation
/// (computed from the files).
/// </summary>
public static class Cifar10Format
{
    /// <summary>Bytes per record: one label and 3 × 32 × 32 pixels.</summary>
    public const int RecordBytes = 1 + 3 * 32 * 32;

    /// <summary>Number of classes.</summary>
    public const int Classes = 10;

    /// <summary>The training files in order.</summary>
    public static IReadOnlyList<string> TrainFiles { get; } = [.. Enumerable.Range(1, 5).Select(i => $"data_batch_{i}.bin")];

    /// <summary>The test file.</summary>
    public const string TestFile = "test_batch.bin";

    /// <summary>Loads the training (<paramref name="train"/>) or test split from <paramref name="directory"/>, at most <paramref name="limit"/> examples.</summary>
    /// <exception cref="DirectoryNotFoundException">The directory or a file is missing; the message names it.</exception>
    /// <exception cref="InvalidDataException">A file's size is not a whole number of records, or a label is out of range; the message names the file and the record.</exception>
    public static ImageDataset Load(string directory, bool train, long? limit = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var (trainLabels, trainPixels) = Read(directory, TrainFiles, null);
        float[] mean = new float[3], std = new float[3];
        long perChannel = trainLabels.Length * 1024L;
        for (int c = 0; c < 3; c++)
        {
            double sum = 0, sumSq = 0;
            for (int i = 0; i < trainLabels.Length; i++)
            {
                var plane = trainPixels.AsSpan(i * 3072 + c * 1024, 1024);
                foreach (var p in plane)
                {
                    double v = p / 255.0;
                    sum += v;
                    sumSq += v * v;
                }
            }
            double m = sum / perChannel;
            mean[c] = (float)m;
            std[c] = (float)Math.Sqrt(Math.Max(1e-12, sumSq / perChannel - m * m));
        }
        var (labels, pixels) = train ? (trainLabels, trainPixels) : Read(directory, [TestFile], null);
        long n = limit is { } l ? Math.Min(l, labels.Length) : labels.Length;
        using var scope = NewDisposeScope();
        using var meanT = tensor(mean, [1, 3, 1, 1]);
        using var stdT = tensor(std, [1, 3, 1, 1]);
        var x = tensor(pixels.AsSpan(0, (int)(n * 3072)).ToArray(), [n, 3, 32, 32], ScalarType.Byte)
            .to_type(ScalarType.Float32).div_(255f).sub_(meanT).div_(stdT);
        var y = tensor(labels.AsSpan(0, (int)n).ToArray().Select(b => (long)b).ToArray(), [n], ScalarType.Int64);
        return new ImageDataset($"cifar10/{(train ? "train" : "test")}", x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope(), Classes);
    }

    private static (byte[] Labels, byte[] Pixels) Read(string directory, IReadOnlyList<string> files, long? limit)
    {
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException(
                File.Exists(directory)
                    ? $"CIFAR-10 directory '{directory}' is a file; expected the directory holding data_batch_1.bin .. data_batch_5.bin and test_batch.bin (the binary version)."
                    : $"CIFAR-10 directory '{directory}' does not exist; expected a directory holding data_batch_1.bin .. data_batch_5.bin and test_batch.bin (the binary version).");
        }
        var labels = new List<byte>();
        var pixels = new List<byte[]>();
        foreach (var name in files)
        {
            var path = Path.Combine(directory, name);
            if (!File.Exists(path)) throw new DirectoryNotFoundException($"'{directory}' has no {name}; expected data_batch_1.bin .. data_batch_5.bin and test_batch.bin (CIFAR-10 binary version).");
            var bytes = File.ReadAllBytes(path);
            if (bytes.Length == 0 || bytes.Length % RecordBytes != 0)
                throw new InvalidDataException($"'{path}' has {bytes.Length} bytes, which is not a whole number of {RecordBytes}-byte CIFAR-10 records (1 label + 3x32x32 pixels); the file is truncated or not CIFAR-10 binary.");
            int records = bytes.Length / RecordBytes;
            var px = new byte[records * 3072];
            for (int r = 0; r < records; r++)
            {
                byte label = bytes[r * RecordBytes];
                if (label >= Classes) throw new InvalidDataException($"'{path}', record {r}: label {label} is out of range; expected 0..{Classes - 1}.");
                labels.Add(label);
                Buffer.BlockCopy(bytes, r * RecordBytes + 1, px, r * 3072, 3072);
            }
            pixels.Add(px);
            if (limit is { } l && labels.Count >= l) break;
        }
        var all = new byte[pixels.Sum(p => (long)p.Length)];
        long at = 0;
        foreach (var p in pixels)
        {
            Buffer.BlockCopy(p, 0, all, (int)at, p.Length);
            at += p.Length;
        }
        return ([.. labels], all);
    }

    /// <summary>Writes a CIFAR-10 binary file of <paramref name="labels"/> and their 3,072 pixel bytes each (for tests).</summary>
    public static void Write(string path, byte[] labels, byte[] pixels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(pixels);
        using var file = File.Create(path);
        for (int r = 0; r < labels.Length; r++)
        {
            file.WriteByte(labels[r]);
            file.Write(pixels, r * 3072, 3072);
        }
    }
}
