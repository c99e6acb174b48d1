using System.Runtime.InteropServices;
using CovariateShift.Hooks;
using CovariateShift.Statistics.Device;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Statistics;

/// <summary>
/// Computes the raw reductions of activations and gradients where the tensors live.
/// <para>CPU float32 tensors (engine <see cref="StatisticsEngineKind.Auto"/>): one vectorized pass over the tensor's own
/// memory in the hook (<see cref="CpuKernel"/>); nothing is copied and no tensor is kept.</para>
/// <para>Other tensors (CUDA, other dtypes, or engine <see cref="StatisticsEngineKind.Device"/>): the batched device
/// engine (<see cref="BatchedDeviceEngine"/>): one copy per layer into a persistent buffer in the hook, then a fixed
/// number of operations for all layers together at the end of the step and one device-to-host transfer, asynchronous
/// on CUDA (<see cref="StepCapture"/> completes later).</para>
/// </summary>
internal sealed class StatisticsEngine : IDisposable
{
    private readonly MonitorOptions _options;
    private readonly BatchedDeviceEngine _device;
    private double? _loss;

    public StatisticsEngine(MonitorOptions options)
    {
        _options = options;
        _device = new BatchedDeviceEngine(options);
    }

    /// <summary>Number of device-to-host transfers made so far (diagnostics and tests).</summary>
    public int HostTransfers => _device.HostTransfers;

    /// <summary>The device engine's operation counter (tests, cost model).</summary>
    public DeviceOpCounter DeviceOps => _device.Ops;

    /// <summary>TorchSharp's Device has no value equality (and Tensor.device makes a new object per call).</summary>
    internal static bool SameDevice(torch.Device a, torch.Device b) => a.type == b.type && a.index == b.index;

    private bool UseCpuKernel(Tensor t) =>
        _options.Engine == StatisticsEngineKind.Auto && t.device_type == DeviceType.CPU &&
        t.dtype == ScalarType.Float32 && t.numel() <= int.MaxValue / sizeof(float);

    public void CaptureActivation(MonitoredLayer layer, Tensor output)
    {
        long n = output.numel();
        if (n == 0)
        {
            layer.Pending = new ActivationSummary();   // ran, but produced nothing: Count 0, NaN moments
            return;
        }
        if (UseCpuKernel(output) && output.is_contiguous())
        {
            // Reads the tensor's own memory: no TorchSharp operation, no copy, nothing kept.
            layer.Pending = SummarizeOnCpu(layer, MemoryMarshal.Cast<byte, float>(output.bytes), output);
            return;
        }
        if (UseCpuKernel(output))
        {
            using var scope = NewDisposeScope();
            var x = output.detach().contiguous();
            layer.Pending = SummarizeOnCpu(layer, MemoryMarshal.Cast<byte, float>(x.bytes), x);
            return;
        }
        _device.CaptureActivation(layer, output);
    }

    private ActivationSummary SummarizeOnCpu(MonitoredLayer layer, ReadOnlySpan<float> data, Tensor shapeOf)
    {
        var shape = shapeOf.shape;
        int units = shape.Length >= 2 ? (int)shape[1] : 1;
        long block = shape.Length >= 3 ? shape[2..].Aggregate(1L, (a, b) => a * b) : 0;
        var summary = new ActivationSummary();
        CpuKernel.Summarize(data, units, (int)block, channelStatistics: shape.Length == 4,
            (float)_options.NearZeroThreshold, layer.Saturation, summary);
        var sample = layer.SampleFor(data.Length, _options.SampleSize, _options.Seed);
        summary.Sample = layer.SampleBuffer(sample.Positions.Length);
        summary.SampleCount = sample.Gather(data, summary.Sample);
        return summary;
    }

    /// <summary>
    /// Gradient and weight norms of every layer's own parameters, and a snapshot of the parameters for the update size.
    /// CPU float32 parameters are read in place, in one pass over the gradient and one over the weights that also copies
    /// them into the snapshot; the others go to the batched device engine (all layers in one concatenation).
    /// </summary>
    public void CaptureGradients(IReadOnlyList<MonitoredLayer> layers)
    {
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
                capture.Elements += p.numel();
                if (UseCpuKernel(p) && UseCpuKernel(g) && p.is_contiguous() && g.is_contiguous())
                {
                    var w = MemoryMarshal.Cast<byte, float>(p.bytes);
                    var buffer = layer.SnapshotBuffer(capture.HostSnapshots.Count, w.Length);
                    capture.HostSnapshots.Add((p, buffer));
                    capture.GradSquares += CpuNorms.SumSquares(MemoryMarshal.Cast<byte, float>(g.bytes));
                    capture.WeightSquares += CpuNorms.SumSquaresAndCopy(w, buffer);
                }
                else
                {
                    (onDevice ??= []).Add(p);
                }
            }
            if (capture is null) continue;
            if (onDevice is not null) device.Add((layer, onDevice.ToArray(), capture));
            layer.PendingGradients?.Dispose();
            layer.PendingGradients = capture;
        }
        _device.CaptureGradients(device);
    }

    public void CaptureLoss(Tensor loss)
    {
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

    /// <summary>
    /// Finishes the step: measures the optimizer's update for host snapshots, launches the device reductions (one pack,
    /// one transfer) and moves everything the step captured off the layers into a <see cref="StepCapture"/>.
    /// </summary>
    public StepCapture Collect(IReadOnlyList<MonitoredLayer> layers, long step)
    {
        var capture = new StepCapture(step, layers.Count);
        try
        {
            foreach (var layer in layers)
            {
                capture.Fired[layer.Index] = layer.FiredThisStep;
                capture.Summaries[layer.Index] = layer.Pending;
                layer.Pending = null;
                if (layer.PendingGradients is { } g)
                {
                    g.UpdateSquares = HostUpdateSquares(g);
                    capture.Gradients[layer.Index] = g;
                    layer.PendingGradients = null;
                }
            }
            capture.Loss = _loss;
            capture.Device = _device.Launch();
            return capture;
        }
        catch
        {
            capture.Dispose();
            throw;
        }
        finally
        {
            _loss = null;
        }
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

    public void Dispose() => _device.Dispose();
}
