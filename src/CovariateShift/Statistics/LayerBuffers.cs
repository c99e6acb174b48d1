namespace CovariateShift.Statistics;

/// <summary>
/// What the engine keeps per layer across steps: the fixed sample positions and reusable host buffers for parameter
/// snapshots. It holds no tensor.
/// </summary>
internal sealed class LayerBuffers(int layerIndex)
{
    private readonly List<float[]> _snapshotBuffers = [];
    private StratifiedSample? _sample;

    public StratifiedSample SampleFor(long length, int sampleSize, int seed)
    {
        if (_sample is null || _sample.Length != length)
            _sample = new StratifiedSample(length, sampleSize, StratifiedSample.SeedFor(seed, layerIndex, length));
        return _sample;
    }

    /// <summary>A reusable host buffer for the parameter snapshot of parameter slot <paramref name="slot"/> (valid until
    /// the step is collected).</summary>
    public float[] SnapshotBuffer(int slot, int length)
    {
        while (_snapshotBuffers.Count <= slot) _snapshotBuffers.Add([]);
        if (_snapshotBuffers[slot].Length != length) _snapshotBuffers[slot] = new float[length];
        return _snapshotBuffers[slot];
    }
}
