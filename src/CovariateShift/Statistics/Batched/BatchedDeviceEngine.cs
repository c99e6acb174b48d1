using CovariateShift.Capture;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Statistics.Batched;

/// <summary>
/// Device statistics whose number of operations per recorded step does not grow with the number of layers.
/// <para>Hook (per layer): one detach (a handle) and one copy of the output into its slot of a persistent float32 buffer
/// (<see cref="ActivationLayout"/>): unit-major, NaN-padded to whole chunks. No float64 copy, no per-layer reduction.</para>
/// <para><see cref="Launch"/> (per step, all layers at once): about twenty operations over the [chunks, C] view of the
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
    private sealed record Captured(MonitoredLayer Layer, long[] Shape, Tensor? Handle);

    private readonly MonitorOptions _options;
    private readonly Func<MonitoredLayer, LayerBuffers> _buffers;
    private readonly List<Captured> _captured = [];
    private ActivationLayout? _layout;
    private Tensor? _buffer;
    private Tensor? _chunkView;
    private Tensor[] _slotViews = [];
    private Tensor? _samplePositions;
    private Tensor? _saturationLow;
    private Tensor? _saturationHigh;
    private bool _anySaturation;

    private GradientLayout? _gradientLayout;
    private Tensor? _gradientPad;
    private Tensor[] _padViews = [];
    private Tensor[][] _parameterViews = [];
    private Tensor? _gradientSquares;
    private Tensor? _weightSquares;
    private Tensor? _weightSnapshot;
    private GradientCapture?[] _gradientCaptures = [];

    private Tensor? _loss;
    private Tensor? _flagSource;
    private readonly List<Tensor> _pinnedPool = [];

    private readonly Scalar _nearZero;
    private readonly Scalar _nan = float.NaN.ToScalar();
    private readonly Scalar _tiny = 1e-30f.ToScalar();

    public BatchedDeviceEngine(MonitorOptions options, Func<MonitoredLayer, LayerBuffers> buffers)
    {
        _options = options;
        _buffers = buffers;
        _nearZero = options.NearZeroThreshold.ToScalar();
    }

    /// <summary>The counting seam.</summary>
    public DeviceOpCounter Ops { get; } = new();

    /// <summary>Device-to-host transfers so far (one per launched step).</summary>
    public int HostTransfers { get; private set; }

    /// <summary>Whether anything was captured for the current step.</summary>
    public bool HasWork => _captured.Count > 0 || _gradientCaptures.Length > 0 || _loss is not null;

    /// <summary>Chunk length of the current activation layout (diagnostics).</summary>
    public int? ChunkLength => _layout?.ChunkLength;

    /// <summary>Forward hook: copies the output into the layer's slot (or keeps a handle until the layout is rebuilt).</summary>
    public void CaptureActivation(MonitoredLayer layer, Tensor output)
    {
        var shape = output.shape;
        Ops.InHook = true;
        try
        {
            var slot = _layout?.Find(layer, shape);
            if (slot is not null && _buffer is not null && StatisticsEngine.SameDevice(_buffer.device, output.device))
            {
                using var detached = Ops.Handle(output.detach());
                Ops.Launch(_slotViews[SlotIndex(slot)].copy_(detached));
                _captured.Add(new Captured(layer, shape, null));
            }
            else
            {
                _captured.Add(new Captured(layer, shape, Ops.Handle(output.detach()).DetachFromDisposeScope()));
            }
        }
        finally
        {
            Ops.InHook = false;
        }
    }

    private int SlotIndex(ActivationLayout.Slot slot)
    {
        var slots = _layout!.Slots;
        for (int i = 0; i < slots.Count; i++)
        {
            if (ReferenceEquals(slots[i], slot)) return i;
        }
        throw new InvalidOperationException($"Layer '{slot.Layer.Name}' has no slot in the current layout.");
    }

    /// <summary>
    /// After backward, before the optimizer step: gradient and weight sums of squares per chunk and a snapshot of the
    /// parameters (one concatenation each, for all layers together).
    /// </summary>
    public void CaptureGradients(IReadOnlyList<(MonitoredLayer Layer, Parameter[] Parameters, GradientCapture Capture)> layers)
    {
        DisposeGradientState();
        if (layers.Count == 0) return;
        var entries = layers.Select(l => (l.Layer, l.Parameters)).ToList();
        var target = layers[0].Parameters[0].device;
        if (_gradientLayout is null || !_gradientLayout.Matches(entries)) RebuildGradientLayout(entries, target);
        var layout = _gradientLayout!;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var grads = new List<Tensor>();
        var weights = new List<Tensor>();
        for (int i = 0; i < layout.Segments.Count; i++)
        {
            var seg = layout.Segments[i];
            foreach (var p in seg.Parameters) grads.Add(Ops.Handle(Ops.Handle(p.grad!).reshape(-1)));
            weights.AddRange(_parameterViews[i]);
            if (seg.Pad > 0)
            {
                grads.Add(_padViews[i]);
                weights.Add(_padViews[i]);
            }
        }
        int m = layout.Chunks, c = layout.ChunkLength;
        var g = Ops.Launch(cat(grads));
        _gradientSquares = Ops.Launch(2, Ops.Handle(g.view(m, c)).square().sum(1)).DetachFromDisposeScope();
        _weightSnapshot = Ops.Launch(cat(weights)).DetachFromDisposeScope();
        _weightSquares = Ops.Launch(2, Ops.Handle(_weightSnapshot.view(m, c)).square().sum(1)).DetachFromDisposeScope();
        _gradientCaptures = layers.Select(l => (GradientCapture?)l.Capture).ToArray();
    }

    private void RebuildGradientLayout(List<(MonitoredLayer Layer, Parameter[] Parameters)> entries, torch.Device device)
    {
        DisposeGradientLayout();
        var layout = GradientLayout.Build(entries);
        _gradientLayout = layout;
        _gradientPad = Ops.Launch(zeros(Math.Max(1, layout.MaxPad), ScalarType.Float32, device)).DetachFromDisposeScope();
        _padViews = layout.Segments.Select(s => Ops.Handle(_gradientPad.narrow(0, 0, Math.Max(1, s.Pad))).DetachFromDisposeScope()).ToArray();
        // Flat views of the parameters themselves: the optimizer updates them in place, so the views stay current.
        _parameterViews = layout.Segments.Select(s => s.Parameters.Select(p => Ops.Handle(p.detach().reshape(-1)).DetachFromDisposeScope()).ToArray()).ToArray();
    }

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
            var fired = new List<int>();
            ActivationLayout? layout = null;
            torch.Device? device = null;
            if (_captured.Count > 0)
            {
                EnsureLayout();
                layout = _layout!;
                device = _buffer!.device;
                foreach (var c in _captured)
                {
                    var slot = layout.Find(c.Layer, c.Shape)!;
                    fired.Add(SlotIndex(slot));
                }
                ActivationParts(parts);
            }

            var gradients = _gradientLayout is not null && _gradientCaptures.Length > 0 ? _gradientLayout : null;
            bool hasUpdate = false;
            if (gradients is not null)
            {
                device ??= _gradientSquares!.device;
                hasUpdate = GradientParts(gradients, parts);
            }
            bool hasLoss = _loss is not null;
            if (hasLoss)
            {
                device ??= _loss!.device;
                parts.Add(_loss!.device_type == device!.type ? _loss : Ops.Launch(_loss.to(device)));
            }

            var pack = Ops.Launch(cat(parts));
            int length = (int)pack.shape[0];
            DeviceCapture capture;
            if (pack.device_type == DeviceType.CPU)
            {
                capture = new DeviceCapture(pack.DetachFromDisposeScope(), length, asynchronous: false, release: null, layout,
                    fired, _anySaturation, gradients, _gradientCaptures, hasUpdate, hasLoss);
            }
            else
            {
                var host = RentPinned(length + 1);
                var flag = Ops.Handle(host.narrow(0, length, 1));
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(flag.bytes)[0] = 0f;
                Ops.Launch(Ops.Handle(host.narrow(0, 0, length)).copy_(pack, nonBlocking: true));
                _flagSource ??= Ops.Launch(ones(1, ScalarType.Float32, pack.device)).DetachFromDisposeScope();
                Ops.Launch(flag.copy_(_flagSource, nonBlocking: true));
                capture = new DeviceCapture(host, length, asynchronous: true, release: ReturnPinned, layout,
                    fired, _anySaturation, gradients, _gradientCaptures, hasUpdate, hasLoss);
            }
            HostTransfers++;
            return capture;
        }
        finally
        {
            ResetStep();
        }
    }

    private void ActivationParts(List<Tensor> parts)
    {
        var v = _chunkView!;
        var pivot = Ops.Launch(Ops.Handle(v.select(1, 0)).nan_to_num(0, 0, 0));
        var d = Ops.Launch(v.sub(Ops.Handle(pivot.unsqueeze(1))));
        Ops.Launch(d.nan_to_num_(0, 0, 0));
        // Scaled by the chunk's largest |x - p| so float32 squares cannot overflow (values beyond ~1.8e19 otherwise would).
        var scale = Ops.Launch(3, d.abs().amax([1L], keepdim: true).clamp_min_(_tiny));
        Ops.Launch(d.div_(scale));
        var (variance, mean) = Ops.Launch(d.var_mean(1, unbiased: false));
        parts.Add(pivot);
        parts.Add(mean);
        parts.Add(variance);
        parts.Add(Ops.Handle(scale.view(-1)));
        parts.Add(Ops.Launch(2, v.isnan().sum(1, type: ScalarType.Float32)));
        parts.Add(Ops.Launch(2, v.isinf().sum(1, type: ScalarType.Float32)));
        parts.Add(Ops.Launch(3, v.abs().le(_nearZero).sum(1, type: ScalarType.Float32)));
        parts.Add(Ops.Launch(2, v.nan_to_num(float.PositiveInfinity, float.PositiveInfinity, float.PositiveInfinity).amin(1)));
        parts.Add(Ops.Launch(2, v.nan_to_num(float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity).amax(1)));
        if (_anySaturation)
            parts.Add(Ops.Launch(4, v.le(_saturationLow!).logical_or(v.ge(_saturationHigh!)).sum(1, type: ScalarType.Float32)));
        parts.Add(Ops.Launch(_buffer!.index_select(0, _samplePositions!)));
    }

    /// <summary>Adds the gradient, weight and update sums of squares per chunk; returns whether the update could be measured.</summary>
    private bool GradientParts(GradientLayout layout, List<Tensor> parts)
    {
        parts.Add(_gradientSquares!);
        parts.Add(_weightSquares!);
        bool comparable = layout.Segments.All(s => s.Parameters.All(p => !p.IsInvalid));
        if (comparable)
        {
            var now = new List<Tensor>();
            for (int i = 0; i < layout.Segments.Count; i++)
            {
                now.AddRange(_parameterViews[i]);
                if (layout.Segments[i].Pad > 0) now.Add(_padViews[i]);
            }
            var current = Ops.Launch(cat(now));
            var update = Ops.Launch(current.sub_(_weightSnapshot!));
            parts.Add(Ops.Launch(2, Ops.Handle(update.view(layout.Chunks, layout.ChunkLength)).square().sum(1)));
        }
        else
        {
            parts.Add(Ops.Launch(zeros_like(_gradientSquares!)));
        }
        return comparable;
    }

    /// <summary>Builds the layout for this step's captures when it differs from the current one and copies what the hooks kept.</summary>
    private void EnsureLayout()
    {
        var entries = _captured.Select(c => (c.Layer, c.Shape)).ToList();
        if (_layout is not null && _layout.Matches(entries) && _captured.All(c => c.Handle is null)) return;
        if (_layout is not null && _layout.Matches(entries))
        {
            for (int i = 0; i < _captured.Count; i++)
            {
                if (_captured[i].Handle is { } h) Ops.Launch(_slotViews[i].copy_(h));
            }
            return;
        }

        var old = (_layout, _buffer, _slotViews);
        var device = _captured.Select(c => c.Handle?.device).FirstOrDefault(d => d is not null) ?? _buffer!.device;
        var layout = ActivationLayout.Build(entries, _options.SampleSize);
        var buffer = Ops.Launch(full(layout.Length, _nan, ScalarType.Float32, device)).DetachFromDisposeScope();
        var views = layout.Slots.Select(s => Ops.Handle(buffer.as_strided(s.Shape, s.Strides(), s.Offset)).DetachFromDisposeScope()).ToArray();
        for (int i = 0; i < _captured.Count; i++)
        {
            var c = _captured[i];
            if (c.Handle is { } h)
            {
                Ops.Launch(views[i].copy_(h));
            }
            else
            {
                var oldSlot = old._layout!.Find(c.Layer, c.Shape)!;
                int oldIndex = old._layout.Slots.ToList().IndexOf(oldSlot);
                Ops.Launch(views[i].copy_(old._slotViews[oldIndex]));
            }
        }
        DisposeLayout();
        _layout = layout;
        _buffer = buffer;
        _slotViews = views;
        _chunkView = Ops.Handle(buffer.view(layout.Chunks, layout.ChunkLength)).DetachFromDisposeScope();
        _samplePositions = Ops.Launch(tensor(layout.SamplePositions(_buffers, _options.SampleSize, _options.Seed), ScalarType.Int64, device)).DetachFromDisposeScope();
        _anySaturation = layout.Slots.Any(s => s.Layer.Descriptor.Saturation is not null);
        if (_anySaturation)
        {
            var low = new float[layout.Chunks];
            var high = new float[layout.Chunks];
            Array.Fill(low, float.NegativeInfinity);
            Array.Fill(high, float.PositiveInfinity);
            foreach (var s in layout.Slots)
            {
                if (s.Layer.Descriptor.Saturation is not { } b) continue;
                int chunks = (int)(s.Units * s.ChunksPerUnit(layout.ChunkLength));
                Array.Fill(low, b.Low, s.FirstChunk, chunks);
                Array.Fill(high, b.High, s.FirstChunk, chunks);
            }
            _saturationLow = Ops.Launch(tensor(low, [layout.Chunks, 1], ScalarType.Float32, device)).DetachFromDisposeScope();
            _saturationHigh = Ops.Launch(tensor(high, [layout.Chunks, 1], ScalarType.Float32, device)).DetachFromDisposeScope();
        }
        old._buffer?.Dispose();
        foreach (var v in old._slotViews) v.Dispose();
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

    /// <summary>Drops this step's activations (a forward pass that did not finish); the buffer keeps stale values that no
    /// capture reads.</summary>
    public void DiscardActivations()
    {
        foreach (var c in _captured) c.Handle?.Dispose();
        _captured.Clear();
    }

    private void ResetStep()
    {
        foreach (var c in _captured) c.Handle?.Dispose();
        _captured.Clear();
        DisposeGradientState();
        _loss?.Dispose();
        _loss = null;
    }

    private void DisposeGradientState()
    {
        _gradientSquares?.Dispose();
        _weightSquares?.Dispose();
        _weightSnapshot?.Dispose();
        _gradientSquares = _weightSquares = _weightSnapshot = null;
        _gradientCaptures = [];
    }

    private void DisposeLayout()
    {
        // The buffer and slot views are disposed by the caller (they may be read while the new layout is filled).
        _chunkView?.Dispose();
        _samplePositions?.Dispose();
        _saturationLow?.Dispose();
        _saturationHigh?.Dispose();
        _chunkView = _samplePositions = _saturationLow = _saturationHigh = null;
        _layout = null;
        _buffer = null;
        _slotViews = [];
    }

    private void DisposeGradientLayout()
    {
        foreach (var v in _padViews) v.Dispose();
        foreach (var views in _parameterViews)
        {
            foreach (var v in views) v.Dispose();
        }
        _gradientPad?.Dispose();
        _gradientPad = null;
        _padViews = [];
        _parameterViews = [];
        _gradientLayout = null;
    }

    public void Dispose()
    {
        ResetStep();
        var buffer = _buffer;
        var views = _slotViews;
        DisposeLayout();
        buffer?.Dispose();
        foreach (var v in views) v.Dispose();
        DisposeGradientLayout();
        _flagSource?.Dispose();
        _flagSource = null;
        foreach (var t in _pinnedPool) t.Dispose();
        _pinnedPool.Clear();
        _nearZero.Dispose();
        _nan.Dispose();
        _tiny.Dispose();
    }
}
