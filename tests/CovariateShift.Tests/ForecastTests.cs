using CovariateShift.Forecast;
using CovariateShift.Records;
using CovariateShift.Tests.Support;
using Serilog.Events;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>The divergence forecaster on synthetic record sequences with a known answer, and inside the monitor.</summary>
public sealed class ForecastTests
{
    /// <summary>A hand-made model (not the shipped one) so that the expected steps follow from the formula: one feature,
    /// update_ratio (EMA span 5 of the mean ln update-to-weight ratio), score >= 0.5 exactly when it is at least -4.</summary>
    private static readonly ForecastModel Rule = new()
    {
        Features = [ForecastFeatures.UpdateRatio], Means = [-4], Scales = [1], Weights = [1], Bias = 0, Threshold = 0.5, Patience = 3,
    };

    private static readonly ForecastOptions RuleOptions = new() { Model = Rule, WarmupRecords = 5, ClearAfter = 50, Horizon = 40 };

    private static LayerStatistics Stats(double mean, double std) => new()
    {
        Count = 100, Mean = mean, Std = std, Min = mean - 3 * std, Max = mean + 3 * std, P15 = mean - std, P50 = mean, P85 = mean + std,
        NearZeroFraction = 0, DeadUnitFraction = 0,
    };

    /// <summary>A record of three layers: stds scaled by <paramref name="scale"/>, gradient norms by <paramref name="gradScale"/>,
    /// update-to-weight ratios <paramref name="ratio"/> (both linear layers; weight norm 10), and the given loss.</summary>
    private static StepRecord Record(long step, double scale = 1, double gradScale = 1, double ratio = 0.004, double loss = 0.5)
    {
        var layers = new List<LayerRecord>
        {
            new(step, "fc0", "Linear", Stats(0.1, 1.0 * scale), null, null, new GradientStatistics(0.5 * gradScale, 10, 0.05 * gradScale, 10 * ratio, 100)),
            new(step, "fc1", "Linear", Stats(0.0, 2.0 * scale), null, null, new GradientStatistics(0.3 * gradScale, 10, 0.03 * gradScale, 10 * ratio, 100)),
            new(step, "act1", "ReLU", Stats(0.5, 0.7 * scale), null, null, null),
        };
        return new StepRecord(step, loss, layers, []);
    }

    [Fact]
    public void A_steadily_growing_update_ratio_warns_when_its_average_reaches_the_threshold()
    {
        // The update-to-weight ratio is e^-6 until record 20, then grows by 10% per record: ln rises r = ln 1.1 per record.
        // Its EMA (span 5, alpha 1/3) lags a steady rise by (1 - alpha) / alpha = 2 records, so it reaches -4 at record
        // t0 + 2 / r + 2, and the warning comes 2 records later (patience 3).
        var f = new DivergenceForecaster(RuleOptions);
        const int t0 = 20;
        double r = Math.Log(1.1);
        int expected = (int)Math.Ceiling(t0 + 2 / r + 2) + 2;
        DivergenceForecast? warning = null;
        for (int t = 0; t < 200 && warning is null; t++)
            warning = f.Observe(Record(t, ratio: Math.Exp(-6) * Math.Pow(1.1, Math.Max(0, t - t0))));
        Assert.NotNull(warning);
        Assert.InRange(warning.Step, expected - 1, expected + 1);
        Assert.Equal(40, warning.Horizon);
        Assert.True(warning.Score >= 0.5, $"score {warning.Score}");
        var top = Assert.Single(warning.Signals);   // the model has one feature
        Assert.Equal((DivergenceForecaster.AllLayers, ForecastFeatures.UpdateRatio), (top.Layer, top.Statistic));
        Assert.InRange(top.Growth, -4, -4 + 3 * r);
        Assert.Equal(top.Growth + 4, top.Contribution, 12);
    }

