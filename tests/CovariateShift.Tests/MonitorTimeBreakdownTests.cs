using CovariateShift.Records;
using CovariateShift.Sinks;
using CovariateShift.Statistics;
using CovariateShift.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>The monitor's own time split by part (<see cref="ActivationMonitor.MonitorTimeByPart"/>).</summary>
[Collection(TorchGlobalState.Name)]
public sealed class MonitorTimeBreakdownTests
{
    [Fact]
    public void Nested_parts_take_their_own_time_out_of_the_outer_one_and_add_up_to_the_total()
    {
        long now = 0;
        var meter = new OverheadMeter(() => now, 1000);
        meter.Enter(MonitorPart.Other);          // 0
        now = 5;
        meter.Enter(MonitorPart.Records);        // 5
        now = 12;
        var window = meter.CloseWindow();        // closing a window inside a part changes no part
        meter.Exit();                            // 12: records 7
        now = 15;
        meter.Enter(MonitorPart.Sinks);          // 15: other 5 + 3
        now = 20;
        meter.Exit();                            // 20: sinks 5
        now = 21;
        meter.Exit();                            // 21: other + 1
        now = 30;
        meter.Enter(MonitorPart.Activations);    // outside the monitor from 21 to 30: no part
        now = 34;
        meter.Exit();

        var ticks = meter.PartTicks();
        Assert.Equal(9, ticks[(int)MonitorPart.Other]);
        Assert.Equal(7, ticks[(int)MonitorPart.Records]);
        Assert.Equal(5, ticks[(int)MonitorPart.Sinks]);
        Assert.Equal(4, ticks[(int)MonitorPart.Activations]);
        Assert.Equal(0, ticks[(int)MonitorPart.Gradients] + ticks[(int)MonitorPart.Collection] + ticks[(int)MonitorPart.Probes]);
        Assert.Equal(25, meter.TotalMonitorTicks);
        Assert.Equal(25, ticks.Sum());
        Assert.Equal((12L, 12L), window);

        // An open part counts up to now.
        meter.Enter(MonitorPart.Gradients);
        now = 40;
        Assert.Equal(6, meter.PartTicks()[(int)MonitorPart.Gradients]);
        Assert.Equal(31, meter.TotalMonitorTicks);
        meter.Exit();
    }

    [Fact]
    public void Parts_convert_to_the_nearest_100_ns_and_an_interval_between_two_breakdowns_is_exact()
    {
        // Stopwatch ticks of 1 ns (Linux): 2,100 ns is 21 TimeSpan ticks, 2,149 ns rounds to 21, 2,150 to 22 (away from zero: .5).
        long[] Ticks(long activations, long records)
        {
            var t = new long[Enum.GetValues<MonitorPart>().Length];
            t[(int)MonitorPart.Activations] = activations;
            t[(int)MonitorPart.Records] = records;
            return t;
        }
        var earlier = new MonitorTimeBreakdown(Ticks(2_100, 2_149), 1_000_000_000);
        Assert.Equal(TimeSpan.FromTicks(21), earlier[MonitorPart.Activations]);
        Assert.Equal(TimeSpan.FromTicks(21), earlier[MonitorPart.Records]);
        Assert.Equal(TimeSpan.FromTicks(42), earlier.Total);
        var later = new MonitorTimeBreakdown(Ticks(9_100, 1_000_002_149), 1_000_000_000);
        var interval = later.Since(earlier);
        Assert.Equal(TimeSpan.FromTicks(70), interval[MonitorPart.Activations]);          // 91 - 21, not a tick lost
        Assert.Equal(TimeSpan.FromSeconds(1), interval[MonitorPart.Records]);
        Assert.Equal(TimeSpan.Zero, interval[MonitorPart.Gradients]);
        Assert.Equal(interval.Parts.Aggregate(TimeSpan.Zero, (a, p) => a + p.Time), interval.Total);
        Assert.Throws<ArgumentOutOfRangeException>(() => interval[(MonitorPart)99]);
    }

