using CovariateShift.Records;
using CovariateShift.Statistics;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Hooks;

/// <summary>
/// Per-layer state owned by the monitor: the hooked module, its fixed histogram range and sample positions, what
/// the hook captured during the current step, and the previous/reference statistics for the shift metrics.
/// Owns the device tensor of its sample positions (device path only) and disposes it.
/// </summary>
internal sealed class MonitoredLayer : IDisposable
{
    private StratifiedSample? _sample;
    private Tensor? _devicePositions;

    public MonitoredLayer(int index, string name, nn.Module<Tensor, Tensor> module)
    {
        Index = index;
        Name = name;
        Module = module;
        LayerType = module.GetType().Name;   // GetName() is wrong for BatchNorm2d/InstanceNorm2d in TorchSharp 0.107
        Saturation = SaturationBounds.ForLayerType(LayerType);
        HasParameters = module.parameters(recurse: false).Any();
        NonNegative = NonNegativeTypes.Contains(LayerType);
    }

    private static readonly HashSet<string> NonNegativeTypes = ["ReLU", "ReLU6", "Softplus", "Softmax", "Hardsigmoid"];

    public int Index { get; }

    /// <summary>The layer's output cannot be negative (ReLU-like): its histogram range starts at 0.</summary>
    public bool NonNegative { get; }
    public string Name { get; }
    public string LayerType { get; }
    public nn.Module<Tensor, Tensor> Module { get; }
    public SaturationBounds? Saturation { get; }
    /// <summary>The layer's own parameters, listed afresh (moving a model with <c>to()</c> replaces its Parameter objects).</summary>
    public TorchSharp.Modules.Parameter[] Parameters => Module.parameters(recurse: false).ToArray();

    /// <summary>Whether the layer has parameters of its own (fixed by the architecture).</summary>
    public bool HasParameters { get; }
    public IDisposable? Hook { get; set; }

    /// <summary>Histogram edges, fixed at the first record.</summary>
    public (double Low, double High)? HistogramRange { get; set; }

    /// <summary>The hook fired during the current recorded step (first call only is recorded).</summary>
    public bool FiredThisStep { get; set; }

    /// <summary>Host-side summary captured this step (CPU path), or filled at collection (device path).</summary>
    public ActivationSummary? Pending { get; set; }

    /// <summary>Gradient reductions captured this step.</summary>
    public GradientCapture? PendingGradients { get; set; }

    public LayerStatistics? Previous { get; set; }
    public LayerStatistics? Reference { get; set; }
    public bool WarnedNotCalled { get; set; }

    public StratifiedSample SampleFor(long length, int sampleSize, int seed)
    {
        if (_sample is null || _sample.Length != length)
        {
            _sample = new StratifiedSample(length, sampleSize, StratifiedSample.SeedFor(seed, Index, length));
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

    private readonly List<float[]> _snapshotBuffers = [];
    private float[] _sampleBuffer = [];

    /// <summary>A reusable host buffer for this layer's sampled values (valid until the step is collected).</summary>
    public float[] SampleBuffer(int length)
    {
        if (_sampleBuffer.Length != length) _sampleBuffer = new float[length];
        return _sampleBuffer;
    }

    /// <summary>A reusable host buffer for the parameter snapshot of parameter slot <paramref name="slot"/>.</summary>
    public float[] SnapshotBuffer(int slot, int length)
    {
        while (_snapshotBuffers.Count <= slot) _snapshotBuffers.Add([]);
        if (_snapshotBuffers[slot].Length != length) _snapshotBuffers[slot] = new float[length];
        return _snapshotBuffers[slot];
    }

    public void ResetStep()
    {
        FiredThisStep = false;
        Pending = null;
        PendingGradients?.Dispose();
        PendingGradients = null;
    }

    public void Dispose()
    {
        Hook?.Dispose();
        Hook = null;
        PendingGradients?.Dispose();
        PendingGradients = null;
        _devicePositions?.Dispose();
        _devicePositions = null;
    }
}
