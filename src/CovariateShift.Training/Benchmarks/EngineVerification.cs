using System.Globalization;
using CovariateShift.Records;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Benchmarks;

/// <summary>One compared statistic of <see cref="EngineVerification"/>.</summary>
/// <param name="Layer">The layer (test case) the statistic is of.</param>
/// <param name="Statistic">The statistic's name.</param>
/// <param name="Reference">The double-precision reference over every element (NaN where the statistic is sample-based).</param>
/// <param name="Cpu">The CPU kernel's value (activations on the CPU).</param>
/// <param name="Device">The device engine's value (activations on the device under test).</param>
/// <param name="Tolerance">What counts as equal, in words (e.g. "exact", "1e-5 relative").</param>
/// <param name="Passed">Whether both engines are within the tolerance.</param>
public sealed record VerificationRow(string Layer, string Statistic, double Reference, double Cpu, double Device, string Tolerance, bool Passed);

/// <summary>The outcome of <see cref="EngineVerification.Run"/>.</summary>
/// <param name="Device">The device the device engine ran on.</param>
/// <param name="Rows">Every compared statistic.</param>
public sealed record VerificationReport(string Device, IReadOnlyList<VerificationRow> Rows)
{
    /// <summary>Whether every statistic matched.</summary>
    public bool Passed => Rows.All(r => r.Passed);
}

/// <summary>
/// A self-check of the statistics engines on a new machine or GPU: fixed activations (made on the CPU from a seeded
/// generator: 2-D features, ReLU-like outputs with dead features, conv maps with large channel offsets and a tiny
/// spread, NaN / Inf / a silent channel, saturated tanh and sigmoid outputs, values whose squares overflow float32)
/// are replayed by a small model, once on the CPU through the CPU kernel (engine Auto) and once on the device under
/// test through the device engine (engine Device), with a linear layer's gradient, weights and update set to known
/// values. Every statistic is compared with a double-precision reference computed here from the same float32 values.
/// </summary>
public static class EngineVerification
{
    private const double MomentTolerance = 1e-5;

    /// <summary>Runs the check with the device engine on <paramref name="device"/>.</summary>
    /// <param name="device">Where the device engine runs (cpu or cuda).</param>
    /// <param name="deviceOptions">Options of the device engine's monitor (tests: a deliberate mismatch); Engine is set to Device.</param>
    public static VerificationReport Run(Device device, MonitorOptions? deviceOptions = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        var cases = Cases();
        var (weight, gradient, delta) = GradientCase();
        var cpuOptions = new MonitorOptions { SampleSize = 512 };
        var devOptions = (deviceOptions ?? cpuOptions) with { Engine = StatisticsEngineKind.Device };
        var cpu = Record(cases, weight, gradient, delta, torch.CPU, cpuOptions, out _);
        var dev = Record(cases, weight, gradient, delta, device, devOptions, out int transfers);

        var rows = new List<VerificationRow>();
        foreach (var (name, values) in cases)
        {
            var data = values.data<float>().ToArray();
            var shape = values.shape;
            var a = cpu.Layers.Single(l => l.Layer == name).Statistics!;
            var b = dev.Layers.Single(l => l.Layer == name).Statistics!;
            rows.AddRange(CompareActivations(name, data, shape, a, b));
        }
        var ga = cpu.Layers.Single(l => l.Layer == "grad").Gradients!;
        var gb = dev.Layers.Single(l => l.Layer == "grad").Gradients!;
        var w = weight.data<float>().ToArray();
        var g = gradient.data<float>().ToArray();
        var d = delta.data<float>().ToArray();
        double updated = 0;
        for (int i = 0; i < w.Length; i++)
        {
            double change = (double)(w[i] + d[i]) - w[i];   // the update as float32 makes it
            updated += change * change;
        }
        rows.Add(Relative("grad", "grad norm", Math.Sqrt(g.Sum(v => (double)v * v)), ga.GradNorm, gb.GradNorm));
        rows.Add(Relative("grad", "weight norm", Math.Sqrt(w.Sum(v => (double)v * v)), ga.WeightNorm, gb.WeightNorm));
        rows.Add(Relative("grad", "update norm", Math.Sqrt(updated), ga.UpdateNorm ?? double.NaN, gb.UpdateNorm ?? double.NaN));
        rows.Add(Exact("step", "loss", LossValue, cpu.Loss ?? double.NaN, dev.Loss ?? double.NaN));
        rows.Add(Exact("step", "host transfers per recorded step", 1, 1, transfers));
        return new VerificationReport(device.type.ToString().ToLowerInvariant(), rows);
    }

    private const float LossValue = 0.6931472f;

