using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Statistics;

/// <summary>
/// What the engine keeps per layer across steps: the fixed sample positions (and their device copy, which this object
/// owns and disposes) and reusable host buffers for parameter snapshots.
/// </summary>
internal sealed class LayerBuffers(int layerIndex) : IDisposable
{
    private readonly List<float[]> _snapshotBuffers = [];
    private StratifiedSample? _sample;
    private Tensor? _devicePositions;

    public StratifiedSample SampleFor(long length, int sampleSize, int seed)
    {
        if (_sample is null || _sample.Length != length)
        {
            _sample = new StratifiedSample(length, sampleSize, StratifiedSample.SeedFor(seed, layerIndex, length));
            _devicePositions?.Dispose();
            _devicePositions = null;
        }
        return _sample;
    }

    public Tensor DevicePositions(long length, int sampleSize, int seed, Device device)
    {
        var sample = SampleFor(length, sampleSize, seed);
        if (_devicePositions is null || !StatisticsEngine.SameDevice(_devicePositions.device, device))
        {
            _devicePositions?.Dispose();
            _devicePositions = tensor(sample.Positions, dtype: ScalarType.Int64, device: device).DetachFromDisposeScope();
        }
        return _devicePositions;
    }

    /// <summary>A reusable host buffer for the parameter snapshot of parameter slot <paramref name="slot"/> (valid until
    /// the step is collected).</summary>
    public float[] SnapshotBuffer(int slot, int length)
    {
        while (_snapshotBuffers.Count <= slot) _snapshotBuffers.Add([]);
        if (_snapshotBuffers[slot].Length != length) _snapshotBuffers[slot] = new float[length];
        return _snapshotBuffers[slot];
    }

    public void Dispose()
    {
        _devicePositions?.Dispose();
        _devicePositions = null;
    }
}