    [Fact]
    public async Task Another_thread_reading_the_meter_while_parts_open_and_close_gets_no_exception_and_no_negative_part()
    {
        var meter = new OverheadMeter();
        using var stop = new CancellationTokenSource();
        long reads = 0;
        var reader = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                var ticks = meter.PartTicks();
                Assert.All(ticks, t => Assert.True(t >= 0, $"part ticks {t}"));
                Assert.True(meter.TotalMonitorTicks >= 0);
                Interlocked.Increment(ref reads);
            }
        });
        // Parts open and close until the reader has read 20,000 times while they did (or a minute has passed).
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while ((Interlocked.Read(ref reads) < 20_000 && clock.Elapsed < TimeSpan.FromMinutes(1)) && !reader.IsCompleted)
        {
            meter.Enter(MonitorPart.Other);
            meter.Enter(MonitorPart.Records);
            meter.Exit();
            meter.Exit();
        }
        stop.Cancel();
        await reader;   // rethrows what the reader met
        Assert.True(Interlocked.Read(ref reads) >= 20_000, $"{reads} reads");
        var final = meter.PartTicks();
        Assert.Equal(meter.TotalMonitorTicks, final.Sum());   // read between parts on this thread: exact
    }

    /// <summary>A sink that advances the test's clock by <see cref="Ms"/> per record.</summary>
    private sealed class ClockSink(Action<int> advance) : IStepSink
    {
        public int Ms { get; set; }

        public int Writes { get; private set; }

        public void Write(StepRecord record)
        {
            Writes++;
            advance(Ms);
        }

        public void Dispose() { }
    }

    [Fact]
    public void A_slow_sinks_time_is_charged_to_the_sinks_and_to_nothing_else()
    {
        using var scope = NewDisposeScope();
        long now = 0;   // ms on the test's clock: only the training step and the sink advance it
        var sink = new ClockSink(ms => now += ms) { Ms = 20 };
        torch.manual_seed(3);
        var model = nn.Sequential(("fc", nn.Linear(4, 6)), ("act", nn.ReLU()), ("out", nn.Linear(6, 3)));
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { RecordEvery = 2, Sinks = [sink], Clock = (() => now, 1000) });
        var x = randn(8, 4);
        var before = monitor.MonitorTimeByPart;
        for (int i = 0; i < 10; i++)
        {
            using (var s = NewDisposeScope())
            {
                var loss = model.call(x).square().mean();
                loss.backward();
                monitor.RecordGradients();
            }
            now += 1;
            monitor.Step();
        }

        var parts = monitor.MonitorTimeByPart.Since(before);
        Assert.Equal(5, sink.Writes);   // steps 0, 2, 4, 6, 8
        Assert.Equal(TimeSpan.FromMilliseconds(100), parts[MonitorPart.Sinks]);
        foreach (var (part, time) in parts.Parts.Where(p => p.Part != MonitorPart.Sinks)) Assert.Equal(TimeSpan.Zero, time);
        Assert.Equal(TimeSpan.FromMilliseconds(100), parts.Total);
        Assert.Equal(monitor.MonitorTime, monitor.MonitorTimeByPart.Total);
        Assert.Contains("sinks 100.00 ms", parts.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void On_the_real_clock_hooks_gradients_and_records_each_take_time_and_the_parts_add_up_to_the_monitors_time()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(5);
        var model = nn.Sequential(("fc1", nn.Linear(64, 256)), ("act", nn.ReLU()), ("fc2", nn.Linear(256, 256)), ("out", nn.Linear(256, 10)));
        var records = new ClockSink(_ => { });
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Sinks = [records] });
        using var optimizer = optim.SGD(model.parameters(), 0.01);
        var x = randn(128, 64);
        for (int i = 0; i < 6; i++)
        {
            using var s = NewDisposeScope();
            optimizer.zero_grad();
            var loss = model.call(x).square().mean();
            loss.backward();
            monitor.RecordGradients();
            optimizer.step();
            monitor.Step(loss);
        }

        var parts = monitor.MonitorTimeByPart;
        Assert.Equal(6, records.Writes);
        Assert.True(parts[MonitorPart.Activations] > TimeSpan.Zero, parts.ToString());
        Assert.True(parts[MonitorPart.Gradients] > TimeSpan.Zero, parts.ToString());
        Assert.True(parts[MonitorPart.Collection] > TimeSpan.Zero, parts.ToString());   // the update, measured at Step
        Assert.True(parts[MonitorPart.Records] > TimeSpan.Zero, parts.ToString());
        Assert.Equal(TimeSpan.Zero, parts[MonitorPart.Probes]);
        // Each part rounds to a 100 ns tick on its own.
        Assert.InRange((monitor.MonitorTime - parts.Total).Duration(), TimeSpan.Zero, TimeSpan.FromTicks(MonitorTimeBreakdown.PartCount + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => parts[(MonitorPart)99]);
    }
}
