using CovariateShift.Records;
using CovariateShift.Sinks;
using CovariateShift.Tests.Support;
using Serilog.Events;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>The monitor's self-timing (monitor_ms, step_ms) and the overhead budget that adapts the recording interval.</summary>
[Collection(TorchGlobalState.Name)]
public sealed class OverheadBudgetTests
{
    /// <summary>A sink that "sleeps" on the test's clock (or for real) for as long as <see cref="SleepMs"/> says.</summary>
    private sealed class SleepingSink(Action<int> sleep) : IStepSink
    {
        public int SleepMs { get; set; }

        public List<StepRecord> Records { get; } = [];

        public void Write(StepRecord record)
        {
            Records.Add(record);
            if (SleepMs > 0) sleep(SleepMs);
        }

        public void Dispose() { }
    }

    private static nn.Module<Tensor, Tensor> SmallModel()
    {
        torch.manual_seed(3);
        return nn.Sequential(("fc", nn.Linear(4, 6)), ("act", nn.ReLU()), ("out", nn.Linear(6, 3)));
    }

    [Fact]
    public void A_slow_sink_raises_the_interval_until_the_share_is_under_the_budget_and_a_fast_one_lowers_it_again()
    {
        using var scope = NewDisposeScope();
        long now = 0;   // milliseconds on the test's clock: only the training step and the sink advance it
        var sink = new SleepingSink(ms => now += ms) { SleepMs = 20 };
        var (logger, log) = CollectingLogSink.Create(LogEventLevel.Information);
        var model = SmallModel();
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions
        {
            OverheadBudget = 0.02, MaxRecordEvery = 4096, Sinks = [sink], Logger = logger, Clock = (() => now, 1000),
        });
        var x = randn(8, 4);
        var intervals = new List<(long Step, int Interval)>();
        void Run(long steps)
        {
            for (long i = 0; i < steps; i++)
            {
                using (var s = NewDisposeScope())
                using (no_grad())
                {
                    model.call(x);
                }
                now += 1;   // the training step: 1 ms
                monitor.Step();
                if (intervals.Count == 0 || intervals[^1].Interval != monitor.CurrentRecordEvery) intervals.Add((monitor.CurrentStep, monitor.CurrentRecordEvery));
            }
        }

        // 20 ms per record on a 1 ms step: at every step the monitor takes 20/21 of the time. The smallest interval whose
        // predicted share x/(1+x), x = 20/interval, is at most 0.8 * 2% is 2048 (1024 gives 1.9%).
        Run(6200);
        Assert.Equal(2048, monitor.CurrentRecordEvery);
        Assert.Equal([1, 2048], intervals.Select(i => i.Interval));
        var slow = sink.Records.Where(r => r.StepsSincePrevious is >= 2048).ToList();
        Assert.NotEmpty(slow);
        foreach (var r in slow)
        {
            // The window: 2048 steps of 1 ms, plus the previous record's 20 ms in the sink.
            Assert.Equal(0, r.Step % 2048);
            Assert.Equal(20.0 / 2048, r.MonitorMs!.Value, 12);
            Assert.Equal((2048 + 20.0) / 2048, r.StepMs!.Value, 12);
            Assert.True(r.MonitorMs / r.StepMs < 0.02, $"share {r.MonitorMs / r.StepMs} at step {r.Step}");
        }

        // The sink becomes fast: the monitor's measured time is 0 on this clock, so the interval comes back to RecordEvery.
        sink.SleepMs = 0;
        Run(3 * 2048 + 200);
        Assert.Equal(1, monitor.CurrentRecordEvery);
        Assert.Equal([1, 2048, 1], intervals.Select(i => i.Interval));

        // Records keep their step numbers and say the distance to the previous one.
        var steps = sink.Records.Select(r => r.Step).ToList();
        Assert.Equal(steps.Order(), steps);
        Assert.Null(sink.Records[0].StepsSincePrevious);
        for (int i = 1; i < sink.Records.Count; i++) Assert.Equal(steps[i] - steps[i - 1], sink.Records[i].StepsSincePrevious);

