using System.Diagnostics;
using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using CovariateShift.Training.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Benchmarks;

/// <summary>
/// Measures the monitor's cost in a real training loop: step time with the monitor attached (activation statistics,
/// shift metrics and <c>Step(loss)</c>, optionally <c>RecordGradients</c>; in-memory output) divided by step time without it.
/// Protocol: two copies of the model with the same initialization, the same optimizer settings and the same batches,
/// the monitor attached to one of them (steady state, no attach/dispose inside the timing). After a warm-up of both,
/// A/B pairs alternate short blocks between the plain and the monitored copy, the order flipping every pair
/// (AB, BA, ...) so slow drifts of the machine hit both sides alike; half-way the copies swap roles (the monitor moves
/// to the other copy, then both warm up again) so a speed difference between the copies themselves cancels. A block is a whole number of
/// recording cycles (a multiple of <c>recordEvery</c> steps), so each monitored block holds the same share of recorded
/// steps as a long run. The result is the median over pairs of (monitored block time / plain block time).
/// <para>Next to it, the monitor's own figure: in every monitored block, the monitor's self-timed time
/// (<see cref="ActivationMonitor.MonitorTime"/>) divided by the block's wall time, and the ratio it implies,
/// 1 / (1 - share), and where that time went (<see cref="ActivationMonitor.MonitorTimeByPart"/>, per step). When the median's 95% notch (1.58 IQR / sqrt(pairs), McGill et al.) is wider than the margin the caller
/// gives, the protocol is repeated (a fresh monitor, both halves again) until it is not, or the pair limit is reached.</para>
/// </summary>
public sealed class OverheadBenchmark
{
    /// <summary>Models the benchmark knows.</summary>
    public static IReadOnlyList<string> Models { get; } = ["mlp", "cnn", "resnet20"];

    /// <summary>
    /// The benchmark models: "mlp" = 8 hidden layers of 256 ReLU units, He init, no normalization (17 hooked layers);
    /// "cnn" = 4 conv layers (32/64/128/256 channels, batch norm, ReLU, max-pooling) + global average pool + head
    /// (17 hooked layers). Both take 1x28x28 Fashion-MNIST images. "resnet20" = the CIFAR ResNet-20 (n = 3, batch norm,
    /// 60 hooked layers) on Fashion-MNIST images zero-padded to 1x32x32 (the shape of PyTorch peer's ResNet-20).
    /// </summary>
    public static ModelSpec SpecFor(string model) => model switch
    {
        "mlp" => new ModelSpec { Architecture = "mlp", InputShape = [1, 28, 28], Depth = 8, Width = 256, Activation = ActivationKind.Relu, Init = WeightInit.Parse("he"), Norm = NormKind.None },
        "cnn" => new ModelSpec { Architecture = "cnn", InputShape = [1, 28, 28], Depth = 4, Width = 32, Activation = ActivationKind.Relu, Init = WeightInit.Parse("he"), Norm = NormKind.Batch },
        "resnet20" => new ModelSpec { Architecture = "resnet20", InputShape = [1, 32, 32], Activation = ActivationKind.Relu, Init = WeightInit.Parse("he"), Norm = NormKind.Batch },
        _ => throw new ArgumentException($"Unknown benchmark model '{model}'; expected one of: {string.Join(", ", Models)}."),
    };

    private readonly Device _device;
    private readonly ImageDataset _data;
    private readonly int _batchSize;
    private readonly Action<string>? _progress;

