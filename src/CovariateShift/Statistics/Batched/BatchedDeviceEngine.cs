using CovariateShift.Capture;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CovariateShift.Statistics.Batched;

/// <summary>
/// Device statistics whose number of operations per recorded step does not grow with the number of layers.
/// <para>Hook (per layer): one detach, a handle kept until the step ends; no device work. A layer whose output an
/// in-place module (e.g. <c>ReLU(inplace: true)</c> after a norm) overwrites later in the forward is copied just before
/// that module runs (<see cref="BeforeInPlace"/>: one copy for that layer only), so what is recorded is the layer's own
/// output. An in-place tensor operation in the model's own forward code (<c>x.relu_()</c>) is not seen.</para>
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
    /// <summary>A layer's output this step: its handle (or its copy, once an in-place module was about to overwrite it) and
    /// the native handle of the tensor object the hook saw, to recognize it as a later module's input.</summary>
    private sealed record Captured(MonitoredLayer Layer, long[] Shape, Tensor Handle, IntPtr Source);

    private readonly MonitorOptions _options;
    private readonly Func<MonitoredLayer, LayerBuffers> _buffers;
    private readonly List<Captured> _captured = [];
    private ActivationLayout? _layout;
    private Tensor? _gatherIndex;
    private Tensor? _nanCell;
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

    /// <summary>Forward hook: keeps a handle to the output until the step ends (no device work).</summary>
    public void CaptureActivation(MonitoredLayer layer, Tensor output)
    {
        Ops.InHook = true;
        try
        {
            _captured.Add(new Captured(layer, output.shape, Ops.Handle(output.detach()).DetachFromDisposeScope(), output.Handle));
        }
        finally
        {
            Ops.InHook = false;
        }
    }

    /// <summary>
    /// An in-place module is about to overwrite <paramref name="input"/>: when that is an output captured this step, it is
    /// copied now (one copy, this layer only), so the step records the layer's own values.
    /// </summary>
    public void BeforeInPlace(Tensor input)
    {
        for (int i = 0; i < _captured.Count; i++)
        {
            var c = _captured[i];
            if (c.Source == IntPtr.Zero || c.Source != input.Handle) continue;
            Ops.InHook = true;
            try
            {
                var copy = Ops.Launch(c.Handle.clone()).DetachFromDisposeScope();
                c.Handle.Dispose();
                _captured[i] = c with { Handle = copy, Source = IntPtr.Zero };
            }
            finally
            {
                Ops.InHook = false;
            }
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
                device = _gatherIndex!.device;
                var flat = new Tensor[layout.Slots.Count + 1];
                foreach (var c in _captured)
                {
                    int index = SlotIndex(layout.Find(c.Layer, c.Shape)!);
                    fired.Add(index);
                    flat[index] = Flat(c.Handle);
                }
                flat[^1] = _nanCell!;   // what the padding positions of the layout gather
                var buffer = Ops.Launch(Ops.Launch(cat(flat)).index_select(0, _gatherIndex!));
                ActivationParts(parts, buffer);
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

    /// <summary>The output as a flat float32 vector: a view when it is contiguous float32, otherwise one conversion.</summary>
    private Tensor Flat(Tensor t)
    {
        if (t.dtype != ScalarType.Float32) return Ops.Launch(t.to_type(ScalarType.Float32).reshape(-1));
        return t.is_contiguous() ? Ops.Handle(t.view(-1)) : Ops.Launch(t.reshape(-1));
    }

    private void ActivationParts(List<Tensor> parts, Tensor buffer)
    {
        var v = Ops.Handle(buffer.view(_layout!.Chunks, _layout.ChunkLength));
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
        parts.Add(Ops.Launch(buffer.index_select(0, _samplePositions!)));
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

    /// <summary>Builds the layout for this step's captures when it differs from the current one (or they moved to another
    /// device): the slots, the gather index from the flat concatenation into the layout, the sample positions.</summary>
    private void EnsureLayout()
    {
        var entries = _captured.Select(c => (c.Layer, c.Shape)).ToList();
        var device = _captured[0].Handle.device;
        if (_layout is not null && _layout.Matches(entries) && StatisticsEngine.SameDevice(_gatherIndex!.device, device)) return;

        DisposeLayout();
        var layout = ActivationLayout.Build(entries, _options.SampleSize);
        using (var build = NewDisposeScope())
        {
            // Built on the host once per layout: for every position of the layout, where its value is in the flat
            // concatenation of the outputs (slot by slot, each in its own order); padding takes the NaN cell at the end.
            long total = layout.Slots.Sum(s => s.Count);
            var index = full(layout.Length, total, ScalarType.Int64);
            long first = 0;
            foreach (var s in layout.Slots)
            {
                index.as_strided(s.Shape, s.Strides(), s.Offset).copy_(arange(first, first + s.Count, ScalarType.Int64).view(s.Shape));
                first += s.Count;
            }
            _gatherIndex = Ops.Launch(index.to(device)).DetachFromDisposeScope();
        }
        _nanCell = Ops.Launch(full(1, _nan, ScalarType.Float32, device)).DetachFromDisposeScope();
        _layout = layout;
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
        foreach (var c in _captured) c.Handle.Dispose();
        _captured.Clear();
    }

    private void ResetStep()
    {
        foreach (var c in _captured) c.Handle.Dispose();
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
        _gatherIndex?.Dispose();
        _nanCell?.Dispose();
        _samplePositions?.Dispose();
        _saturationLow?.Dispose();
        _saturationHigh?.Dispose();
        _gatherIndex = _nanCell = _samplePositions = _saturationLow = _saturationHigh = null;
        _layout = null;
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
        DisposeLayout();
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
