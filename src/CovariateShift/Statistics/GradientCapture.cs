using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Statistics;

/// <summary>
/// Gradient reductions of one layer captured after backward, plus the parameter snapshot needed to measure the size
/// of the optimizer's update at the end of the step. CPU float32 parameters are snapshotted into managed arrays;
/// others into device tensors owned (and disposed) by this object.
/// </summary>
internal sealed class GradientCapture : IDisposable
{
    public double GradSquares;
    public double WeightSquares;
    public long Elements;
    /// <summary>Sum of squared parameter changes made by the optimizer step (filled at collection).</summary>
    public double? UpdateSquares;
    public readonly List<(TorchSharp.Modules.Parameter Parameter, float[] Values)> HostSnapshots = [];
    public readonly List<(TorchSharp.Modules.Parameter Parameter, Tensor Values)> DeviceSnapshots = [];
    /// <summary>Device path: [gradSquares, weightSquares] as a float64 tensor, owned until collection.</summary>
    public Tensor? DevicePack;

    public void Dispose()
    {
        foreach (var (_, t) in DeviceSnapshots) t.Dispose();
        DeviceSnapshots.Clear();
        DevicePack?.Dispose();
        DevicePack = null;
    }
}
