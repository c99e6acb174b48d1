using System.Runtime.InteropServices;
using CovariateShift.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Statistics;

/// <summary>
/// Computes the raw reductions of activations and gradients where the tensors live.
/// <para>CPU float32 tensors (engine <see cref="StatisticsEngineKind.Auto"/>): one vectorized pass over the tensor's own
/// memory in the hook (<see cref="CpuKernel"/>); nothing is copied and no tensor is kept.</para>
/// <para>Other tensors (CUDA, other dtypes, or engine <see cref="StatisticsEngineKind.Device"/>): TorchSharp operations
/// on the tensor's device, under no_grad on detached data, each producing one small float64 "pack" tensor that this
/// engine owns until <see cref="Collect"/>, where all packs of the step are concatenated and copied to the host in a
/// single transfer.</para>
/// </summary>
internal sealed class StatisticsEngine : IDisposable
{
    /// <summary>Scalars at the head of an activation pack, followed by the sampled values.</summary>
    private const int ActivationScalars = 15;

    private readonly MonitorOptions _options;
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

    /// <summary>Number of device-to-host transfers made so far (diagnostics and tests).</summary>
    public int HostTransfers { get; private set; }

    /// <summary>Loss of the step collected last.</summary>
    public double? Loss => _loss;

    /// <summary>TorchSharp's Device has no value equality (and Tensor.device makes a new object per call).</summary>
    internal static bool SameDevice(Device a, Device b) => a.type == b.type && a.index == b.index;

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
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = output.detach();
        if (UseCpuKernel(x))
        {
            x = x.contiguous();
            layer.Pending = SummarizeOnCpu(layer, MemoryMarshal.Cast<byte, float>(x.bytes), x);
            return;
        }
        bool channels = x.dim() == 4;
        var pack = DeviceActivationPack(layer, x, channels);
        _activationPacks.Add((layer, pack.DetachFromDisposeScope(), channels));
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

    private Tensor DeviceActivationPack(MonitoredLayer layer, Tensor x, bool channels)
    {
        var dev = x.device;
        Tensor Value(double v) => tensor(v, ScalarType.Float64, dev);
        var x64 = x.to_type(ScalarType.Float64);
        var flat = x64.reshape(-1);
        var finite = flat.isfinite();
        var notFinite = finite.logical_not();
        var first = flat[0];
        var shift = where(first.isfinite(), first, zeros_like(first));
        var d = (flat - shift).masked_fill(notFinite, _zero);
        var notNear = flat.abs().le(_nearZero).logical_not();          // NaN counts as not near zero
        long[] unitShape = x.dim() >= 2 ? [x.shape[0], x.shape[1], -1] : [1, 1, -1];
        var activePerUnit = notNear.reshape(unitShape).sum([0L, 2L]);
        var parts = new List<Tensor>
        {
            Value(flat.numel()),
            finite.sum().to_type(ScalarType.Float64),
            shift,
            d.sum(),
            d.square().sum(),
            flat.masked_fill(notFinite, _positiveInfinity).min(),
            flat.masked_fill(notFinite, _negativeInfinity).max(),
            Value(flat.numel()) - notNear.sum().to_type(ScalarType.Float64),
        };
        if (layer.Saturation is { } sat)
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
            // Per channel over (N, H, W), reusing the shifted, masked values (float64, so one shared shift is exact enough).
            long[] dims = [0, 2, 3];
            var d4 = d.view(x.shape);
            var nC = finite.view(x.shape).sum(dims).to_type(ScalarType.Float64);
            var valid = nC.gt(_zero);
            var invalid = valid.logical_not();
            var safeN = nC.clamp_min(_one);
            var mC = d4.sum(dims) / safeN;
            var meanC = mC + shift;
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
        var positions = layer.DevicePositions(flat.numel(), _options.SampleSize, _options.Seed, dev);
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
                    var buffer = layer.SnapshotBuffer(capture.HostSnapshots.Count, w.Length);
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
            layer.PendingGradients?.Dispose();
            layer.PendingGradients = capture;
        }
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

    /// <summary>
    /// Finishes the step: measures the optimizer's update for captured gradients, then copies every device pack to
    /// the host in one transfer and turns them into <see cref="ActivationSummary"/> / gradient values on the layers.
    /// </summary>
    public void Collect(IReadOnlyList<MonitoredLayer> layers)
    {
        var all = new List<Tensor>(_activationPacks.Select(a => a.Pack));
        try
        {
            var captures = layers.Select(l => l.PendingGradients).OfType<GradientCapture>().ToList();
            foreach (var c in captures) c.UpdateSquares = HostUpdateSquares(c);

            var updateLayers = new List<MonitoredLayer>();
            using (var scope = NewDisposeScope())
            using (var noGrad = no_grad())
            {
                foreach (var layer in layers)
                {
                    var g = layer.PendingGradients;
                    if (g?.DevicePack is null) continue;
                    var parts = g.DeviceSnapshots.Select(s => (s.Parameter.detach().to_type(ScalarType.Float64) - s.Values.to_type(ScalarType.Float64)).square().sum()).ToList();
                    var update = parts.Count > 0 ? stack(parts).sum().reshape(1) : zeros(1, dtype: ScalarType.Float64, device: g.DevicePack.device);
                    all.Add(cat([g.DevicePack, update]).DetachFromDisposeScope());
                    updateLayers.Add(layer);
                }
            }
            if (_lossPack is not null) all.Add(_lossPack);
            if (all.Count == 0) return;

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
                layer.Pending = ParseActivationPack(host.AsSpan(offset, length), channels, layer);
                offset += length;
            }
            foreach (var layer in updateLayers)
            {
                var g = layer.PendingGradients!;
                g.GradSquares += host[offset];
                g.WeightSquares += host[offset + 1];
                g.UpdateSquares = (g.UpdateSquares ?? 0) + host[offset + 2];
                offset += 3;
            }
            if (_lossPack is not null) _loss = host[offset];
        }
        finally
        {
            // Every pack of the step is released whatever happened, so a failed step leaks nothing into the next.
            foreach (var t in all) t.Dispose();
            _activationPacks.Clear();
            _lossPack = null;
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

    /// <summary>Forgets the loss of the previous step (called when a new step starts).</summary>
    public void ResetLoss()
    {
        _loss = null;
        _lossPack?.Dispose();
        _lossPack = null;
    }

    private static ActivationSummary ParseActivationPack(ReadOnlySpan<double> pack, bool channels, MonitoredLayer layer)
    {
        var s = new ActivationSummary
        {
            Count = (long)pack[0],
            FiniteCount = (long)pack[1],
            Shift = pack[2],
            ShiftedSum = pack[3],
            ShiftedSumSquares = pack[4],
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
        s.Sample = layer.SampleBuffer(sampled.Length);
        foreach (var v in sampled)
            if (double.IsFinite(v)) s.Sample[s.SampleCount++] = (float)v;
        return s;
    }

    public void Dispose()
    {
        foreach (var (_, pack, _) in _activationPacks) pack.Dispose();
        _activationPacks.Clear();
        _lossPack?.Dispose();
        _lossPack = null;
        foreach (var s in new[] { _zero, _one, _positiveInfinity, _negativeInfinity, _nearZero }) s.Dispose();
    }
}
