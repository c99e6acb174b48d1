using System.Runtime.InteropServices;
using CovariateShift.Capture;
using CovariateShift.Statistics.Batched;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Statistics;

/// <summary>
/// The monitor's built-in engine: computes the raw reductions of activations and gradients where the tensors live.
/// <para>CPU float32 tensors (engine <see cref="StatisticsEngineKind.Auto"/>): one vectorized pass over the tensor's own
/// memory in the hook (<see cref="CpuKernel"/>); nothing is copied and no tensor is kept.</para>
/// <para>Other tensors (CUDA, other dtypes, or engine <see cref="StatisticsEngineKind.Device"/>): the batched device
/// engine (<see cref="BatchedDeviceEngine"/>): a handle per layer in the hook (no device work), then a fixed number of
/// operations for all layers together at <see cref="Collect"/> (one cat of the outputs first), one float32 pack and one device-to-host
/// transfer. On CUDA the transfer is asynchronous (pinned memory): the capture <see cref="Collect"/> returns is pending
/// until the pack has arrived, which the monitor checks at later steps without blocking.</para>
/// </summary>
internal sealed class StatisticsEngine : IStatisticsEngine
{
    private readonly MonitorOptions _options;
    private readonly Dictionary<int, LayerBuffers> _buffers = [];
    private readonly Dictionary<int, LayerSummary> _activations = [];
    private readonly Dictionary<int, GradientCapture> _gradients = [];
    private readonly HashSet<int> _onDevice = [];
    private readonly BatchedDeviceEngine _device;
    private readonly SamplePool _samples;
    private double? _loss;

    public StatisticsEngine(MonitorOptions options)
    {
        _options = options;
        _samples = new SamplePool(options.SampleSize);
        _device = new BatchedDeviceEngine(options, layer => BuffersOf(layer));
    }

    /// <inheritdoc />
    public int HostTransfers => _device.HostTransfers;

    /// <summary>The device engine's operation counter (tests, cost model).</summary>
    public DeviceOpCounter DeviceOps => _device.Ops;

    /// <summary>The pool of the CPU kernel's sample buffers (tests).</summary>
    internal SamplePool Samples => _samples;

    private LayerBuffers BuffersOf(MonitoredLayer layer)
    {
        if (!_buffers.TryGetValue(layer.Index, out var b))
        {
            b = new LayerBuffers(layer.Index);
            _buffers.Add(layer.Index, b);
        }
        return b;
    }

    private bool Captured(MonitoredLayer layer) => _activations.ContainsKey(layer.Index) || _onDevice.Contains(layer.Index);

    /// <summary>TorchSharp's Device has no value equality (and Tensor.device makes a new object per call).</summary>
    internal static bool SameDevice(Device a, Device b) => a.type == b.type && a.index == b.index;

    private bool UseCpuKernel(Tensor t) =>
        _options.Engine == StatisticsEngineKind.Auto && t.device_type == DeviceType.CPU &&
        t.dtype == ScalarType.Float32 && t.numel() <= int.MaxValue / sizeof(float);

    /// <inheritdoc />
    public void CaptureActivation(MonitoredLayer layer, Tensor output)
    {
        if (Captured(layer)) return;   // a shared layer called again in the same step: first call only
        long n = output.numel();
        if (n == 0)
        {
            _activations[layer.Index] = LayerSummary.Empty;   // ran, but produced nothing: Count 0, NaN moments
            return;
        }
        if (UseCpuKernel(output) && output.is_contiguous())
        {
            // Reads the tensor's own memory: no TorchSharp operation, no copy, nothing kept.
            _activations[layer.Index] = SummarizeOnCpu(layer, MemoryMarshal.Cast<byte, float>(output.bytes), output);
            return;
        }
        if (UseCpuKernel(output))
        {
            using var scope = NewDisposeScope();
            var x = output.detach().contiguous();
            _activations[layer.Index] = SummarizeOnCpu(layer, MemoryMarshal.Cast<byte, float>(x.bytes), x);
            return;
        }
        _onDevice.Add(layer.Index);
        _device.CaptureActivation(layer, output);
    }

    private LayerSummary SummarizeOnCpu(MonitoredLayer layer, ReadOnlySpan<float> data, Tensor shapeOf)
    {
        // dim() and size(d), not shape: TorchSharp's shape costs 1-3 µs per call (measured), size(d) ~40 ns.
        long rank = shapeOf.dim();
        int units = rank >= 2 ? (int)shapeOf.size(1) : 1;
        long block = 0;
        if (rank >= 3)
        {
            block = 1;
            for (int d = 2; d < rank; d++) block *= shapeOf.size(d);
        }
        // The sample lives in a pooled buffer, filled by the kernel's pass, that becomes the summary's sample as it is when
        // every sampled value is finite (the capture gives it back once built: StepCapture.ReleaseSamples).
        var sample = BuffersOf(layer).SampleFor(data.Length, _options.SampleSize, _options.Seed);
        var lease = _samples.Rent(sample.Positions.Length);
        return CpuKernel.Summarize(data, units, (int)block, channelStatistics: rank == 4,
            (float)_options.NearZeroThreshold, layer.Descriptor.Saturation, sample, lease.Buffer, lease);
    }

