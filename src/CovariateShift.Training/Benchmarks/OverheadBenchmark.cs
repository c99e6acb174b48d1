using System.Diagnostics;
using CovariateShift.Nn.Models;
using CovariateShift.Nn.Normalization;
using CovariateShift.Training.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Training.Benchmarks;

/// <summary>
/// Measures the monitor's cost in a real training loop: step time with the monitor attached (activation statistics,
/// shift metrics, <c>RecordGradients</c> and <c>Step(loss)</c>, in-memory output) divided by step time without it.
/// Protocol: warm-up, then <c>repeats</c> A/B pairs in one process, each pair one block of plain steps and one block of
/// monitored steps on the same model, optimizer and batches, the order alternating (AB, BA, ...) to cancel drift; the
/// monitor is attached before its block (followed by one untimed recording cycle) and disposed after it; attach, the
/// untimed cycle and dispose are not timed. The result is the median
/// of the per-pair ratios. Blocks are whole multiples of <c>recordEvery</c>, so every block records the same share of steps.
/// </summary>
public sealed class OverheadBenchmark
{
    /// <summary>Models the benchmark knows.</summary>
    public static IReadOnlyList<string> Models { get; } = ["mlp", "cnn"];

    /// <summary>
    /// The benchmark models: "mlp" = 8 hidden layers of 256 ReLU units, He init, no normalization (17 hooked layers);
    /// "cnn" = 4 conv layers (32/64/128/256 channels, batch norm, ReLU, max-pooling) + global average pool + head
    /// (14 hooked layers). Both take 1x28x28 Fashion-MNIST images.
    /// </summary>
    public static ModelSpec SpecFor(string model) => model switch
    {
        "mlp" => new ModelSpec { Architecture = "mlp", InputShape = [1, 28, 28], Depth = 8, Width = 256, Activation = ActivationKind.Relu, Init = WeightInit.Parse("he"), Norm = NormKind.None },
        "cnn" => new ModelSpec { Architecture = "cnn", InputShape = [1, 28, 28], Depth = 4, Width = 32, Activation = ActivationKind.Relu, Init = WeightInit.Parse("he"), Norm = NormKind.Batch },
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

    /// <summary>Runs one configuration.</summary>
    /// <param name="model">mlp or cnn.</param>
    /// <param name="recordEvery">The monitor's RecordEvery.</param>
    /// <param name="repeats">A/B pairs (at least 1).</param>
    /// <param name="blockSteps">Timed steps per block; rounded up to a multiple of <paramref name="recordEvery"/>.</param>
    /// <param name="warmupSteps">Untimed steps before the first pair (plain, then monitored).</param>
    public OverheadResult Run(string model, int recordEvery, int repeats, int blockSteps, int warmupSteps)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(recordEvery, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(repeats, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSteps, 1);
        blockSteps = (blockSteps + recordEvery - 1) / recordEvery * recordEvery;

        torch.manual_seed(0);
        using var net = ModelZoo.Create(SpecFor(model));
        net.to(_device);
        net.train();
        using var optimizer = optim.SGD(net.parameters(), 0.01, momentum: 0.9);
        var batches = PrepareBatches(8);
        int cursor = 0;

        double Block(ActivationMonitor? monitor, int steps)
        {
            Synchronize();
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < steps; i++)
            {
                var (x, y) = batches[cursor++ % batches.Count];
                using var scope = NewDisposeScope();
                optimizer.zero_grad();
                var loss = nn.functional.cross_entropy(net.call(x), y);
                loss.backward();
                monitor?.RecordGradients();
                optimizer.step();
                monitor?.Step(loss);
            }
            Synchronize();
            return sw.Elapsed.TotalMilliseconds / steps;
        }

        double Monitored(int steps)
        {
            using var monitor = ActivationMonitor.Attach(net, new MonitorOptions { RecordEvery = recordEvery });
            // One untimed recording cycle first: the first record of a fresh monitor allocates its buffers and fixes
            // histogram ranges, a once-per-run cost that a long run never sees again. The timed block then starts on a
            // recorded step and holds exactly steps / recordEvery records.
            Block(monitor, recordEvery);
            return Block(monitor, steps);
        }

        try
        {
            Block(null, warmupSteps);
            Monitored(Math.Max(warmupSteps, recordEvery));
            var ratios = new List<double>();
            var plain = new List<double>();
            var monitored = new List<double>();
            for (int r = 0; r < repeats; r++)
            {
                double a, b;
                if (r % 2 == 0)
                {
                    a = Block(null, blockSteps);
                    b = Monitored(blockSteps);
                }
                else
                {
                    b = Monitored(blockSteps);
                    a = Block(null, blockSteps);
                }
                plain.Add(a);
                monitored.Add(b);
                ratios.Add(b / a);
                _progress?.Invoke($"{model} record-every {recordEvery}: pair {r + 1}/{repeats}: plain {a:F2} ms/step, monitored {b:F2} ms/step, ratio {b / a:F3}");
            }
            return new OverheadResult(model, recordEvery, Median(ratios), Median(plain), Median(monitored), repeats, blockSteps, ratios.Min(), ratios.Max());
        }
        finally
        {
            foreach (var (x, y) in batches)
            {
                x.Dispose();
                y.Dispose();
            }
        }
    }

    private List<(Tensor X, Tensor Y)> PrepareBatches(int count)
    {
        var list = new List<(Tensor, Tensor)>();
        using var gen = new Generator(0);
        using var scope = NewDisposeScope();
        foreach (var (x, y) in _data.Batches(_batchSize, gen))
        {
            list.Add((x.to(_device).DetachFromDisposeScope(), y.to(_device).DetachFromDisposeScope()));
            if (list.Count == count) break;
        }
        return list;
    }

    private void Synchronize()
    {
        if (_device.type == DeviceType.CUDA) cuda.synchronize();
    }

    private static double Median(List<double> values)
    {
        var s = values.OrderBy(v => v).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}
