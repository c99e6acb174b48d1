using System.Globalization;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Reports.Tests;

/// <summary>A fresh directory under the system temp path, deleted on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "covariate-shift-report-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Sub(string name)
    {
        var p = System.IO.Path.Combine(Path, name);
        Directory.CreateDirectory(p);
        return p;
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

internal static class Runs
{
    /// <summary>
    /// A real monitored run: a small MLP (optionally with batch norm) trained on synthetic data with the monitor writing
    /// metrics.jsonl into <paramref name="dir"/>. Returns the records the monitor produced (the independent truth).
    /// </summary>
    public static List<Records.StepRecord> Train(string dir, bool batchNorm, int steps = 40, int recordEvery = 2, int seed = 0)
    {
        torch.manual_seed(seed);
        var layers = new List<(string, nn.Module<Tensor, Tensor>)> { ("fc1", nn.Linear(8, 16)) };
        if (batchNorm) layers.Add(("bn1", nn.BatchNorm1d(16)));
        layers.Add(("act1", nn.ReLU()));
        layers.Add(("fc2", nn.Linear(16, 3)));
        using var model = nn.Sequential(layers.ToArray());
        using var opt = optim.SGD(model.parameters(), 0.1, 0.9);
        var records = new List<Records.StepRecord>();
        using (var monitor = ActivationMonitor.Attach(model, new MonitorOptions { RecordEvery = recordEvery, JsonLinesPath = System.IO.Path.Combine(dir, "metrics.jsonl"), JsonLinesHistogramEvery = 1 }))
        {
            for (int s = 0; s < steps; s++)
            {
                using var scope = NewDisposeScope();
                var x = randn(32, 8) * 2 + 0.5;
                var y = (x[.., 0] > 0).to_type(ScalarType.Int64) + (x[.., 1] > 0).to_type(ScalarType.Int64);
                opt.zero_grad();
                var loss = nn.functional.cross_entropy(model.call(x), y);
                loss.backward();
                monitor.RecordGradients();
                opt.step();
                if (monitor.Step(loss) is { } r) records.Add(r);
            }
        }
        return records;
    }

    /// <summary>
    /// A real monitored run that diverges: a 3-layer MLP without normalization whose SGD learning rate grows by
    /// <paramref name="growth"/> per step, recorded every step with the divergence forecaster on. Writes metrics.jsonl,
    /// log.clef (the CLI's <see cref="Cli.Commands.ClefFileSink"/> behind the monitor's Serilog sink) and, unless
    /// <paramref name="forecastFile"/> is false, forecast.jsonl through <see cref="Forecast.ForecastFile.Line"/> (as the
    /// trainer writes it). Stops at the first non-finite loss. Returns the records (the independent truth).
    /// </summary>
    public static List<Records.StepRecord> Diverging(string dir, bool forecastFile = true, int steps = 120, double lr = 0.02, double growth = 1.08)
    {
        torch.manual_seed(1);
        using var model = nn.Sequential(("fc1", nn.Linear(8, 32)), ("act1", nn.ReLU()), ("fc2", nn.Linear(32, 32)), ("act2", nn.ReLU()), ("fc3", nn.Linear(32, 3)));
        using var opt = optim.SGD(model.parameters(), lr, 0.9);
        var records = new List<Records.StepRecord>();
        using var clef = new Cli.Commands.ClefFileSink(System.IO.Path.Combine(dir, "log.clef"));
        using var log = new Serilog.LoggerConfiguration().MinimumLevel.Information().WriteTo.Sink(clef).CreateLogger();
        using var forecasts = forecastFile ? File.Create(System.IO.Path.Combine(dir, Forecast.ForecastFile.FileName)) : null;
        using (var monitor = ActivationMonitor.Attach(model, new MonitorOptions
        {
            RecordEvery = 1, JsonLinesPath = System.IO.Path.Combine(dir, "metrics.jsonl"), Logger = log, Forecast = new Forecast.ForecastOptions(),
        }))
        {
            for (int s = 0; s < steps; s++)
            {
                using var scope = NewDisposeScope();
                foreach (var g in opt.ParamGroups) g.LearningRate = lr * Math.Pow(growth, s);
                var x = randn(32, 8) * 2 + 0.5;
                var y = (x[.., 0] > 0).to_type(ScalarType.Int64) + (x[.., 1] > 0).to_type(ScalarType.Int64);
                opt.zero_grad();
                var loss = nn.functional.cross_entropy(model.call(x), y);
                loss.backward();
                monitor.RecordGradients();
                opt.step();
                if (monitor.Step(loss) is not { } r) continue;
                records.Add(r);
                foreach (var a in r.Anomalies)
                {
                    if (a.Forecast is { } f) forecasts?.Write(Forecast.ForecastFile.Line(f with { Step = a.Step }));
                }
                if (r.Loss is { } l && !double.IsFinite(l)) break;
            }
        }
        return records;
    }

    /// <summary>
    /// Writes a metrics.jsonl of <paramref name="layers"/> x <paramref name="steps"/> synthetic records (Gaussian-shaped
    /// histograms on every line, drifting means) through the monitor's own writer, <see cref="Sinks.JsonLinesSink"/>:
    /// the file has exactly the format a monitor writes, only the numbers are made up (a real run of this size would
    /// take hours).
    /// </summary>
    public static void Synthetic(string dir, int layers, int steps, int seed, int bins = 64)
    {
        var rng = new Random(seed);
        using var sink = new Sinks.JsonLinesSink(System.IO.Path.Combine(dir, "metrics.jsonl"), histogramEvery: 1);
        var counts = new long[bins + 2];
        for (int s = 0; s < steps; s++)
        {
            var records = new List<Records.LayerRecord>(layers);
            for (int l = 0; l < layers; l++)
            {
                double mean = 0.1 * l + 0.001 * s * (seed + 1), std = 1 + 0.05 * l + rng.NextDouble() * 0.01;
                // A Gaussian's expected bin counts (2048 samples) from its CDF: the same shape a monitor would record.
                for (int b = 0; b < counts.Length; b++)
                {
                    double lo = b == 0 ? double.NegativeInfinity : -5 + (b - 1) * 10.0 / bins, hi = b == bins + 1 ? double.PositiveInfinity : -5 + b * 10.0 / bins;
                    counts[b] = (long)Math.Round(2048 * (Phi((hi - mean) / std) - Phi((lo - mean) / std)));
                }
                var statistics = new Records.LayerStatistics
                {
                    Count = 32768, Mean = mean, Std = std, Min = mean - 4 * std, Max = mean + 4 * std, P15 = mean - std, P50 = mean, P85 = mean + std,
                    NearZeroFraction = 0.04, DeadUnitFraction = 0, Histogram = new Records.Histogram(-5, 5, [.. counts]),
                };
                var shift = s == 0 ? null : new Records.ShiftMetrics(0.001 * (seed + 1), 1 + rng.NextDouble() * 0.01, 0.03 + rng.NextDouble() * 0.01, 0.011, 0.02);
                records.Add(new Records.LayerRecord(s * 10L, $"layers.{l}.act", "ReLU", statistics, shift, null, new Records.GradientStatistics(0.1 / (l + 1), 3.2, 0.03 / (l + 1), 0.001, 1000)));
            }
            sink.Write(new Records.StepRecord(s * 10L, 2.3 - s * 1e-4, records, []) { StepsSincePrevious = s == 0 ? null : 10 });
        }
    }

    private static double Phi(double z)
    {
        if (double.IsNegativeInfinity(z)) return 0;
        if (double.IsPositiveInfinity(z)) return 1;
        // Abramowitz & Stegun 7.1.26 for erf.
        double x = Math.Abs(z) / Math.Sqrt(2), t = 1 / (1 + 0.3275911 * x);
        double erf = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.Exp(-x * x);
        return z >= 0 ? 0.5 * (1 + erf) : 0.5 * (1 - erf);
    }
}
