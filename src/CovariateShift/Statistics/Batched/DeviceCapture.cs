using System.Collections.Immutable;
using System.Runtime.InteropServices;
using CovariateShift.Capture;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Statistics.Batched;

/// <summary>
/// One recorded step's pack on its way to the host. The pack is a float32 vector: per chunk of the activation buffer
/// the pivot, mean and variance about it (in units of the scale), the scale (largest |x - pivot|), NaN / Inf / near-zero counts, finite min and max (and the saturated count when
/// a layer is bounded); then the sampled values; then per chunk of the parameter buffer the squared gradient, weight and
/// update sums; then the loss. On a CUDA device it is copied asynchronously into pinned host memory followed by a
/// one-element flag copy on the same stream; the pack has arrived when the host sees the flag (the copies complete in
/// stream order), so waiting for it never waits for work queued after it. On the CPU the pack is already host memory.
/// Owns its host tensor and returns it to the engine's pool when completed or disposed.
/// </summary>
internal sealed class DeviceCapture : IDisposable
{
    private readonly Action<Tensor>? _release;
    private Tensor? _host;
    private readonly int _length;
    private readonly bool _async;

    public DeviceCapture(Tensor host, int length, bool asynchronous, Action<Tensor>? release, ActivationLayout? layout,
        IReadOnlyList<int> firedSlots, bool saturation, GradientLayout? gradients, IReadOnlyList<GradientCapture?> gradientCaptures, bool hasUpdate, bool hasLoss)
    {
        _host = host;
        _length = length;
        _async = asynchronous;
        _release = release;
        Layout = layout;
        FiredSlots = firedSlots;
        Saturation = saturation;
        Gradients = gradients;
        GradientCaptures = gradientCaptures;
        HasUpdate = hasUpdate;
        HasLoss = hasLoss;
    }

    /// <summary>Whether the pack is copied asynchronously (CUDA) rather than already in host memory.</summary>
    public bool Asynchronous => _async;

    public ActivationLayout? Layout { get; }
    public IReadOnlyList<int> FiredSlots { get; }
    public bool Saturation { get; }
    public GradientLayout? Gradients { get; }
    public IReadOnlyList<GradientCapture?> GradientCaptures { get; }
    public bool HasUpdate { get; }
    public bool HasLoss { get; }

    /// <summary>Per-chunk values of the activation part (order of the pack).</summary>
    public int ChunkFields => Saturation ? 10 : 9;

    /// <summary>Whether the pack has arrived in host memory (never blocks).</summary>
    public bool IsReady
    {
        get
        {
            if (!_async || _host is null) return true;
            var flag = MemoryMarshal.Cast<byte, float>(_host.bytes)[_length..];
            bool ready = Volatile.Read(ref flag[0]) != 0f;
            if (ready) Interlocked.MemoryBarrier();
            return ready;
        }
    }

    /// <summary>Waits until the pack has arrived: spins on the flag (only the copy is waited for, not the queue behind it).</summary>
    public void Wait()
    {
        var spin = new SpinWait();
        var started = Environment.TickCount64;
        while (!IsReady)
        {
            spin.SpinOnce();
            if (Environment.TickCount64 - started > 5_000)
            {
                // A pack that has not arrived after 5 s: let the device finish everything, then it must be there.
                if (cuda.is_available()) cuda.synchronize();
                if (!IsReady) throw new InvalidOperationException("The monitor's statistics pack did not arrive from the device after a full synchronization.");
            }
        }
    }

    /// <summary>
    /// Turns the arrived pack into per-layer summaries (indexed by layer index) and fills the gradient captures; returns
    /// the loss when the pack carries it.
    /// </summary>
    public double? Complete(LayerSummary?[] summaries)
    {
        Wait();
        var host = MemoryMarshal.Cast<byte, float>(_host!.bytes)[.._length];
        int offset = 0;
        if (Layout is { } layout)
        {
            int m = layout.Chunks;
            var chunks = host[..(ChunkFields * m)];
            var samples = host.Slice(ChunkFields * m, layout.TotalSamples);
            foreach (int i in FiredSlots)
            {
                var slot = layout.Slots[i];
                summaries[slot.Layer.Index] = Summarize(slot, layout.ChunkLength, m, chunks, samples.Slice(slot.SampleOffset, slot.SampleCount));
            }
            offset = ChunkFields * m + layout.TotalSamples;
        }
        if (Gradients is { } g)
        {
            int mg = g.Chunks;
            var grad = host.Slice(offset, mg);
            var weight = host.Slice(offset + mg, mg);
            var update = host.Slice(offset + 2 * mg, mg);
            for (int i = 0; i < g.Segments.Count; i++)
            {
                var seg = g.Segments[i];
                var capture = GradientCaptures[i];
                if (capture is null) continue;
                double gs = 0, ws = 0, us = 0;
                for (int k = seg.FirstChunk; k < seg.FirstChunk + seg.ChunkCount; k++)
                {
                    gs += grad[k];
                    ws += weight[k];
                    us += update[k];
                }
                capture.GradSquares += gs;
                capture.WeightSquares += ws;
                capture.UpdateSquares = HasUpdate ? (capture.UpdateSquares ?? 0) + us : double.NaN;
            }
            offset += 3 * mg;
        }
        double? loss = HasLoss ? host[offset] : null;
        Dispose();
        return loss;
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

    public void Dispose()
    {
        if (_host is null) return;
        var host = _host;
        _host = null;
        if (_release is not null) _release(host);
        else host.Dispose();
    }
}