    [Fact]
    public void The_shipped_model_warns_on_a_growing_step_size_with_a_rising_loss_and_names_the_update_ratio()
    {
        // Noisy like a mini-batch run (the noise of the stable test below), stable at a small step (update-to-weight ratio
        // e^-6) for 50 records, then the ratio grows 5% per record and the loss 2% per record.
        var f = new DivergenceForecaster();
        var rng = new Random(5);
        DivergenceForecast? warning = null;
        int t = 0;
        for (; t < 400 && warning is null; t++)
        {
            int k = Math.Max(0, t - 50);
            warning = f.Observe(Record(t, Math.Exp(0.05 * Normal(rng)), gradScale: Math.Exp(0.2 * Normal(rng)),
                ratio: Math.Exp(-6 + 0.2 * Normal(rng)) * Math.Pow(1.05, k), loss: 0.5 * Math.Exp(0.1 * Normal(rng)) * Math.Pow(1.02, k)));
            if (t < 50) Assert.Null(warning);
        }
        Assert.NotNull(warning);
        Assert.True(warning.Score >= f.Options.Model.Threshold && warning.Score < 1, $"score {warning.Score}");
        Assert.True(warning.Signals.Take(3).Any(s => s.Statistic.StartsWith("update_ratio", StringComparison.Ordinal)), string.Join(", ", warning.Signals.Select(s => $"{s.Statistic} {s.Contribution:F2}")));
        Assert.All(warning.Signals, s => Assert.True(s.Contribution > 0));
        Assert.Equal(warning.Signals.OrderByDescending(s => s.Contribution).ToList(), warning.Signals);
        // The ratio is still far from where it started: ln ratio at the warning is well above -6.
        Assert.True(f.Features.Values[0] > -5, $"update_ratio {f.Features.Values[0]} at {warning.Step}: {string.Join(", ", warning.Signals.Select(s => $"{s.Statistic} {s.Growth:F2} {s.Contribution:F2}"))}");
    }

    public static TheoryData<string> Rules => ["fixed", "shipped"];

    [Theory]
    [MemberData(nameof(Rules))]
    public void A_single_noisy_spike_does_not_warn(string rule)
    {
        var f = new DivergenceForecaster(rule == "fixed" ? RuleOptions : new ForecastOptions());
        var rng = new Random(3);
        double peak = 0;
        for (int t = 0; t < 300; t++)
        {
            double noise = Math.Exp(0.05 * Normal(rng));
            bool spike = t == 150;   // one record: update ratio x300 (e^-5.5 -> e^0.2), activations and gradients x100, loss x10
            var warning = f.Observe(Record(t, noise * (spike ? 100 : 1), gradScale: spike ? 100 : 1, ratio: Math.Exp(-5.5) * (spike ? 300 : 1), loss: 0.5 * (spike ? 10 : 1)));
            Assert.Null(warning);
            if (t >= 150) peak = Math.Max(peak, f.Score);
        }
        if (rule == "fixed") Assert.True(peak >= 0.5, $"the spike itself scores above the threshold (peak {peak}); only the patience keeps it from warning");
        Assert.Equal(0, f.Warnings);
    }

    [Theory]
    [MemberData(nameof(Rules))]
    public void A_stable_noisy_run_never_warns_over_10000_records(string rule)
    {
        var f = new DivergenceForecaster(rule == "fixed" ? RuleOptions : new ForecastOptions());
        var rng = new Random(11);
        double max = 0;
        for (int t = 0; t < 10_000; t++)
        {
            var warning = f.Observe(Record(t, Math.Exp(0.05 * Normal(rng)), gradScale: Math.Exp(0.2 * Normal(rng)),
                ratio: Math.Exp(-5.5 + 0.2 * Normal(rng)), loss: 0.5 * Math.Exp(0.1 * Normal(rng))));
            Assert.Null(warning);
            max = Math.Max(max, f.Score);
        }
        Assert.Equal(0, f.Warnings);
        Assert.InRange(max, 1e-6, f.Options.Model.Threshold * 0.9);   // noise is seen, but stays below the threshold
    }

