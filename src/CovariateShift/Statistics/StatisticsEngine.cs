using System.Collections.Immutable;
using System.Runtime.InteropServices;
using CovariateShift.Capture;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Statistics;

/// <summary>
/// The monitor's built-in engine: computes the raw reductions of activations and gradients where the tensors live.
/// <para>CPU float32 tensors (engine <see cref="StatisticsEngineKind.Auto"/>): one vectorized pass over the tensor's own
/// memory in the hook (<see cref="CpuKernel"/>); nothing is copied and no tensor is kept.</para>
/// <para>Other tensors (CUDA, other dtypes, or engine <see cref="StatisticsEngineKind.Device"/>): TorchSharp operations
/// on the tensor's device, under no_grad on detached data, each producing one small float64 "pack" tensor that this
/// engine owns until <see cref="Collect"/>, where all packs of the step are concatenated and copied to the host in a
/// single transfer. Collection is synchronous: the capture it returns is complete.</para>
/// </summary>
internal sealed class StatisticsEngine : IStatisticsEngine
{
    /// <summary>Scalars at the head of an activation pack, followed by the sampled values.</summary>
    private const int ActivationScalars = 15;

    private readonly MonitorOptions _options;
    private readonly Dictionary<int, LayerBuffers> _buffers = [];
    private readonly Dictionary<int, LayerSummary> _activations = [];
    private readonly Dictionary<int, GradientCapture> _gradients = [];
    private readonly List<(MonitoredLayer Layer, Tensor Pack, bool Channels)> _activationPacks = [];
    private Tensor? _lossPack;
    private double? _loss;

    // TorchSharp turns a C# number passed to an operation into a native Scalar that only a finalizer frees; the
    // device path uses these, created once and disposed with the engine.
    private readonly Scalar _zero = 0.0.ToScalar();
    private readonly Scalar _one = 1.0.ToScalar();
    private readonly Scalar _positiveInfinity = double.PositiveInfinity.ToScalar();
    private readonly Scalar _negativeInfinity = double.NegativeInfinity.ToScalar();
    private readonly Scalar _nearZero;

    public StatisticsEngine(MonitorOptions options)
    {
        _options = options;
        _nearZero = options.NearZeroThreshold.ToScalar();
    }

    /// <inheritdoc />
    public int HostTransfers { get; private set; }

    private LayerBuffers BuffersOf(MonitoredLayer layer)
    {
        if (!_buffers.TryGetValue(layer.Index, out var b))
        {
            b = new LayerBuffers(layer.Index);
            _buffers.Add(layer.Index, b);
        }
        return b;
    }

