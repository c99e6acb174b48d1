namespace CovariateShift.Statistics;

/// <summary>
/// Gradient reductions of one layer captured after backward, plus the host snapshot needed to measure the size of the
/// optimizer's update at the end of the step. CPU float32 parameters are snapshotted into managed arrays (reusable
/// per-layer buffers); parameters on other devices are summed by the batched device engine, which adds its results
/// here when the step's pack arrives.
/// </summary>
internal sealed class GradientCapture : IDisposable
{
    public double GradSquares;
    public double WeightSquares;
    public long Elements;
    /// <summary>Sum of squared parameter changes made by the optimizer step (filled at collection).</summary>
    public double? UpdateSquares;
    public readonly List<(TorchSharp.Modules.Parameter Parameter, float[] Values)> HostSnapshots = [];

    public void Dispose() => HostSnapshots.Clear();
}
