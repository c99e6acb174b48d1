using CovariateShift.Capture;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Statistics.Batched;

/// <summary>
/// Device statistics whose number of operations per recorded step does not grow with the number of layers.
/// <para>Two buffers that own their tensors: the <see cref="ActivationBuffer"/> (hook: one detach, a handle kept until the
/// step ends, no device work; in-place modules handled there) and the <see cref="GradientBuffer"/> (at
/// <c>RecordGradients()</c>); this class adds the loss, packs and copies.</para>
/// <para><see cref="Launch"/> (per step, all layers at once): one <c>cat</c> of the kept outputs (flat, in their own
/// order; PyTorch's CUDA cat copies up to 128 inputs per launch) and one <c>index_select</c> that puts them into the
/// float32 layout (<see cref="ActivationLayout"/>: unit-major, NaN-padded to whole chunks; the int64 gather index of the
/// layout's length is built once per layout), then about twenty operations over the [chunks, C] view of that
/// buffer (pivot per chunk, variance and mean about it, NaN / Inf / near-zero counts, finite min and max), one gather of
/// the sampled values, three segment-free sums of squares for gradients, weights and updates over the padded parameter
/// buffer (<see cref="GradientLayout"/>), one concatenation into a float32 pack, one copy to the host (asynchronous into
/// pinned memory on CUDA) and one flag copy. The host merges chunks into units and layers in double precision
/// (<see cref="DeviceCapture"/>).</para>
/// <para>Float32 error bound: each chunk (at most 4096 values) is reduced about its own first value p_k, so the chunk's
/// mean and variance carry float32 rounding relative to the chunk's own spread, about eps32 * log2(C) * (1 + (mean_k - p_k)^2 / var_k);
/// everything across chunks is double. Values whose difference to the pivot overflows float32 (|x| &gt; ~1.7e38) are not
/// counted in the moments.</para>
/// </summary>
internal sealed class BatchedDeviceEngine : IDisposable
{
    private readonly ActivationBuffer _activations;
    private readonly GradientBuffer _gradients;
    private Tensor? _loss;
    private Tensor? _flagSource;
    private readonly List<Tensor> _pinnedPool = [];

    public BatchedDeviceEngine(MonitorOptions options, Func<MonitoredLayer, LayerBuffers> buffers)
    {
        _activations = new ActivationBuffer(options, buffers, Ops);
        _gradients = new GradientBuffer(Ops);
    }

    /// <summary>The counting seam.</summary>
    public DeviceOpCounter Ops { get; } = new();

    /// <summary>Device-to-host transfers so far (one per launched step).</summary>
    public int HostTransfers { get; private set; }

    /// <summary>Whether anything was captured for the current step.</summary>
    public bool HasWork => _activations.HasWork || _gradients.HasWork || _loss is not null;

    /// <summary>Chunk length of the current activation layout (diagnostics).</summary>
    public int? ChunkLength => _activations.ChunkLength;

    /// <summary>Forward hook: keeps a handle to the output until the step ends (no device work).</summary>
    public void CaptureActivation(MonitoredLayer layer, Tensor output) => _activations.Capture(layer, output);

    /// <summary>An in-place module is about to overwrite <paramref name="input"/> (see <see cref="ActivationBuffer.BeforeInPlace"/>).</summary>
    public void BeforeInPlace(Tensor input) => _activations.BeforeInPlace(input);

    /// <summary>After backward, before the optimizer step (see <see cref="GradientBuffer.Capture"/>).</summary>
    public void CaptureGradients(IReadOnlyList<(MonitoredLayer Layer, Parameter[] Parameters, GradientCapture Capture)> layers) =>
        _gradients.Capture(layers);

    /// <summary>Keeps the step's loss (a device scalar) for the pack.</summary>
    public void CaptureLoss(Tensor loss)
    {
        _loss?.Dispose();
        using var scope = NewDisposeScope();
        _loss = Ops.Launch(Ops.Handle(Ops.Handle(loss.detach()).reshape(-1)).narrow(0, 0, 1).to_type(ScalarType.Float32)).DetachFromDisposeScope();
    }

    /// <summary>
    /// Ends the step on the device: reductions for all layers at once, one pack, one copy to the host (asynchronous on
    /// CUDA). Returns the capture to complete later, or null when nothing was captured.
    /// </summary>
    public DeviceCapture? Launch()
    {
        if (!HasWork) return null;
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var parts = new List<Tensor>();
            var activations = _activations.AddParts(parts);
            var gradients = _gradients.AddParts(parts);
            bool hasLoss = _loss is not null;
            if (hasLoss)
            {
                var device = parts.Count > 0 ? parts[0].device : _loss!.device;
                parts.Add(_loss!.device_type == device.type ? _loss : Ops.Launch(_loss.to(device)));
            }

            var pack = Ops.Launch(cat(parts));
            int length = (int)pack.shape[0];
            DeviceCapture capture;
            if (pack.device_type == DeviceType.CPU)
            {
                capture = new DeviceCapture(pack.DetachFromDisposeScope(), length, release: null, activations, gradients, hasLoss);
            }
            else
            {
                var host = RentPinned(length + 1);
                var flag = Ops.Handle(host.narrow(0, length, 1));
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(flag.bytes)[0] = 0f;
                Ops.Launch(Ops.Handle(host.narrow(0, 0, length)).copy_(pack, nonBlocking: true));
                _flagSource ??= Ops.Launch(ones(1, ScalarType.Float32, pack.device)).DetachFromDisposeScope();
                Ops.Launch(flag.copy_(_flagSource, nonBlocking: true));
                capture = new DeviceCapture(host, length, release: ReturnPinned, activations, gradients, hasLoss);
            }
            HostTransfers++;
            return capture;
        }
        finally
        {
            ResetStep();
        }
    }

    private Tensor RentPinned(int length)
    {
        for (int i = 0; i < _pinnedPool.Count; i++)
        {
            if (_pinnedPool[i].shape[0] >= length)
            {
                var t = _pinnedPool[i];
                _pinnedPool.RemoveAt(i);
                return t;
            }
        }
        using var pageable = empty(Math.Max(length, 1024), ScalarType.Float32);
        return Ops.Launch(pageable.pin_memory()).DetachFromDisposeScope();
    }

    private void ReturnPinned(Tensor t)
    {
        if (_pinnedPool.Count < 4) _pinnedPool.Add(t);
        else t.Dispose();
    }

    /// <summary>Drops this step's activations (a forward pass that did not finish).</summary>
    public void DiscardActivations() => _activations.Reset();

    private void ResetStep()
    {
        _activations.Reset();
        _gradients.Reset();
        _loss?.Dispose();
        _loss = null;
    }

    public void Dispose()
    {
        ResetStep();
        _activations.Dispose();
        _gradients.Dispose();
        _flagSource?.Dispose();
        _flagSource = null;
        foreach (var t in _pinnedPool) t.Dispose();
        _pinnedPool.Clear();
    }
}