    /// <summary>
    /// Gradient and weight norms of every layer's own parameters, and a snapshot of the parameters for the update size.
    /// CPU float32 parameters are read in place, in one pass over the gradient and the weights together that also copies
    /// the weights into the snapshot; others use device ops.
    /// </summary>
    public void CaptureGradients(IReadOnlyList<MonitoredLayer> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        var device = new List<(MonitoredLayer, TorchSharp.Modules.Parameter[], GradientCapture)>();
        foreach (var layer in layers)
        {
            GradientCapture? capture = null;
            List<TorchSharp.Modules.Parameter>? onDevice = null;
            foreach (var p in layer.Parameters)
            {
                if (!p.requires_grad) continue;
                using var g = p.grad;
                if (g is null) continue;
                capture ??= new GradientCapture();
                capture.AddParameter(p.numel());
                if (UseCpuKernel(p) && UseCpuKernel(g) && p.is_contiguous() && g.is_contiguous())
                {
                    var w = MemoryMarshal.Cast<byte, float>(p.bytes);
                    var buffer = BuffersOf(layer).SnapshotBuffer(capture.HostSnapshots.Count, w.Length);
                    capture.HostSnapshots.Add((p, buffer));
                    var (gradSquares, weightSquares) = CpuNorms.SumSquaresOfBothAndCopy(MemoryMarshal.Cast<byte, float>(g.bytes), w, buffer);
                    capture.AddHost(gradSquares, weightSquares);
                }
                else
                {
                    (onDevice ??= []).Add(p);
                }
            }
            if (capture is null) continue;
            if (onDevice is not null) device.Add((layer, onDevice.ToArray(), capture));
            if (_gradients.Remove(layer.Index, out var earlier)) earlier.Dispose();
            _gradients[layer.Index] = capture;
        }
        _device.CaptureGradients(device);
    }

    /// <inheritdoc />
    public void CaptureLoss(Tensor loss)
    {
        ArgumentNullException.ThrowIfNull(loss);
        if (loss.numel() == 0) return;
        if (loss.device_type == DeviceType.CPU && loss.numel() == 1)
        {
            // Reading a CPU scalar is a memory read, not a device transfer.
            _loss = loss.dtype switch
            {
                ScalarType.Float32 => loss.item<float>(),
                ScalarType.Float64 => loss.item<double>(),
                _ => null,
            };
            if (_loss is not null) return;
        }
        if (loss.device_type == DeviceType.CPU)
        {
            using var scope = NewDisposeScope();
            _loss = loss.detach().reshape(-1)[0].to_type(ScalarType.Float64).item<double>();
            return;
        }
        _device.CaptureLoss(loss);
    }

    /// <inheritdoc />
    public void BeforeInPlace(Tensor input)
    {
        if (_onDevice.Count > 0) _device.BeforeInPlace(input);
    }

    /// <inheritdoc />
    public void DiscardActivations()
    {
        foreach (var summary in _activations.Values) summary.SampleLease?.Return();
        _activations.Clear();
        _onDevice.Clear();
        _device.DiscardActivations();
    }

    /// <summary>
    /// Finishes the step: measures the optimizer's update for host snapshots, launches the device reductions (one pack,
    /// one transfer, asynchronous on CUDA) and resets the per-step state. The capture is complete at once unless a
    /// device pack is still on its way; then it completes when the pack has arrived.
    /// </summary>
    public PendingCapture Collect(long step, int layerCount)
    {
        var activations = new LayerSummary?[layerCount];
        var gradients = _gradients.ToList();
        double? loss = _loss;
        DeviceCapture? device = null;
        try
        {
            foreach (var (index, summary) in _activations) activations[index] = summary;
            foreach (var (_, g) in gradients) g.SetHostUpdate(HostUpdateSquares(g));
            device = _device.Launch();
        }
        catch
        {
            foreach (var (_, g) in gradients) g.Dispose();
            throw;
        }
        finally
        {
            _activations.Clear();
            _onDevice.Clear();
            _gradients.Clear();
            _loss = null;
        }

        StepCapture Finish()
        {
            if (device is not null)
            {
                var deviceLoss = device.Complete(activations);
                loss ??= deviceLoss;
            }
            var sums = new GradientSums?[layerCount];
            foreach (var (index, g) in gradients)
            {
                sums[index] = g.ToSums();
                g.Dispose();
            }
            return new StepCapture(step, loss, [.. activations], [.. sums]);
        }

        if (device is null || !(device.Asynchronous || _options.DeferRecords)) return PendingCapture.Completed(Finish());
        // Asynchronous: ready when the pack has arrived. A deferred CPU capture (tests) reports "not yet" at its first poll,
        // as a GPU still busy with the step would.
        int polls = 0;
        return new PendingCapture(step, () => device.IsReady && (device.Asynchronous || polls++ > 0), Finish);
    }

    /// <summary>
    /// Sum over the capture's host parameters of (current - snapshot)^2; NaN when a parameter was replaced or moved since
    /// RecordGradients (e.g. model.to(...)) and cannot be compared.
    /// </summary>
    private double HostUpdateSquares(GradientCapture capture)
    {
        double total = 0;
        foreach (var (parameter, values) in capture.HostSnapshots)
        {
            if (!Comparable(parameter, values.Length)) return double.NaN;
            total += CpuNorms.SumSquaredDifference(MemoryMarshal.Cast<byte, float>(parameter.bytes), values);
        }
        return total;
    }

    private bool Comparable(TorchSharp.Modules.Parameter p, int length) =>
        !p.IsInvalid && UseCpuKernel(p) && p.is_contiguous() && p.numel() == length;

    /// <inheritdoc />
    public void Dispose()
    {
        DiscardActivations();
        foreach (var g in _gradients.Values) g.Dispose();
        _gradients.Clear();
        _buffers.Clear();
        _device.Dispose();
    }
}