    [Fact]
    public void Warnings_come_once_per_episode_and_again_after_the_episode_cleared()
    {
        var f = new DivergenceForecaster(RuleOptions);
        var starts = new List<long>();
        long t = 0;
        void Run(int records, Func<int, double> ratio)
        {
            for (int i = 0; i < records; i++, t++)
            {
                if (f.Observe(Record(t, ratio: ratio(i))) is { } w) starts.Add(w.Step);
            }
        }
        Run(30, _ => Math.Exp(-6));
        Run(150, i => Math.Exp(-6) * Math.Pow(1.1, Math.Min(i, 40)));   // rises far past the threshold and stays there: one warning
        Assert.Single(starts);
        Assert.True(f.InEpisode);
        // Back to the baseline: the moving average falls below the threshold within a few records, and the episode
        // ends exactly at the 50th consecutive record below it.
        int below = 0;
        while (f.InEpisode)
        {
            Run(1, _ => Math.Exp(-6));
            below = f.Score < 0.5 ? below + 1 : 0;
            Assert.True(below <= 50, "the episode must end at the 50th record below the threshold");
            Assert.Equal(below < 50, f.InEpisode);
        }
        Assert.Equal(50, below);
        Assert.InRange(t, 30 + 150 + 50, 30 + 150 + 60);
        long second = t;
        Run(100, i => Math.Exp(-6) * Math.Pow(1.1, i));          // a second episode
        Assert.Equal(2, starts.Count);
        Assert.True(starts[1] > second, $"second warning at {starts[1]}, after {second}");
        Assert.Equal(2, f.Warnings);
    }

    [Theory]
    [InlineData(3)]     // inside the warm-up: the lowest levels are still +Infinity
    [InlineData(40)]    // while the update ratio rises, before the warning
    [InlineData(75)]    // inside the open episode: the resumed forecaster must not warn again
    public void A_forecaster_restored_from_its_saved_state_continues_exactly_like_one_that_never_stopped(int split)
    {
        // A rising update ratio with a noisy loss, read by the shipped model: scores and warnings of the straight forecaster
        // against one that saved its state at record `split` (through JSON, as a checkpoint stores it) and a fresh one that
        // imported it.
        var records = Enumerable.Range(0, 160).Select(t => Record(t, ratio: Math.Exp(-6) * Math.Pow(1.08, Math.Max(0, t - 20)),
            loss: 0.5 * (1 + 0.1 * Math.Sin(t)) * Math.Exp(0.01 * Math.Max(0, t - 50)))).ToList();
        var straight = new DivergenceForecaster();
        var expected = records.Select(r => (Warned: straight.Observe(r)?.Step, straight.Score)).ToList();
        Assert.Contains(expected, e => e.Warned is not null);

        var before = new DivergenceForecaster();
        foreach (var r in records.Take(split)) before.Observe(r);
        // The split is where its comment says (the data set up the phases).
        Assert.Equal(split == 3, !before.Features.Tracking);
        Assert.Equal(split == 75, before.InEpisode);
        Assert.Equal(split == 75 ? 1 : 0, before.Warnings);
        var json = System.Text.Json.JsonSerializer.Serialize(before.ExportState(), StateJson);
        var after = new DivergenceForecaster();
        after.ImportState(System.Text.Json.JsonSerializer.Deserialize<ForecastState>(json, StateJson)!);
        var actual = records.Skip(split).Select(r => (Warned: after.Observe(r)?.Step, after.Score)).ToList();
        Assert.Equal(expected.Skip(split), actual);
        Assert.Equal(straight.Warnings, after.Warnings);
        Assert.Equal(straight.InEpisode, after.InEpisode);
    }

