using CovariateShift.Training.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests.Support;

internal static class TorchData
{
    public static double[] ToDoubles(Tensor t)
    {
        using var d = t.detach().cpu().to_type(ScalarType.Float64).contiguous();
        return d.data<double>().ToArray();
    }

    private static ImageDataset? _fashion;
    private static readonly object Gate = new();

    /// <summary>The first 512 Fashion-MNIST training images (standardized); loaded once per test run.</summary>
    public static ImageDataset FashionMnist512
    {
        get
        {
            lock (Gate)
            {
                return _fashion ??= MnistFormat.LoadFashionMnist(train: true, limit: 512);
            }
        }
    }
}