    private static List<(string Name, Tensor Values)> Cases()
    {
        using var gen = new Generator(20261127);
        var linear = randn([128, 256], generator: gen) * 1.2f + 0.3f;
        var relu = randn([128, 256], generator: gen).clamp_min(0);
        relu[.., ..20] = zeros(128, 20);                                  // 20 dead features
        var offsets = arange(16, ScalarType.Float32).reshape(1, 16, 1, 1) + 1000;
        var conv = randn([32, 16, 12, 12], generator: gen) * 0.01f + offsets;   // large offsets, tiny spread
        var bn = randn([32, 8, 7, 7], generator: gen);
        bn[.., 3] = zeros(32, 7, 7);                                       // a silent channel
        bn[0, 0, 0, 0] = tensor(float.NaN);                                // a chunk whose first value is NaN
        bn[5, 2, 3, 3] = tensor(float.PositiveInfinity);
        bn[9, 6, 6, 6] = tensor(float.NegativeInfinity);
        bn[17, 7] = bn[17, 7] * 1e20f;                                     // squares overflow float32
        var tanh = (randn([64, 100], generator: gen) * 3).tanh();
        var sigmoid = (randn([64, 100], generator: gen) * 4).sigmoid();
        var huge = randn([16, 64], generator: gen) * 1e20f;
        return [("linear", linear), ("relu", relu), ("conv", conv), ("bn", bn), ("tanh", tanh), ("sigmoid", sigmoid), ("huge", huge)];
    }

    private static (Tensor Weight, Tensor Gradient, Tensor Delta) GradientCase()
    {
        using var gen = new Generator(7);
        return (randn([32, 64], generator: gen) * 0.1f, randn([32, 64], generator: gen) * 1e-3f, randn([32, 64], generator: gen) * 1e-4f);
    }

    /// <summary>One recorded step of the replay model on <paramref name="device"/>; the record, and the host transfers it took.</summary>
    private static StepRecord Record(List<(string Name, Tensor Values)> cases, Tensor weight, Tensor gradient, Tensor delta,
        Device device, MonitorOptions options, out int transfers)
    {
        using var scope = NewDisposeScope();
        var layers = cases.Select(c => (c.Name, (nn.Module<Tensor, Tensor>)Replay.For(c.Name, c.Values.clone().to(device)))).ToList();
        var linear = nn.Linear(64, 32, device: device);
        layers.Add(("grad", linear));
        using var model = nn.Sequential(layers);
        model.train();
        using (no_grad())
        {
            linear.weight!.copy_(weight);
            linear.bias!.zero_();
        }
        using var monitor = ActivationMonitor.Attach(model, options);
        using (var forward = NewDisposeScope())
        {
            // The replay layers ignore their input; the linear layer is not called (its gradients are set directly).
            foreach (var (name, module) in layers.Take(cases.Count)) module.call(zeros(1, device: device));
        }
        linear.weight!.grad = gradient.to(device);
        linear.bias!.grad = zeros(32, device: device);
        monitor.RecordGradients();
        using (no_grad()) linear.weight!.add_(delta.to(device));
        var record = monitor.Step(tensor(LossValue, device: device)) ?? monitor.Flush();
        transfers = monitor.HostTransfers;
        return record ?? throw new InvalidOperationException($"The monitor produced no record on {device.type}.");
    }

    private static IEnumerable<VerificationRow> CompareActivations(string name, float[] data, long[] shape, LayerStatistics a, LayerStatistics b)
    {
        var finite = data.Where(float.IsFinite).Select(v => (double)v).ToArray();
        double mean = finite.Average();
        double std = Math.Sqrt(finite.Sum(v => (v - mean) * (v - mean)) / finite.Length);
        yield return Exact(name, "count", data.Length, a.Count, b.Count);
        yield return Exact(name, "nan count", data.Count(float.IsNaN), a.NanCount, b.NanCount);
        yield return Exact(name, "inf count", data.Count(float.IsInfinity), a.InfCount, b.InfCount);
        yield return Exact(name, "min", finite.Min(), a.Min, b.Min);
        yield return Exact(name, "max", finite.Max(), a.Max, b.Max);
        yield return Scaled(name, "mean", mean, a.Mean, b.Mean, Math.Abs(mean) + std, "1e-5 x (|mean| + std)");
        yield return Relative(name, "std", std, a.Std, b.Std);
        yield return Exact(name, "near-zero fraction", data.Count(v => Math.Abs(v) <= 0.05f) / (double)data.Length, a.NearZeroFraction, b.NearZeroFraction);

        long units = shape.Length >= 2 ? shape[1] : 1;
        long block = shape.Length >= 3 ? shape[2..].Aggregate(1L, (x, y) => x * y) : 1;
        long batch = shape.Length >= 2 ? shape[0] : 1;
        int dead = 0;
        var channelMeans = new List<double>();
        var channelVariances = new List<double>();
        for (long u = 0; u < units; u++)
        {
            var unit = new List<float>();
            for (long n = 0; n < batch; n++)
            {
                for (long j = 0; j < block; j++) unit.Add(data[(n * units + u) * block + j]);
            }
            if (unit.All(v => Math.Abs(v) <= 0.05f)) dead++;
            var f = unit.Where(float.IsFinite).Select(v => (double)v).ToArray();
            if (f.Length == 0) continue;
            double m = f.Average();
            channelMeans.Add(m);
            channelVariances.Add(f.Sum(v => (v - m) * (v - m)) / f.Length);
        }
        yield return Exact(name, "dead-unit fraction", dead / (double)units, a.DeadUnitFraction, b.DeadUnitFraction);
        if (name is "tanh" or "sigmoid")
        {
            var (lo, hi) = name == "tanh" ? (-0.98f, 0.98f) : (0.01f, 0.99f);
            yield return Exact(name, "saturated fraction", data.Count(v => v <= lo || v >= hi) / (double)data.Length, a.SaturatedFraction ?? double.NaN, b.SaturatedFraction ?? double.NaN);
        }
        if (shape.Length == 4)
        {
            double sq = channelMeans.Average(m => m * m), variance = channelVariances.Average();
            yield return Scaled(name, "channel squared mean", sq, a.ChannelSquaredMean ?? double.NaN, b.ChannelSquaredMean ?? double.NaN, sq + variance, "1e-5 x (squared mean + variance)");
            yield return Relative(name, "channel variance", variance, a.ChannelVariance ?? double.NaN, b.ChannelVariance ?? double.NaN);
        }
        // Sample-based statistics: both engines read the same stratified sample positions, so they must agree exactly.
        yield return Same(name, "p15", a.P15, b.P15);
        yield return Same(name, "p50", a.P50, b.P50);
        yield return Same(name, "p85", a.P85, b.P85);
        var (ha, hb) = (a.Histogram!, b.Histogram!);
        int differing = ha.Counts.Zip(hb.Counts).Count(p => p.First != p.Second) + (ha.Low == hb.Low && ha.High == hb.High ? 0 : 1);
        yield return new VerificationRow(name, "histogram bins differing", double.NaN, 0, differing, "device = CPU kernel", differing == 0);
    }