    private static readonly System.Text.Json.JsonSerializerOptions StateJson = new()
    {
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    [Fact]
    public void A_state_of_another_version_is_refused_naming_what_it_holds()
    {
        var state = new DivergenceForecaster().ExportState();
        var wrong = state with { Features = state.Features with { Values = [1, 2, 3] } };
        var e = Assert.Throws<ArgumentException>(() => new DivergenceForecaster().ImportState(wrong));
        Assert.Contains("3 features", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_non_finite_loss_warns_at_once_and_names_it()
    {
        var f = new DivergenceForecaster(RuleOptions);
        for (int t = 0; t < 10; t++) Assert.Null(f.Observe(Record(t)));
        var w = f.Observe(Record(10, loss: double.NaN));
        Assert.NotNull(w);
        Assert.Equal(double.PositiveInfinity, w.Score);
        Assert.Equal((ForecastSignal.LossLayer, ForecastSignal.NonFinite), (w.Signals[0].Layer, w.Signals[0].Statistic));
    }

    [Fact]
    public void The_shipped_model_is_the_models_file_and_reads_back_from_its_json()
    {
        var m = ForecastModel.Default;
        Assert.Equal(ForecastFeatures.Names, m.Features);
        using var stream = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(m.ToJson()));
        Assert.Equal(m, ForecastModel.Read(stream, "memory"));
        using var bad = new MemoryStream("{\"features\": [\"nope\"], \"means\": [0], \"scales\": [1], \"weights\": [1]}"u8.ToArray());
        var e = Assert.Throws<InvalidDataException>(() => ForecastModel.Read(bad, "the test model"));
        Assert.Contains("unknown feature 'nope'", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Threshold", 1)]
    [InlineData("Patience", 0)]
    [InlineData("Weights", double.NaN)]
    [InlineData("Horizon", 0)]
    [InlineData("WarmupRecords", 0)]
    [InlineData("Features", 0)]
    public void Invalid_options_are_refused_at_attach_naming_the_value(string name, double value)
    {
        var options = name switch
        {
            "Threshold" => new ForecastOptions { Model = Rule with { Threshold = value } },
            "Patience" => new ForecastOptions { Model = Rule with { Patience = (int)value } },
            "Weights" => new ForecastOptions { Model = Rule with { Weights = [value] } },
            "WarmupRecords" => new ForecastOptions { WarmupRecords = (int)value },
            "Features" => new ForecastOptions { Model = Rule with { Means = [] } },
            _ => new ForecastOptions { Horizon = (int)value },
        };
        using var model = nn.Sequential(("fc", nn.Linear(4, 2)));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ActivationMonitor.Attach(model, new MonitorOptions { Forecast = options }));
        Assert.Equal(name, e.ParamName);
        Assert.Contains(name == "Features" ? "one entry per feature" : name, e.Message, StringComparison.Ordinal);
    }

    /// <summary>Trains a small model with the device engine (on CPU tensors) and returns its op counts, transfers and records.</summary>
    private static (long Launches, long Handles, int Transfers, List<StepRecord> Records, CollectingLogSink Log) Train(ForecastOptions? forecast)
    {
        var gen = new Generator(5);
        using var x = randn([32, 8], generator: gen);
        using var y = randint(0, 3, [32], generator: gen);
        using var model = nn.Sequential(("fc0", nn.Linear(8, 16)), ("act", nn.ReLU()), ("fc1", nn.Linear(16, 3)));
        using (no_grad())
        {
            foreach (var p in model.parameters()) p.uniform_(-0.5, 0.5, generator: gen);
        }
        var (logger, log) = CollectingLogSink.Create(LogEventLevel.Warning);
        var opt = optim.SGD(model.parameters(), 0.05);
        var records = new List<StepRecord>();
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Engine = StatisticsEngineKind.Device, SampleSize = 64, RecordEvery = 2, Forecast = forecast, Logger = logger });
        for (int step = 0; step < 40; step++)
        {
            using var scope = NewDisposeScope();
            opt.zero_grad();
            var loss = nn.functional.cross_entropy(model.call(x), y);
            loss.backward();
            monitor.RecordGradients();
            opt.step();
            if (monitor.Step(loss) is { } r) records.Add(r);
        }
        var ops = monitor.DeviceOps!;
        return (ops.Launches, ops.Handles, monitor.HostTransfers, records, log);
    }

    [Fact]
    public void Forecasting_adds_no_device_operation_and_no_transfer()
    {
        // A forecaster that warns (the shipped features, every weight positive and a large bias) so that its whole path,
        // features and warning included, is exercised.
        var d = ForecastModel.Default;
        var eager = new ForecastOptions { Model = d with { Weights = [.. d.Weights.Select(_ => 0.5)], Bias = 20, Patience = 1 }, WarmupRecords = 1, Horizon = 7 };
        var off = Train(null);
        var on = Train(eager);
        Assert.Equal(off.Launches, on.Launches);
        Assert.Equal(off.Handles, on.Handles);
        Assert.Equal(off.Transfers, on.Transfers);
        Assert.Equal(20, on.Records.Count);

        // The record carries the anomaly with the forecast; the Serilog warning has named properties, once per episode.
        var anomalies = on.Records.SelectMany(r => r.Anomalies).Where(a => a.Kind == AnomalyKind.DivergenceAhead).ToList();
        var a = Assert.Single(anomalies);
        Assert.NotNull(a.Forecast);
        Assert.Equal(7, a.Forecast.Horizon);
        Assert.Equal(a.Forecast.Score, a.Value);
        Assert.Equal(a.Forecast.Layer, a.Layer);
        Assert.DoesNotContain(off.Records.SelectMany(r => r.Anomalies), x => x.Kind == AnomalyKind.DivergenceAhead);
        var warning = Assert.Single(on.Log.Events, e => e.MessageTemplate.Text == ForecastAnomaly.WarningTemplate);
        Assert.Equal(LogEventLevel.Warning, warning.Level);
        Assert.Equal(a.Step, (long)CollectingLogSink.Scalar(warning, "Step"));
        Assert.Equal(7, CollectingLogSink.Scalar(warning, "Horizon"));
        Assert.Equal(a.Forecast.Score, CollectingLogSink.Scalar(warning, "Score"));
        Assert.Equal(a.Layer, CollectingLogSink.Text(warning, "Layer"));
        Assert.Equal(a.Forecast.Signals[0].Statistic, CollectingLogSink.Text(warning, "Statistic"));
        Assert.IsType<SequenceValue>(warning.Properties["Signals"]);
    }

    [Fact]
    public void The_failure_step_is_the_first_non_finite_loss_or_the_return_above_chance_after_learning()
    {
        double chance = Math.Log(10);
        // Never learned (stays at chance): no failure even though the loss is above ln 10.
        Assert.Null(FailureLabel.FailureStep([.. Enumerable.Repeat(chance + 0.1, 100)], 10));
        // Below chance but never below half of it (1.3), then above chance: it had not learned, so no failure.
        Assert.Null(FailureLabel.FailureStep([.. Enumerable.Repeat(1.3, 20), .. Enumerable.Repeat(3.0, 20)], 10));
        // A NaN is a failure wherever it is.
        Assert.Equal(3, FailureLabel.FailureStep([2.0, 1.9, 1.8, double.NaN, 1.0], 10));
        // Learned (mean below 0.5 ln 10 = 1.151), then the 5-step mean climbs back above ln 10.
        var losses = Enumerable.Range(0, 60).Select(i => i < 40 ? 1.0 : 1.0 + (i - 39) * 0.5).ToList();
        int expected = Enumerable.Range(4, 56).First(i => losses.Skip(i - 4).Take(5).Average() > chance);
        Assert.Equal(expected, FailureLabel.FailureStep(losses, 10));
        // One batch above chance does not make the 5-step mean cross: no failure.
        var spike = Enumerable.Repeat(0.5, 50).ToList();
        spike[30] = 4;
        Assert.Null(FailureLabel.FailureStep(spike, 10));
        Assert.Equal(expected + 100, FailureLabel.FailureStep(losses.Select((l, i) => (i + 100L, l)), 10));   // steps as given
    }

    private static double Normal(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
}