    /// <summary>Benchmarks on <paramref name="device"/> with batches of <paramref name="batchSize"/> drawn from <paramref name="data"/>.</summary>
    public OverheadBenchmark(Device device, ImageDataset data, int batchSize, Action<string>? progress = null)
    {
        if (batchSize <= 0 || batchSize > data.Count)
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, $"Batch size must be in 1..{data.Count}.");
        _device = device;
        _data = data;
        _batchSize = batchSize;
        _progress = progress;
    }

    /// <summary>The monitor's <see cref="MonitorOptions.SampleSize"/> in the monitored runs (at least 16). Default: the monitor's default.</summary>
    public int SampleSize { get; init; } = new MonitorOptions().SampleSize;

    /// <summary>Runs one configuration.</summary>
    /// <param name="model">mlp or cnn.</param>
    /// <param name="recordEvery">The monitor's RecordEvery.</param>
    /// <param name="pairs">A/B pairs (at least 1).</param>
    /// <param name="blockSteps">Timed steps per block; rounded up to a multiple of <paramref name="recordEvery"/>.</param>
    /// <param name="warmupCycles">Untimed recording cycles (of <paramref name="recordEvery"/> steps) of each copy before the
    /// first pair and after the copies swap. The monitor's per-record code runs once per cycle, so it needs a few dozen
    /// cycles before .NET's tiered JIT has compiled it for good; without them, the JIT's background work lands inside
    /// the timed blocks of rarely recording runs.</param>
    /// <param name="gradients">Also call <c>RecordGradients()</c> every step (gradient norms, parameter snapshot, update size).</param>
    /// <param name="engine">The monitor's statistics engine (Device measures the device engine on CPU tensors too).</param>
    /// <param name="overheadBudget">The monitor's <see cref="MonitorOptions.OverheadBudget"/> (null: a fixed interval).</param>
    /// <param name="margin">Repeat the protocol while the median ratio's 95% notch half-width is above this (null: never).</param>
    /// <param name="maxPairs">The most pairs when repeating (at least <paramref name="pairs"/>).</param>
    public OverheadResult Run(string model, int recordEvery, int pairs, int blockSteps, int warmupCycles, bool gradients = true,
        StatisticsEngineKind engine = StatisticsEngineKind.Auto, double? overheadBudget = null, double? margin = null, int maxPairs = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(recordEvery, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(pairs, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSteps, 1);
        blockSteps = RoundUp(blockSteps, recordEvery);
        int warmupSteps = Math.Max(1, warmupCycles) * recordEvery;

        var batches = PrepareBatches(8, pad: model == "resnet20" ? 2 : 0);
        var copies = new (nn.Module<Tensor, Tensor> Net, optim.Optimizer Optimizer)[2];
        var cursors = new int[2];
        for (int c = 0; c < 2; c++)
        {
            torch.manual_seed(0);
            var net = ModelZoo.Create(SpecFor(model));
            net.to(_device).train();
            copies[c] = (net, optim.SGD(net.parameters(), 0.01, momentum: 0.9));
        }

        double selfShare = 0, selfMs = 0;
        double[] selfParts = new double[Enum.GetValues<MonitorPart>().Length];
        double Block(int copy, ActivationMonitor? m, int steps)
        {
            var (net, optimizer) = copies[copy];
            Synchronize();
            var own = m?.MonitorTime ?? TimeSpan.Zero;
            var ownParts = m?.MonitorTimeByPart;
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < steps; i++)
            {
                var (x, y) = batches[cursors[copy]++ % batches.Count];
                using var scope = NewDisposeScope();
                optimizer.zero_grad();
                var loss = nn.functional.cross_entropy(net.call(x), y);
                loss.backward();
                if (gradients) m?.RecordGradients();
                optimizer.step();
                m?.Step(loss);
            }
            Synchronize();
            if (m is not null)
            {
                double mine = (m.MonitorTime - own).TotalMilliseconds;
                selfShare = mine / sw.Elapsed.TotalMilliseconds;
                selfMs = mine / steps;
                var parts = m.MonitorTimeByPart.Since(ownParts!);
                foreach (var (part, time) in parts.Parts) selfParts[(int)part] = time.TotalMilliseconds / steps;
            }
            return sw.Elapsed.TotalMilliseconds / steps;
        }

        ActivationMonitor? monitor = null;
        try
        {
            var ratios = new List<double>();
            var plain = new List<double>();
            var monitored = new List<double>();
            var shares = new List<double>();
            var selfTimes = new List<double>();
            var partTimes = Enum.GetValues<MonitorPart>().Select(_ => new List<double>()).ToArray();
            var intervals = new List<int>();
            int minInterval = int.MaxValue, maxInterval = 0;
            void Seen(int interval)
            {
                minInterval = Math.Min(minInterval, interval);
                maxInterval = Math.Max(maxInterval, interval);
            }
            maxPairs = Math.Max(maxPairs, pairs);
            // The copies swap roles half-way, so a speed difference between the two copies themselves (memory placement)
            // cancels out of the median.
            for (int half = 0; ; half++)
            {
                if (half % 2 == 0 && half > 0 && !(margin is { } m && Notch(ratios) > m && ratios.Count + pairs <= maxPairs)) break;
                int monitoredCopy = half % 2, plainCopy = 1 - monitoredCopy;
                monitor = ActivationMonitor.Attach(copies[monitoredCopy].Net, new MonitorOptions { RecordEvery = recordEvery, Engine = engine, OverheadBudget = overheadBudget, SampleSize = SampleSize });
                Block(plainCopy, null, warmupSteps);
                Block(monitoredCopy, monitor, warmupSteps);
                int count = half % 2 == 0 ? pairs / 2 : pairs - pairs / 2;
                for (int r = 0; r < count; r++)
                {
                    double a, b;
                    Seen(monitor.CurrentRecordEvery);
                    if (r % 2 == 0)
                    {
                        a = Block(plainCopy, null, blockSteps);
                        b = Block(monitoredCopy, monitor, blockSteps);
                    }
                    else
                    {
                        b = Block(monitoredCopy, monitor, blockSteps);
                        a = Block(plainCopy, null, blockSteps);
                    }
                    Seen(monitor.CurrentRecordEvery);
                    plain.Add(a);
                    monitored.Add(b);
                    ratios.Add(b / a);
                    shares.Add(selfShare);
                    selfTimes.Add(selfMs);
                    for (int p = 0; p < partTimes.Length; p++) partTimes[p].Add(selfParts[p]);
                }
                intervals.Add(monitor.CurrentRecordEvery);
                monitor.Dispose();
                monitor = null;
                _progress?.Invoke($"{model} record-every {recordEvery}{(gradients ? " +gradients" : "")}{(overheadBudget is { } ob ? $" budget {ob}" : "")}: {ratios.Count} pairs, median ratio so far {Median(ratios):F3} (notch +-{Notch(ratios):F3}), self-timed share {Median(shares):P2} ({Median(selfTimes):F3} ms per step)");
            }
            return new OverheadResult(model, recordEvery, gradients, Median(ratios), Median(plain), Median(monitored), ratios.Count, blockSteps,
                Quantile(ratios, 0.25), Quantile(ratios, 0.75))
            {
                SelfTimedShare = Median(shares),
                SelfTimedShareQ1 = Quantile(shares, 0.25),
                SelfTimedShareQ3 = Quantile(shares, 0.75),
                SelfTimedMs = Median(selfTimes),
                SelfTimedPartsMs = Enum.GetValues<MonitorPart>().ToDictionary(p => p, p => Median(partTimes[(int)p])),
                OverheadBudget = overheadBudget,
                FinalRecordEvery = intervals[^1],
                MinRecordEvery = minInterval,
                MaxRecordEvery = maxInterval,
                Notch = Notch(ratios),
            };
        }
        finally
        {
            monitor?.Dispose();
            foreach (var (net, optimizer) in copies)
            {
                optimizer.Dispose();
                net.Dispose();
            }
            foreach (var (x, y) in batches)
            {
                x.Dispose();
                y.Dispose();
            }
        }
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>Batches moved to the device once (resident there for the whole run), images zero-padded by <paramref name="pad"/> pixels per side.</summary>
    private List<(Tensor X, Tensor Y)> PrepareBatches(int count, int pad)
    {
        var list = new List<(Tensor, Tensor)>();
        using var gen = new Generator(0);
        using var scope = NewDisposeScope();
        foreach (var (x, y) in _data.Batches(_batchSize, gen))
        {
            var images = pad > 0 ? nn.functional.pad(x, [pad, pad, pad, pad]) : x;
            list.Add((images.to(_device).DetachFromDisposeScope(), y.to(_device).DetachFromDisposeScope()));
            if (list.Count == count) break;
        }
        return list;
    }

    private void Synchronize()
    {
        if (_device.type == DeviceType.CUDA) cuda.synchronize();
    }

    private static double Median(List<double> values) => Quantile(values, 0.5);

    /// <summary>Half-width of the median's 95% notch: 1.58 IQR / sqrt(n) (McGill, Tukey and Larsen 1978).</summary>
    private static double Notch(List<double> values) =>
        values.Count < 2 ? double.PositiveInfinity : 1.58 * (Quantile(values, 0.75) - Quantile(values, 0.25)) / Math.Sqrt(values.Count);

    /// <summary>Linear-interpolation quantile (numpy's default); NaN for no values (the first half of a 1-pair run).</summary>
    private static double Quantile(List<double> values, double q)
    {
        if (values.Count == 0) return double.NaN;
        var s = values.OrderBy(v => v).ToArray();
        double h = (s.Length - 1) * q;
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, s.Length - 1);
        return s[lo] + (h - lo) * (s[hi] - s[lo]);
    }
}