    private bool Captured(MonitoredLayer layer) =>
        _activations.ContainsKey(layer.Index) || _activationPacks.Exists(p => p.Layer.Index == layer.Index);

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
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = output.detach();
        if (UseCpuKernel(x))
        {
            x = x.contiguous();
            _activations[layer.Index] = SummarizeOnCpu(layer, MemoryMarshal.Cast<byte, float>(x.bytes), x);
            return;
        }
        bool channels = x.dim() == 4;
        var pack = DeviceActivationPack(layer, x, channels);
        _activationPacks.Add((layer, pack.DetachFromDisposeScope(), channels));
    }

    private LayerSummary SummarizeOnCpu(MonitoredLayer layer, ReadOnlySpan<float> data, Tensor shapeOf)
    {
        var shape = shapeOf.shape;
        int units = shape.Length >= 2 ? (int)shape[1] : 1;
        long block = shape.Length >= 3 ? shape[2..].Aggregate(1L, (a, b) => a * b) : 0;
        var summary = new ActivationSummary();
        CpuKernel.Summarize(data, units, (int)block, channelStatistics: shape.Length == 4,
            (float)_options.NearZeroThreshold, layer.Descriptor.Saturation, summary);
        var sample = BuffersOf(layer).SampleFor(data.Length, _options.SampleSize, _options.Seed);
        var values = new float[sample.Positions.Length];
        int count = sample.Gather(data, values);
        return summary.Freeze(ImmutableArray.Create(values, 0, count));
    }

    private Tensor DeviceActivationPack(MonitoredLayer layer, Tensor x, bool channels)
    {
        var dev = x.device;
        Tensor Value(double v) => tensor(v, ScalarType.Float64, dev);
        var x64 = x.to_type(ScalarType.Float64);
        var flat = x64.reshape(-1);
        var finite = flat.isfinite();
        var notFinite = finite.logical_not();
        var first = flat[0];
        var pivot = where(first.isfinite(), first, zeros_like(first));
        var d = (flat - pivot).masked_fill(notFinite, _zero);
        var notNear = flat.abs().le(_nearZero).logical_not();          // NaN counts as not near zero
        long[] unitShape = x.dim() >= 2 ? [x.shape[0], x.shape[1], -1] : [1, 1, -1];
        var activePerUnit = notNear.reshape(unitShape).sum([0L, 2L]);
        var parts = new List<Tensor>
        {
            Value(flat.numel()),
            finite.sum().to_type(ScalarType.Float64),
            pivot,
            d.sum(),
            d.square().sum(),
            flat.masked_fill(notFinite, _positiveInfinity).min(),
            flat.masked_fill(notFinite, _negativeInfinity).max(),
            Value(flat.numel()) - notNear.sum().to_type(ScalarType.Float64),
        };
        if (layer.Descriptor.Saturation is { } sat)
        {
            using var low = sat.Low.ToScalar();
            using var high = sat.High.ToScalar();
            parts.Add(flat.le(low).logical_or(flat.ge(high)).sum().to_type(ScalarType.Float64));
        }
        else
        {
            parts.Add(Value(0));
        }

        parts.Add(flat.isnan().sum().to_type(ScalarType.Float64));
        parts.Add(flat.isinf().sum().to_type(ScalarType.Float64));
        if (channels)
        {
            // Per channel over (N, H, W), reusing the pivoted, masked values (float64, so one shared pivot is exact enough).
            long[] dims = [0, 2, 3];
            var d4 = d.view(x.shape);
            var nC = finite.view(x.shape).sum(dims).to_type(ScalarType.Float64);
            var valid = nC.gt(_zero);
            var invalid = valid.logical_not();
            var safeN = nC.clamp_min(_one);
            var mC = d4.sum(dims) / safeN;
            var meanC = mC + pivot;
            var varC = (d4.square().sum(dims) / safeN - mC.square()).clamp_min(_zero);
            var used = valid.sum().to_type(ScalarType.Float64);
            parts.Add(meanC.square().masked_fill(invalid, _zero).sum() / used);
            parts.Add(varC.masked_fill(invalid, _zero).sum() / used);
        }
        else
        {
            parts.Add(Value(double.NaN));
            parts.Add(Value(double.NaN));
        }
        parts.Add(Value(activePerUnit.numel()));
        parts.Add(activePerUnit.eq(_zero).sum().to_type(ScalarType.Float64));
        var positions = BuffersOf(layer).DevicePositions(flat.numel(), _options.SampleSize, _options.Seed, dev);
        var sampled = flat.index_select(0, positions);
        return cat([stack(parts), sampled]);
    }

    /// <summary>
    /// Gradient and weight norms of every layer's own parameters, and a snapshot of the parameters for the update size.
    /// CPU float32 parameters are read in place, in one pass over the gradient and one over the weights that also copies
    /// them into the snapshot; others use device ops.
    /// </summary>
    public void CaptureGradients(IReadOnlyList<MonitoredLayer> layers)
    {
        ArgumentNullException.ThrowIfNull(layers);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var layer in layers)
        {
            GradientCapture? capture = null;
            var deviceParts = new List<Tensor>();
            foreach (var p in layer.Parameters)
            {
                if (!p.requires_grad) continue;
                var g = p.grad;
                if (g is null) continue;
                capture ??= new GradientCapture();
                capture.Elements += p.numel();
                if (UseCpuKernel(p) && UseCpuKernel(g) && p.is_contiguous() && g.is_contiguous())
                {
                    var w = MemoryMarshal.Cast<byte, float>(p.bytes);
                    var buffer = BuffersOf(layer).SnapshotBuffer(capture.HostSnapshots.Count, w.Length);
                    capture.HostSnapshots.Add((p, buffer));
                    capture.GradSquares += CpuNorms.SumSquares(MemoryMarshal.Cast<byte, float>(g.bytes));
                    capture.WeightSquares += CpuNorms.SumSquaresAndCopy(w, buffer);
                }
                else
                {
                    deviceParts.Add(g.to_type(ScalarType.Float64).square().sum());
                    deviceParts.Add(p.detach().to_type(ScalarType.Float64).square().sum());
                    capture.DeviceSnapshots.Add((p, p.detach().clone().DetachFromDisposeScope()));
                }
            }
            if (capture is null) continue;
            if (deviceParts.Count > 0)
                capture.DevicePack = stack(deviceParts).reshape(-1, 2).sum(dim: 0).DetachFromDisposeScope();
            if (_gradients.Remove(layer.Index, out var earlier)) earlier.Dispose();
            _gradients[layer.Index] = capture;
        }
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
        using var scope = NewDisposeScope();
        var l = loss.detach().reshape(-1)[0].to_type(ScalarType.Float64);
        if (l.device_type == DeviceType.CPU)
        {
            _loss = l.item<double>();
            return;
        }
        _lossPack?.Dispose();
        _lossPack = l.reshape(1).DetachFromDisposeScope();
    }

    /// <inheritdoc />
    public void DiscardActivations()
    {
        _activations.Clear();
        foreach (var (_, pack, _) in _activationPacks) pack.Dispose();
        _activationPacks.Clear();
    }

    /// <summary>
    /// Finishes the step: measures the optimizer's update for captured gradients, then copies every device pack to
    /// the host in one transfer, freezes everything into a <see cref="StepCapture"/> and resets the per-step state.
    /// </summary>
    public PendingCapture Collect(long step, int layerCount)
    {
        var all = new List<Tensor>(_activationPacks.Select(a => a.Pack));
        try
        {
            var hostUpdates = _gradients.ToDictionary(g => g.Key, g => HostUpdateSquares(g.Value));
            var deviceSums = new Dictionary<int, (double Grad, double Weight, double Update)>();

            var updateLayers = new List<int>();
            using (var scope = NewDisposeScope())
            using (var noGrad = no_grad())
            {
                foreach (var (index, g) in _gradients.OrderBy(g => g.Key))
                {
                    if (g.DevicePack is null) continue;
                    var parts = g.DeviceSnapshots.Select(s => (s.Parameter.detach().to_type(ScalarType.Float64) - s.Values.to_type(ScalarType.Float64)).square().sum()).ToList();
                    var update = parts.Count > 0 ? stack(parts).sum().reshape(1) : zeros(1, dtype: ScalarType.Float64, device: g.DevicePack.device);
                    all.Add(cat([g.DevicePack, update]).DetachFromDisposeScope());
                    updateLayers.Add(index);
                }
            }
            if (_lossPack is not null) all.Add(_lossPack);

            var activations = new LayerSummary?[layerCount];
            foreach (var (index, summary) in _activations) activations[index] = summary;
            if (all.Count > 0)
            {
                double[] host;
                using (var scope = NewDisposeScope())
                {
                    var target = all[0].device;
                    var joined = cat(all.Select(t => SameDevice(t.device, target) ? t : t.to(target)).ToList());
                    host = joined.cpu().data<double>().ToArray();
                    HostTransfers++;
                }
                int offset = 0;
                foreach (var (layer, pack, channels) in _activationPacks)
                {
                    int length = (int)pack.shape[0];
                    activations[layer.Index] = ParseActivationPack(host.AsSpan(offset, length), channels);
                    offset += length;
                }
                foreach (var index in updateLayers)
                {
                    deviceSums[index] = (host[offset], host[offset + 1], host[offset + 2]);
                    offset += 3;
                }
                if (_lossPack is not null) _loss = host[offset];
            }

            var gradients = new GradientSums?[layerCount];
            foreach (var (index, g) in _gradients)
            {
                var device = deviceSums.GetValueOrDefault(index);
                double update = hostUpdates[index] + device.Update;
                gradients[index] = new GradientSums(g.GradSquares + device.Grad, g.WeightSquares + device.Weight, update, g.Elements);
            }
            return PendingCapture.Completed(new StepCapture(step, _loss, [.. activations], [.. gradients]));
        }
        finally
        {
            // Every pack of the step is released whatever happened, so a failed step leaks nothing into the next.
            foreach (var t in all) t.Dispose();
            _activationPacks.Clear();
            _activations.Clear();
            foreach (var g in _gradients.Values) g.Dispose();
            _gradients.Clear();
            _lossPack = null;
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

    private static LayerSummary ParseActivationPack(ReadOnlySpan<double> pack, bool channels)
    {
        var s = new ActivationSummary
        {
            Count = (long)pack[0],
            FiniteCount = (long)pack[1],
            Pivot = pack[2],
            PivotedSum = pack[3],
            PivotedSumSquares = pack[4],
            Min = pack[1] > 0 ? pack[5] : double.NaN,
            Max = pack[1] > 0 ? pack[6] : double.NaN,
            NearZero = (long)pack[7],
            Saturated = (long)pack[8],
            Nan = (long)pack[9],
            Inf = (long)pack[10],
            ChannelSquaredMean = channels ? pack[11] : null,
            ChannelVariance = channels ? pack[12] : null,
            Units = (long)pack[13],
            DeadUnits = (long)pack[14],
        };
        var sampled = pack[ActivationScalars..];
        var values = ImmutableArray.CreateBuilder<float>(sampled.Length);
        foreach (var v in sampled)
        {
            if (double.IsFinite(v)) values.Add((float)v);
        }
        return s.Freeze(values.DrainToImmutable());
    }

    /// <inheritdoc />
    public void Dispose()
    {
        DiscardActivations();
        foreach (var g in _gradients.Values) g.Dispose();
        _gradients.Clear();
        foreach (var b in _buffers.Values) b.Dispose();
        _buffers.Clear();
        _lossPack?.Dispose();
        _lossPack = null;
        foreach (var s in new[] { _zero, _one, _positiveInfinity, _negativeInfinity, _nearZero }) s.Dispose();
    }
}
