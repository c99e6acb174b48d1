using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Data;

/// <summary>
/// An in-memory classification data set: examples as float32 [N, C, H, W] (images) or [N, F] (tabular) on the CPU,
/// labels as int64 [N] in [0, classes).
/// Owns both tensors (dispose the data set to free them).
/// </summary>
public sealed class ImageDataset : IDisposable
{
    /// <summary>Takes ownership of <paramref name="images"/> ([N, C, H, W] float32) and <paramref name="labels"/> ([N] int64).</summary>
    public ImageDataset(string name, Tensor images, Tensor labels, int classes)
    {
        if (images.dim() is not (2 or 4)) throw new ArgumentException($"Examples must be [N, C, H, W] or [N, F]; got shape [{string.Join(", ", images.shape)}].", nameof(images));
        if (labels.dim() != 1 || labels.shape[0] != images.shape[0])
            throw new ArgumentException($"Labels must be [N] with N = {images.shape[0]}; got shape [{string.Join(", ", labels.shape)}].", nameof(labels));
        Name = name;
        Images = images.DetachFromDisposeScope();
        Labels = labels.DetachFromDisposeScope();
        Classes = classes;
    }

    /// <summary>Data set name (e.g. "fashion-mnist/train").</summary>
    public string Name { get; }

    /// <summary>Examples, float32 [N, C, H, W] or [N, F].</summary>
    public Tensor Images { get; }

    /// <summary>Labels, int64 [N].</summary>
    public Tensor Labels { get; }

    /// <summary>Number of classes.</summary>
    public int Classes { get; }

    /// <summary>Number of examples.</summary>
    public long Count => Images.shape[0];

    /// <summary>Shape of one example: (C, H, W), or (F) for tabular data.</summary>
    public long[] ExampleShape => Images.shape[1..];

    /// <summary>Whether the examples are feature vectors [N, F] rather than images.</summary>
    public bool IsTabular => Images.dim() == 2;

    /// <summary>The first <paramref name="count"/> examples as a new data set (copies).</summary>
    public ImageDataset Take(long count)
    {
        if (count <= 0 || count > Count) throw new ArgumentOutOfRangeException(nameof(count), count, $"Expected 1..{Count} examples.");
        using var scope = NewDisposeScope();
        return new ImageDataset(Name, Images[..(int)count].clone(), Labels[..(int)count].clone(), Classes);
    }

    /// <summary>
    /// Mini-batches in random order (a new permutation per epoch from <paramref name="generator"/>); the last partial
    /// batch is dropped so every step sees the same batch size. Batch tensors belong to the caller's dispose scope.
    /// </summary>
    public IEnumerable<(Tensor Images, Tensor Labels)> Batches(int batchSize, Generator? generator, bool shuffle = true, bool dropLast = true)
    {
        if (batchSize <= 0 || batchSize > Count)
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, $"Batch size must be in 1..{Count} (the data set size).");
        Tensor? order = shuffle ? randperm(Count, generator: generator) : null;
        try
        {
            long batches = dropLast ? Count / batchSize : (Count + batchSize - 1) / batchSize;
            for (long b = 0; b < batches; b++)
            {
                long start = b * batchSize, end = Math.Min(Count, start + batchSize);
                if (order is null)
                {
                    yield return (Images[(int)start..(int)end], Labels[(int)start..(int)end]);
                }
                else
                {
                    using var idx = order[(int)start..(int)end];
                    yield return (Images.index_select(0, idx), Labels.index_select(0, idx));
                }
            }
        }
        finally
        {
            order?.Dispose();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
    }
}
