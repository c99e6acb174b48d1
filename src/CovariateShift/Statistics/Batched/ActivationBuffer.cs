using System.Collections.Immutable;
using CovariateShift.Capture;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Statistics.Batched;

/// <summary>
/// The activation side of the batched device engine; it owns every tensor it keeps. In the hook (per layer): one detach,
/// a handle kept until the step ends, no device work. A layer whose output an in-place module (e.g.
/// <c>ReLU(inplace: true)</c> after a norm) overwrites later in the forward is copied just before that module runs
/// (<see cref="BeforeInPlace"/>: one copy for that layer only), so what is recorded is the layer's own output. An
/// in-place tensor operation in the model's own forward code (<c>x.relu_()</c>) is not seen: the record then holds the
/// values after it. At the end of the step (<see cref="AddParts"/>): one <c>cat</c> of the kept outputs and one
/// <c>index_select</c> into the float32 layout (<see cref="ActivationLayout"/>), then the per-chunk reductions. The layout's
/// gather index, NaN cell, sample positions and saturation bounds are kept across steps (rebuilt when the layers' shapes
/// or device change); the handles until <see cref="Reset"/>.
/// </summary>
internal sealed class ActivationBuffer(MonitorOptions options, Func<MonitoredLayer, LayerBuffers> buffers, DeviceOpCounter ops) : IDisposable
{
    /// <summary>A layer's output this step: its handle (or its copy, once an in-place module was about to overwrite it) and
    /// the native handle of the tensor object the hook saw, to recognize it as a later module's input.</summary>
    private sealed record Captured(MonitoredLayer Layer, long[] Shape, Tensor Handle, IntPtr Source);

    private readonly List<Captured> _captured = [];
    private readonly Scalar _nearZero = options.NearZeroThreshold.ToScalar();
    private readonly Scalar _nan = float.NaN.ToScalar();
    private readonly Scalar _tiny = 1e-30f.ToScalar();
    private ActivationLayout? _layout;
    private Tensor? _gatherIndex;
    private Tensor? _nanCell;
    private Tensor? _samplePositions;
    private Tensor? _saturationLow;
    private Tensor? _saturationHigh;
    private bool _anySaturation;

    /// <summary>Whether any output was captured this step.</summary>
    public bool HasWork => _captured.Count > 0;

    /// <summary>Chunk length of the current layout (diagnostics).</summary>
    public int? ChunkLength => _layout?.ChunkLength;