    private static VerificationRow Exact(string layer, string statistic, double reference, double cpu, double device) =>
        new(layer, statistic, reference, cpu, device, "exact", Equal(reference, cpu) && Equal(reference, device));

    private static VerificationRow Same(string layer, string statistic, double cpu, double device) =>
        new(layer, statistic, double.NaN, cpu, device, "device = CPU kernel", Equal(cpu, device));

    private static VerificationRow Relative(string layer, string statistic, double reference, double cpu, double device) =>
        Scaled(layer, statistic, reference, cpu, device, Math.Abs(reference), "1e-5 relative");

    private static VerificationRow Scaled(string layer, string statistic, double reference, double cpu, double device, double scale, string tolerance)
    {
        bool Close(double v) => Math.Abs(v - reference) <= MomentTolerance * scale;
        return new(layer, statistic, reference, cpu, device, tolerance, Close(cpu) && Close(device));
    }

    private static bool Equal(double a, double b) => a.Equals(b);

    /// <summary>The report as a Markdown table.</summary>
    public static string Format(VerificationReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var lines = new List<string>
        {
            "| layer | statistic | reference (double) | CPU kernel | device engine | tolerance | result |",
            "|---|---|---|---|---|---|---|",
        };
        foreach (var r in report.Rows)
        {
            lines.Add(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Layer} | {r.Statistic} | {(double.IsNaN(r.Reference) && r.Tolerance.StartsWith("device", StringComparison.Ordinal) ? "-" : r.Reference.ToString("G9", CultureInfo.InvariantCulture))} | {r.Cpu:G9} | {r.Device:G9} | {r.Tolerance} | {(r.Passed ? "pass" : "FAIL")} |"));
        }
        return string.Join(Environment.NewLine, lines);
    }

    /// <summary>Modules that return a fixed activation (a copy of it) whatever their input, so that both engines see exactly
    /// the same values; named after the layer types whose outputs they stand for (the monitor reads the type name for
    /// the saturation bounds of tanh and sigmoid).</summary>
    private static class Replay
    {
        public static nn.Module<Tensor, Tensor> For(string name, Tensor values) => name switch
        {
            "tanh" => new Tanh(values),
            "sigmoid" => new Sigmoid(values),
            _ => new Identity(values),
        };

#pragma warning disable IDE1006 // TorchSharp registers buffers under their field names
        private abstract class Fixed : nn.Module<Tensor, Tensor>
        {
            private readonly Tensor value;

            protected Fixed(string name, Tensor values)
                : base(name)
            {
                value = values.DetachFromDisposeScope();
            }

            public override Tensor forward(Tensor input) => value.clone();

            protected override void Dispose(bool disposing)
            {
                if (disposing) value.Dispose();
                base.Dispose(disposing);
            }
        }
#pragma warning restore IDE1006

        private sealed class Identity(Tensor values) : Fixed(nameof(Identity), values);

        private sealed class Tanh(Tensor values) : Fixed(nameof(Tanh), values);

        private sealed class Sigmoid(Tensor values) : Fixed(nameof(Sigmoid), values);
    }
}