        // One Information event per change, with the old and new interval as properties.
        var changes = log.Events.Where(e => e.MessageTemplate.Text.StartsWith("Recording every", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, changes.Count);
        Assert.Equal([(2048.0, 1.0), (1.0, 2048.0)], changes.Select(e => (CollectingLogSink.Scalar(e, "RecordEvery"), CollectingLogSink.Scalar(e, "PreviousRecordEvery"))));
        Assert.All(changes, e => Assert.Equal(LogEventLevel.Information, e.Level));
    }

    [Fact]
    public void Shift_metrics_across_an_interval_change_compare_with_the_previous_record_whatever_its_distance()
    {
        using var scope = NewDisposeScope();
        long now = 0;
        var sink = new SleepingSink(ms => now += ms) { SleepMs = 5 };
        var model = SmallModel();
        var opt = optim.SGD(model.parameters(), 0.05);
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions
        {
            OverheadBudget = 0.05, MaxRecordEvery = 64, Sinks = [sink], Clock = (() => now, 1000), SampleSize = 16,
        });
        var x = randn(16, 4);
        var y = randint(0, 3, [16]);
        for (int i = 0; i < 400; i++)
        {
            using var s = NewDisposeScope();
            opt.zero_grad();
            var loss = nn.functional.cross_entropy(model.call(x + 0.01 * i), y);   // inputs drift: the shift is not zero
            loss.backward();
            opt.step();
            now += 1;
            monitor.Step(loss);
        }
        var records = sink.Records;
        Assert.Contains(records, r => r.StepsSincePrevious == 1);
        Assert.Contains(records, r => r.StepsSincePrevious == 64);
        for (int i = 1; i < records.Count; i++)
        {
            for (int l = 0; l < records[i].Layers.Count; l++)
            {
                var (current, before) = (records[i].Layers[l].Statistics!, records[i - 1].Layers[l].Statistics!);
                var shift = records[i].Layers[l].Shift!;
                // Direct: |mean difference| and variance ratio (+1e-8) against the record just before, however far back.
                Assert.Equal(Math.Abs(current.Mean - before.Mean), shift.MeanDrift, 12);
                Assert.Equal(current.Std * current.Std / (before.Std * before.Std + 1e-8), shift.VarianceRatio, 9);
                Assert.True(shift.MeanDrift > 0, $"layer {records[i].Layers[l].Layer} step {records[i].Step}: no drift");
            }
        }
    }

    [Fact]
    public void An_interval_changed_while_a_step_runs_applies_from_the_next_step_so_each_record_holds_its_own_steps_outputs()
    {
        // Deferred records (as on CUDA) are finished by the next Step, after that step's forward pass: a budget that
        // changes the interval there must not make the running step recorded (its forward ran unhooked) or unrecorded
        // (its outputs were captured).
        using var scope = NewDisposeScope();
        long now = 0;
        var sink = new SleepingSink(ms => now += ms) { SleepMs = 20 };
        var (logger, log) = CollectingLogSink.Create(LogEventLevel.Information);
        var model = nn.Sequential(("act", nn.ReLU()));
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions
        {
            OverheadBudget = 0.02, MaxRecordEvery = 64, Sinks = [sink], Logger = logger, Clock = (() => now, 1000),
            Engine = StatisticsEngineKind.Device, DeferRecords = true,
        });
        var pattern = tensor(new float[] { -0.5f, 0.5f, -0.25f, 0.25f }).repeat(8).reshape(8, 4);   // mean 0
        var intervals = new List<int> { monitor.CurrentRecordEvery };
        void Run(int steps)
        {
            for (int i = 0; i < steps; i++)
            {
                using (var s = NewDisposeScope())
                using (no_grad())
                {
                    model.call(pattern + (monitor.CurrentStep + 1));   // step s: every output positive, mean s + 1
                }
                now += 1;
                monitor.Step();
                if (intervals[^1] != monitor.CurrentRecordEvery) intervals.Add(monitor.CurrentRecordEvery);
            }
        }
        Run(300);
        sink.SleepMs = 0;
        Run(400);
        monitor.Flush();

        Assert.Equal([1, 64, 1], intervals);
        Assert.DoesNotContain(log.Events, e => e.Level >= LogEventLevel.Warning);
        foreach (var r in sink.Records)
        {
            var stats = Assert.Single(r.Layers).Statistics;
            Assert.NotNull(stats);
            Assert.Equal(r.Step + 1, stats.Mean, 4);
        }
        // Around each change: the step that was running when the interval went to 64 is still recorded, and the one
        // running when it came back to 1 is not (its forward ran unhooked); from the next step on the new interval holds.
        var steps = sink.Records.Select(r => r.Step).ToList();
        string all = string.Join(",", steps);
        Assert.Equal(steps.Distinct().Order(), steps);
        int up = steps.FindIndex(s => s % 64 != 0 && !steps.Contains(s + 1));       // the last step recorded at 1
        Assert.True(up >= 0 && steps[up + 1] == (steps[up] / 64 + 1) * 64, all);     // then the next multiple of 64
        int down = steps.FindIndex(s => s % 64 == 0 && !steps.Contains(s + 1) && steps.Contains(s + 2));     // back at 1 ...
        Assert.True(down >= 0 && steps[down + 1] == steps[down] + 2, all);           // ... from the step after the running one
    }

    [Fact]
    public void A_resumed_monitor_goes_on_at_the_interval_its_budget_chose_and_without_a_budget_at_record_every()
    {
        using var scope = NewDisposeScope();
        var x = randn(8, 4);
        // Runs a monitor from step `first` to `last` (exclusive) on the test's clock, the sink taking 20 ms per record on
        // 1 ms steps; returns the steps it recorded and its state at the end.
        (List<long> Steps, MonitorState State, int Interval) Run(MonitorOptions options, long first, long last, MonitorState? saved)
        {
            long now = 0;
            var sink = new SleepingSink(ms => now += ms) { SleepMs = 20 };
            var model = SmallModel();
            using var monitor = ActivationMonitor.Attach(model, options with { Sinks = [sink], Clock = (() => now, 1000), FirstStep = first });
            if (saved is not null) monitor.ImportState(saved);
            for (long step = first; step < last; step++)
            {
                using (var s = NewDisposeScope())
                using (no_grad())
                {
                    model.call(x);
                }
                now += 1;
                monitor.Step();
            }
            return (sink.Records.Select(r => r.Step).ToList(), monitor.ExportState(), monitor.CurrentRecordEvery);
        }

        var budget = new MonitorOptions { OverheadBudget = 0.02, MaxRecordEvery = 64 };
        var straight = Run(budget, 0, 400, null);
        var before = Run(budget, 0, 200, null);
        Assert.Equal(64, before.Interval);   // 20 ms on a 1 ms step: even 64 leaves the share above 0.8 x 2 %, so the maximum
        Assert.Equal(64, before.State.RecordEvery);
        // Resumed at step 200 with the state: it records where the straight run recorded, not every step from 200 on.
        var after = Run(budget, 200, 400, before.State);
        Assert.Equal(straight.Steps, [.. before.Steps, .. after.Steps]);
        Assert.Equal([256, 320, 384], after.Steps);

        // A saved interval that is not RecordEvery * 2^k is not taken; one above the maximum is cut to it.
        Assert.Equal(Enumerable.Range(200, 8).Select(i => (long)i), Run(budget, 200, 208, before.State with { RecordEvery = 48 }).Steps);
        Assert.Equal(64, Run(budget, 200, 208, before.State with { RecordEvery = 512 }).Interval);
        // Without a budget the interval is RecordEvery whatever the state says.
        Assert.Equal([200L, 204], Run(new MonitorOptions { RecordEvery = 4 }, 200, 208, before.State).Steps);
    }

    [Fact]
    public void A_resumed_monitor_writes_tensorboard_histograms_on_the_records_a_straight_run_writes_them_on()
    {
        using var scope = NewDisposeScope();
        var root = Directory.CreateTempSubdirectory("covshift-budget-tb-").FullName;
        try
        {
            var x = randn(8, 4);
            // As above (20 ms per record on 1 ms steps, budget 2 %, at most every 64 steps), with TensorBoard files whose
            // histograms come every 3 records: with a budget the records are not every RecordEvery-th step, so the
            // cadence after a resume must count the records written before, which the state carries.
            (MonitorState State, List<long> Records) Run(string name, long first, long last, MonitorState? saved)
            {
                long now = 0;
                var sink = new SleepingSink(ms => now += ms) { SleepMs = 20 };
                var model = SmallModel();
                using var monitor = ActivationMonitor.Attach(model, new MonitorOptions
                {
                    OverheadBudget = 0.02, MaxRecordEvery = 64, Sinks = [sink], Clock = (() => now, 1000), FirstStep = first,
                    TensorBoardDirectory = Path.Combine(root, name), TensorBoardHistogramEvery = 3,
                });
                if (saved is not null) monitor.ImportState(saved);
                for (long step = first; step < last; step++)
                {
                    using (var s = NewDisposeScope())
                    using (no_grad())
                    {
                        model.call(x);
                    }
                    now += 1;
                    monitor.Step();
                }
                return (monitor.ExportState(), sink.Records.Select(r => r.Step).ToList());
            }
            List<long> Histograms(params string[] names) =>
                [.. names.SelectMany(n => TensorBoardEvents.Read(Path.Combine(root, n))).Where(v => v.Histogram && v.Tag == "act/activations").Select(v => v.Step)];

            var straight = Run("straight", 0, 400, null);
            var before = Run("before", 0, 200, null);
            var after = Run("after", 200, 400, before.State);
            Assert.Equal(straight.Records, [.. before.Records, .. after.Records]);
            var expected = straight.Records.Where((_, i) => i % 3 == 0).ToList();   // records 0, 3, 6, ...
            Assert.Equal(expected, Histograms("straight"));
            Assert.Equal(expected, Histograms("before", "after"));
            Assert.Contains(Histograms("after"), s => s % 64 == 0 && s >= 256);   // the resumed part does write some

            // A state saved before the interval and the record count were kept (older checkpoints): the monitor starts
            // at RecordEvery and counts the records before as FirstStep / RecordEvery, as it always did.
            var old = Run("old", 200, 205, before.State with { RecordEvery = null, Records = null });
            Assert.Equal([200L, 201, 202, 203, 204], old.Records);
            Assert.Equal([201L, 204], Histograms("old"));   // the records numbered 201 and 204, counting one per step from step 0
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Records_carry_the_monitors_own_time_which_includes_a_slow_sink_on_the_real_clock()
    {
        using var scope = NewDisposeScope();
        var sink = new SleepingSink(Thread.Sleep) { SleepMs = 5 };
        var model = SmallModel();
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Sinks = [sink] });
        var x = randn(8, 4);
        var before = monitor.MonitorTime;
        for (int i = 0; i < 4; i++)
        {
            model.call(x);
            monitor.Step();
        }
        // Each record's window holds the previous record's 5 ms sleep (the first has none before it).
        Assert.Equal(4, sink.Records.Count);
        foreach (var r in sink.Records.Skip(1))
        {
            Assert.True(r.MonitorMs >= 5, $"step {r.Step}: monitor_ms {r.MonitorMs}");
            Assert.True(r.StepMs >= r.MonitorMs, $"step {r.Step}: step_ms {r.StepMs} < monitor_ms {r.MonitorMs}");
            Assert.Equal(1, r.StepsSincePrevious);
        }
        Assert.True(monitor.MonitorTime - before >= TimeSpan.FromMilliseconds(20), $"{monitor.MonitorTime}");
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(double.NaN)]
    public void A_budget_outside_0_1_is_refused_naming_it(double budget)
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ActivationMonitor.Attach(SmallModel(), new MonitorOptions { OverheadBudget = budget }));
        Assert.Equal(nameof(MonitorOptions.OverheadBudget), e.ParamName);
        Assert.Contains("(0, 1)", e.Message);
        var m = Assert.Throws<ArgumentOutOfRangeException>(() => ActivationMonitor.Attach(SmallModel(), new MonitorOptions { RecordEvery = 8, OverheadBudget = 0.1, MaxRecordEvery = 4 }));
        Assert.Equal(nameof(MonitorOptions.MaxRecordEvery), m.ParamName);
    }
}