    /// <summary>Forward hook: keeps a handle to the output until the step ends (no device work).</summary>
    public void Capture(MonitoredLayer layer, Tensor output)
    {
        ops.InHook = true;
        try
        {
            _captured.Add(new Captured(layer, output.shape, ops.Handle(output.detach()).DetachFromDisposeScope(), output.Handle));
        }
        finally
        {
            ops.InHook = false;
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
            ops.InHook = true;
            try
            {
                var copy = ops.Launch(c.Handle.clone()).DetachFromDisposeScope();
                c.Handle.Dispose();
                _captured[i] = c with { Handle = copy, Source = IntPtr.Zero };
            }
            finally
            {
                ops.InHook = false;
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
    /// Adds the reductions of the captured outputs to the pack's <paramref name="parts"/> (inside the caller's dispose scope
    /// and no_grad) and returns how to read them back, or null when nothing was captured.
    /// </summary>
    public ActivationPart? AddParts(List<Tensor> parts)
    {
        if (_captured.Count == 0) return null;
        EnsureLayout();
        var layout = _layout!;
        var fired = new List<int>();
        var flat = new Tensor[layout.Slots.Count + 1];
        foreach (var c in _captured)
        {
            int index = SlotIndex(layout.Find(c.Layer, c.Shape)!);
            fired.Add(index);
            flat[index] = Flat(c.Handle);
        }
        flat[^1] = _nanCell!;   // what the padding positions of the layout gather
        var buffer = ops.Launch(ops.Launch(cat(flat)).index_select(0, _gatherIndex!));
        var v = ops.Handle(buffer.view(layout.Chunks, layout.ChunkLength));
        var pivot = ops.Launch(ops.Handle(v.select(1, 0)).nan_to_num(0, 0, 0));
        var d = ops.Launch(v.sub(ops.Handle(pivot.unsqueeze(1))));
        ops.Launch(d.nan_to_num_(0, 0, 0));
        // Scaled by the chunk's largest |x - p| so float32 squares cannot overflow (values beyond ~1.8e19 otherwise would).
        var scale = ops.Launch(3, d.abs().amax([1L], keepdim: true).clamp_min_(_tiny));
        ops.Launch(d.div_(scale));
        var (variance, mean) = ops.Launch(d.var_mean(1, unbiased: false));
        parts.Add(pivot);
        parts.Add(mean);
        parts.Add(variance);
        parts.Add(ops.Handle(scale.view(-1)));
        parts.Add(ops.Launch(2, v.isnan().sum(1, type: ScalarType.Float32)));
        parts.Add(ops.Launch(2, v.isinf().sum(1, type: ScalarType.Float32)));
        parts.Add(ops.Launch(3, v.abs().le(_nearZero).sum(1, type: ScalarType.Float32)));
        parts.Add(ops.Launch(2, v.nan_to_num(float.PositiveInfinity, float.PositiveInfinity, float.PositiveInfinity).amin(1)));
        parts.Add(ops.Launch(2, v.nan_to_num(float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity).amax(1)));
        if (_anySaturation)
            parts.Add(ops.Launch(4, v.le(_saturationLow!).logical_or(v.ge(_saturationHigh!)).sum(1, type: ScalarType.Float32)));
        parts.Add(ops.Launch(buffer.index_select(0, _samplePositions!)));
        return new ActivationPart(layout, fired, _anySaturation);
    }

    /// <summary>The output as a flat float32 vector: a view when it is contiguous float32, otherwise one conversion.</summary>
    private Tensor Flat(Tensor t)
    {
        if (t.dtype != ScalarType.Float32) return ops.Launch(t.to_type(ScalarType.Float32).reshape(-1));
        return t.is_contiguous() ? ops.Handle(t.view(-1)) : ops.Launch(t.reshape(-1));
    }

    /// <summary>Builds the layout for this step's captures when it differs from the current one (or they moved to another
    /// device): the slots, the gather index from the flat concatenation into the layout, the sample positions.</summary>
    private void EnsureLayout()
    {
        var entries = _captured.Select(c => (c.Layer, c.Shape)).ToList();
        var device = _captured[0].Handle.device;
        if (_layout is not null && _layout.Matches(entries) && StatisticsEngine.SameDevice(_gatherIndex!.device, device)) return;

        DisposeLayout();
        var layout = ActivationLayout.Build(entries, options.SampleSize);
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
            _gatherIndex = ops.Launch(index.to(device)).DetachFromDisposeScope();
        }
        _nanCell = ops.Launch(full(1, _nan, ScalarType.Float32, device)).DetachFromDisposeScope();
        _layout = layout;
        _samplePositions = ops.Launch(tensor(layout.SamplePositions(buffers, options.SampleSize, options.Seed), ScalarType.Int64, device)).DetachFromDisposeScope();
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
            _saturationLow = ops.Launch(tensor(low, [layout.Chunks, 1], ScalarType.Float32, device)).DetachFromDisposeScope();
            _saturationHigh = ops.Launch(tensor(high, [layout.Chunks, 1], ScalarType.Float32, device)).DetachFromDisposeScope();
        }
    }

    /// <summary>Drops this step's handles (the step ended, or its forward pass did not finish).</summary>
    public void Reset()
    {
        foreach (var c in _captured) c.Handle.Dispose();
        _captured.Clear();
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

    public void Dispose()
    {
        Reset();
        DisposeLayout();
        _nearZero.Dispose();
        _nan.Dispose();
        _tiny.Dispose();
    }
}

/// <summary>
/// The activation part of a step's pack, on the host: per chunk of the activation buffer the pivot, mean and variance about
/// it (in units of the scale), the scale (largest |x - pivot|), NaN / Inf / near-zero counts, finite min and max (and the
/// saturated count when a layer is bounded), then the sampled values. <see cref="Read"/> turns it into the fired layers'
/// summaries.
/// </summary>
/// <param name="Layout">The activation buffer's layout.</param>
/// <param name="FiredSlots">The slots whose layers ran this step.</param>
/// <param name="Saturation">Whether the saturated counts are in the pack.</param>
internal sealed record ActivationPart(ActivationLayout Layout, IReadOnlyList<int> FiredSlots, bool Saturation)
{
    /// <summary>Per-chunk values of the activation part (order of the pack).</summary>
    public int ChunkFields => Saturation ? 10 : 9;

    /// <summary>Values of this part in the pack.</summary>
    public int Length => ChunkFields * Layout.Chunks + Layout.TotalSamples;

    /// <summary>Writes the fired layers' summaries (indexed by layer index) from <paramref name="pack"/> (this part's values first).</summary>
    public void Read(ReadOnlySpan<float> pack, LayerSummary?[] summaries)
    {
        int m = Layout.Chunks;
        var chunks = pack[..(ChunkFields * m)];
        var samples = pack.Slice(ChunkFields * m, Layout.TotalSamples);
        foreach (int i in FiredSlots)
        {
            var slot = Layout.Slots[i];
            summaries[slot.Layer.Index] = Summarize(slot, Layout.ChunkLength, m, chunks, samples.Slice(slot.SampleOffset, slot.SampleCount));
        }
    }

    /// <summary>
    /// Merges a layer's chunks: per chunk (n_k finite values, mean m_k = pivot + S1/n_k, M2_k = S2 - S1^2/n_k with
    /// S1 = C * mean, S2 = C * (var + mean^2) about the chunk's pivot), then Chan et al.'s pairwise merge into units and
    /// units into the layer, all in double (<see cref="Moments.Merge"/>).
    /// </summary>
    private LayerSummary Summarize(ActivationLayout.Slot slot, int chunkLength, int m, ReadOnlySpan<float> chunks,
        ReadOnlySpan<float> sampled)
    {
        var pivot = chunks[..m];
        var mean = chunks.Slice(m, m);
        var variance = chunks.Slice(2 * m, m);
        var scale = chunks.Slice(3 * m, m);
        var nan = chunks.Slice(4 * m, m);
        var inf = chunks.Slice(5 * m, m);
        var near = chunks.Slice(6 * m, m);
        var min = chunks.Slice(7 * m, m);
        var max = chunks.Slice(8 * m, m);
        var sat = Saturation ? chunks.Slice(9 * m, m) : default;

        int perUnit = slot.ChunksPerUnit(chunkLength);
        long nanCount = 0, infCount = 0, nearCount = 0, saturated = 0, dead = 0, used = 0;
        double sqMean = 0, varMean = 0;
        var layer = Moments.Empty;
        float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
        for (int u = 0; u < slot.Units; u++)
        {
            var unit = Moments.Empty;
            long unitNear = 0;
            for (int c = 0; c < perUnit; c++)
            {
                int k = slot.FirstChunk + u * perUnit + c;
                long real = Math.Min(chunkLength, slot.UnitLength - (long)c * chunkLength);
                long pads = chunkLength - real;
                long kn = (long)nan[k] - pads, ki = (long)inf[k];
                long kf = real - kn - ki;
                nanCount += kn;
                infCount += ki;
                unitNear += (long)near[k];
                if (Saturation) saturated += (long)sat[k];
                if (kf <= 0) continue;
                lo = Math.Min(lo, min[k]);
                hi = Math.Max(hi, max[k]);
                double sk = scale[k], mk = mean[k] * sk;
                double s1 = chunkLength * mk;
                double s2 = chunkLength * (variance[k] * sk * sk + mk * mk);
                unit = Moments.Merge(unit, Moments.FromMean(kf, pivot[k] + s1 / kf, Math.Max(0.0, s2 - s1 * s1 / kf)));
            }
            nearCount += unitNear;
            if (slot.UnitLength - unitNear == 0) dead++;
            if (unit.Count == 0) continue;
            used++;
            sqMean += unit.Mean * unit.Mean;
            varMean += unit.M2 / unit.Count;
            layer = Moments.Merge(layer, unit);
        }
        var values = ImmutableArray.CreateBuilder<float>(sampled.Length);
        foreach (var v in sampled)
        {
            if (float.IsFinite(v)) values.Add(v);
        }
        return new LayerSummary
        {
            Count = slot.Count,
            FiniteCount = layer.Count,
            Mean = layer.Mean,
            Variance = layer.Variance,
            Min = layer.Count > 0 ? lo : double.NaN,
            Max = layer.Count > 0 ? hi : double.NaN,
            NearZero = nearCount,
            Units = slot.Units,
            DeadUnits = dead,
            Saturated = saturated,
            Nan = nanCount,
            Inf = infCount,
            ChannelSquaredMean = slot.FourD ? (used > 0 ? sqMean / used : double.NaN) : null,
            ChannelVariance = slot.FourD ? (used > 0 ? varMean / used : double.NaN) : null,
            Sample = values.DrainToImmutable(),
        };
    }

}
