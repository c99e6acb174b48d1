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
    /// <summary>Fixed weights (not the tuned defaults) so that the expected steps follow from the formula.</summary>
    private static readonly ForecastOptions Rule = new()
    {
        Smoothing = 4, WarmupRecords = 5, ActivationWeight = 0.25, GradientWeight = 0.25, LossWeight = 0.5, Patience = 3, ClearAfter = 50, Horizon = 40,
        ActivationTrendWeight = 0, GradientTrendWeight = 0, LossTrendWeight = 0, TrendSpan = 20,
    };

    /// <summary>Only the loss trend counts (span 4 against span 20).</summary>
    private static readonly ForecastOptions TrendRule = Rule with { ActivationWeight = 0, GradientWeight = 0, LossWeight = 0, LossTrendWeight = 1 };

    private static LayerStatistics Stats(double mean, double std) => new()
    {
        Count = 100, Mean = mean, Std = std, Min = mean - 3 * std, Max = mean + 3 * std, P15 = mean - std, P50 = mean, P85 = mean + std,
        NearZeroFraction = 0, DeadUnitFraction = 0,
    };

    /// <summary>A record of three layers: stds scaled by <paramref name="scale"/> (layer 1 also by <paramref name="grow"/>),
    /// gradient norms by <paramref name="gradScale"/>, and the given loss.</summary>
    private static StepRecord Record(long step, double scale, double grow = 1, double gradScale = 1, double loss = 0.5)
    {
        var layers = new List<LayerRecord>
        {
            new(step, "fc0", "Linear", Stats(0.1, 1.0 * scale), null, null, new GradientStatistics(0.5 * gradScale, 10, 0.05, null, 100)),
            new(step, "fc1", "Linear", Stats(0.0, 2.0 * scale * grow), null, null, new GradientStatistics(0.3 * gradScale, 10, 0.03, null, 100)),
            new(step, "act1", "ReLU", Stats(0.5, 0.7 * scale), null, null, null),
        };
        return new StepRecord(step, loss, layers, []);
    }

    [Fact]
    public void Steadily_growing_variance_warns_when_the_smoothed_growth_reaches_the_threshold()
    {
        // Layer fc1's std grows by 10% per record from record 20 (variance ratio 1.21 per record); everything else is flat.
        // ln RMS then rises r = ln 1.1 per record; the moving average (alpha 0.4) lags r (1 - alpha) / alpha = 1.5 r behind,
        // so 0.25 x growth reaches 1 at t0 + 4 / r + 1.5 records, and the warning comes 2 records later (patience 3).
        var f = new DivergenceForecaster(Rule);
        const int t0 = 20;
        double r = Math.Log(1.1);
        int expected = (int)Math.Ceiling(t0 + 4 / r + 1.5) + 2;
        DivergenceForecast? warning = null;
        for (int t = 0; t < 200 && warning is null; t++)
            warning = f.Observe(Record(t, 1, grow: Math.Pow(1.1, Math.Max(0, t - t0))));
        Assert.NotNull(warning);
        Assert.InRange(warning.Step, expected - 1, expected + 1);
        Assert.Equal(40, warning.Horizon);
        Assert.True(warning.Score >= 1, $"score {warning.Score}");
        var top = warning.Signals[0];
        Assert.Equal(("fc1", ForecastSignal.ActivationRms), (top.Layer, top.Statistic));
        Assert.Equal("fc1", warning.Layer);
        Assert.InRange(top.Growth, 4, 4 + 3 * r);
        Assert.Equal(0.25 * top.Growth, top.Contribution, 12);
        Assert.Single(warning.Signals);   // nothing else moved
    }

    [Theory]
    [InlineData(0.15, true)]
    [InlineData(0.1, false)]
    public void A_steady_rise_has_a_trend_of_its_rate_times_the_lag_between_the_averages(double rate, bool warns)
    {
        // ln loss rises by `rate` per record from record 30. Both moving averages lag a steady rise r by (span - 1) / 2 x r,
        // so the fast one (span 4) settles r (20 - 4) / 2 = 8 r above the slow one (span 20): 1.2 for r = 0.15 (warns),
        // 0.8 for r = 0.1 (never reaches 1, however long it rises).
        var f = new DivergenceForecaster(TrendRule);
        DivergenceForecast? warning = null;
        double last = 0;
        for (int t = 0; t < 400 && warning is null; t++)
        {
            warning = f.Observe(Record(t, 1, loss: 0.5 * Math.Exp(rate * Math.Max(0, t - 30))));
            last = f.Score;
        }
        if (!warns)
        {
            Assert.Null(warning);
            Assert.Equal(8 * rate, last, 6);   // the settled trend
            return;
        }
        Assert.NotNull(warning);
        var top = Assert.Single(warning.Signals);
        Assert.Equal((ForecastSignal.LossLayer, ForecastSignal.LossTrend), (top.Layer, top.Statistic));
        Assert.InRange(top.Growth, 1, 8 * rate);
        Assert.Equal(top.Growth, top.Contribution, 12);
    }

    [Fact]
    public void A_single_noisy_spike_does_not_warn()
    {
        var f = new DivergenceForecaster(Rule);
        var rng = new Random(3);
        double peak = 0;
        for (int t = 0; t < 300; t++)
        {
            double noise = Math.Exp(0.05 * Normal(rng));
            bool spike = t == 150;   // one record: activations and gradients x100, loss x10
            var warning = f.Observe(Record(t, noise * (spike ? 100 : 1), gradScale: spike ? 100 : 1, loss: 0.5 * (spike ? 10 : 1)));
            Assert.Null(warning);
            if (t >= 150) peak = Math.Max(peak, f.Score);
        }
        Assert.True(peak >= 1, $"the spike itself scores above the threshold (peak {peak}); only the patience keeps it from warning");
        Assert.Equal(0, f.Warnings);
    }

    public static TheoryData<string> Rules => ["fixed", "defaults"];

    [Theory]
    [MemberData(nameof(Rules))]
    public void A_stable_noisy_run_never_warns_over_10000_records(string rule)
    {
        var f = new DivergenceForecaster(rule == "fixed" ? Rule : new ForecastOptions());
        var rng = new Random(11);
        double max = 0;
        for (int t = 0; t < 10_000; t++)
        {
            var warning = f.Observe(Record(t, Math.Exp(0.05 * Normal(rng)), gradScale: Math.Exp(0.2 * Normal(rng)), loss: 0.5 * Math.Exp(0.1 * Normal(rng))));
            Assert.Null(warning);
            max = Math.Max(max, f.Score);
        }
        Assert.Equal(0, f.Warnings);
        Assert.InRange(max, 1e-3, 0.9);   // noise is seen, but stays well below the threshold
    }

    [Fact]
    public void Warnings_come_once_per_episode_and_again_after_the_episode_cleared()
    {
        var f = new DivergenceForecaster(Rule);
        var starts = new List<long>();
        long t = 0;
        void Run(int records, Func<int, double> grow)
        {
            for (int i = 0; i < records; i++, t++)
            {
                if (f.Observe(Record(t, 1, grow: grow(i))) is { } w) starts.Add(w.Step);
            }
        }
        Run(30, _ => 1);
        Run(150, i => Math.Pow(1.1, i));          // grows far past the threshold and stays there: one warning
        Assert.Single(starts);
        Assert.True(f.InEpisode);
        // Back to the baseline: the moving average falls below the threshold within a few records, and the episode
        // ends exactly at the 50th consecutive record below it.
        int below = 0;
        while (f.InEpisode)
        {
            Run(1, _ => 1);
            below = f.Score < 1 ? below + 1 : 0;
            Assert.True(below <= 50, "the episode must end at the 50th record below the threshold");
            Assert.Equal(below < 50, f.InEpisode);
        }
        Assert.Equal(50, below);
        Assert.InRange(t, 30 + 150 + 50, 30 + 150 + 60);
        long second = t;
        Run(100, i => Math.Pow(1.1, i));          // a second episode
        Assert.Equal(2, starts.Count);
        Assert.True(starts[1] > second, $"second warning at {starts[1]}, after {second}");
        Assert.Equal(2, f.Warnings);
    }

    [Fact]
    public void A_non_finite_loss_warns_at_once_and_names_it()
    {
        var f = new DivergenceForecaster(Rule);
        for (int t = 0; t < 10; t++) Assert.Null(f.Observe(Record(t, 1)));
        var w = f.Observe(Record(10, 1, loss: double.NaN));
        Assert.NotNull(w);
        Assert.Equal(double.PositiveInfinity, w.Score);
        Assert.Equal((ForecastSignal.LossLayer, ForecastSignal.NonFinite), (w.Signals[0].Layer, w.Signals[0].Statistic));
    }

    [Theory]
    [InlineData("Smoothing", 0.5)]
    [InlineData("Patience", 0)]
    [InlineData("ActivationWeight", -1)]
    [InlineData("Horizon", 0)]
    [InlineData("TrendSpan", 4)]
    [InlineData("LossTrendWeight", double.NaN)]
    public void Invalid_options_are_refused_at_attach_naming_the_value(string name, double value)
    {
        var options = name switch
        {
            "Smoothing" => new ForecastOptions { Smoothing = value },
            "Patience" => new ForecastOptions { Patience = (int)value },
            "ActivationWeight" => new ForecastOptions { ActivationWeight = value },
            "TrendSpan" => new ForecastOptions { Smoothing = value, TrendSpan = value },
            "LossTrendWeight" => new ForecastOptions { LossTrendWeight = value },
            _ => new ForecastOptions { Horizon = (int)value },
        };
        using var model = nn.Sequential(("fc", nn.Linear(4, 2)));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ActivationMonitor.Attach(model, new MonitorOptions { Forecast = options }));
        Assert.Equal(name, e.ParamName);
        Assert.Contains(name, e.Message, StringComparison.Ordinal);
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
        // A forecaster that warns (every signal weighted 1000x) so that its whole path, warning included, is exercised.
        var eager = new ForecastOptions { ActivationWeight = 1000, GradientWeight = 1000, LossWeight = 1000, Patience = 1, WarmupRecords = 1, Horizon = 7 };
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
