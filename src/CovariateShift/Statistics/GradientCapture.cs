using CovariateShift.Capture;

namespace CovariateShift.Statistics;

/// <summary>
/// One layer's gradient reductions of one recorded step, assembled here and nowhere else: the host part (CPU float32
/// parameters, read in place at <c>RecordGradients()</c>, with a snapshot for the update), the update measured on those
/// snapshots when the step is collected, and the device part (the batched engine's per-chunk sums, added when the step's
/// pack arrives). <see cref="ToSums"/> hands the result on as an immutable <see cref="GradientSums"/>.
/// </summary>
internal sealed class GradientCapture : IDisposable
{
    private double _gradSquares;
    private double _weightSquares;
    private double? _updateSquares;

    /// <summary>Parameter elements with gradients.</summary>
    public long Elements { get; private set; }

    /// <summary>CPU float32 parameters and their snapshots (reusable per-layer buffers), for the update at collection.</summary>
    public List<(TorchSharp.Modules.Parameter Parameter, float[] Values)> HostSnapshots { get; } = [];

    /// <summary>A parameter with a gradient (either path).</summary>
    public void AddParameter(long elements) => Elements += elements;

    /// <summary>A CPU parameter's sums of squares of its gradient and of its weights (before the optimizer step).</summary>
    public void AddHost(double gradSquares, double weightSquares)
    {
        _gradSquares += gradSquares;
        _weightSquares += weightSquares;
    }

    /// <summary>The update of the host snapshots, measured when the step is collected (NaN when not comparable).</summary>
    public void SetHostUpdate(double updateSquares) => _updateSquares = updateSquares;

    /// <summary>The device part: sums over the layer's chunks of the parameter buffer; the update is NaN when it could not be measured.</summary>
    public void AddDevice(double gradSquares, double weightSquares, double updateSquares, bool updateMeasured)
    {
        _gradSquares += gradSquares;
        _weightSquares += weightSquares;
        _updateSquares = updateMeasured ? (_updateSquares ?? 0) + updateSquares : double.NaN;
    }

    /// <summary>The assembled sums.</summary>
    public GradientSums ToSums() => new(_gradSquares, _weightSquares, _updateSquares, Elements);

    public void Dispose() => HostSnapshots.Clear();
}
