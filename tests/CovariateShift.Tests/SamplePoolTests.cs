using CovariateShift.Records;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>The CPU kernel's sample buffers are lent per recorded step and reused, without a record ever seeing another step's values.</summary>
[Collection(TorchGlobalState.Name)]
public sealed class SamplePoolTests
{
    /// <summary>A leaf whose float64 output the CPU kernel does not take: the step then also has device-engine work.</summary>
    private sealed class ToDouble() : nn.Module<Tensor, Tensor>(nameof(ToDouble))
    {
        public override Tensor forward(Tensor x) => x.to(ScalarType.Float64);
    }

    private static nn.Module<Tensor, Tensor> MixedModel()
    {
        torch.manual_seed(11);
        return nn.Sequential(("fc", nn.Linear(6, 40)), ("act", nn.ReLU()), ("cast", new ToDouble()));
    }

    /// <summary>Records of one monitor over <paramref name="inputs"/>, and how many sample buffers its pool holds at the end.</summary>
    private static (List<StepRecord> Records, int FreeBuffers) Run(nn.Module<Tensor, Tensor> model, Tensor[] inputs, bool defer)
    {
        var records = new List<StepRecord>();
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { SampleSize = 64, DeferRecords = defer });
        monitor.Subscribe(new Observer(records.Add));
        foreach (var x in inputs)
        {
            using var scope = NewDisposeScope();
            model.call(x);
            monitor.Step();
        }
        monitor.Flush();
        Assert.Equal(64, monitor.SamplePool!.Length);
        return (records, monitor.SamplePool.FreeCount);
    }

    [Fact]
    public void Deferred_records_keep_their_own_samples_while_later_steps_reuse_the_buffers()
    {
        // With DeferRecords the float64 layer keeps each capture pending until the next Step(): by then the next forward
        // pass has already taken sample buffers for the CPU layers. Every record must still hold its own step's values,
        // i.e. equal the records of a monitor that finishes each step at once.
        var model = MixedModel();
        torch.manual_seed(5);
        var inputs = Enumerable.Range(0, 6).Select(i => randn(16, 6) * (1 + i) + i).ToArray();
        var (deferred, deferredFree) = Run(model, inputs, defer: true);
        var (direct, directFree) = Run(model, inputs, defer: false);
        Assert.Equal(inputs.Length, deferred.Count);
        Assert.Equal(deferred.Select(r => r.Step), direct.Select(r => r.Step));
        for (int k = 0; k < deferred.Count; k++)
        {
            foreach (var name in new[] { "fc", "act" })
            {
                var a = deferred[k].Layers.Single(l => l.Layer == name).Statistics!;
                var b = direct[k].Layers.Single(l => l.Layer == name).Statistics!;
                Assert.Equal(b.P15, a.P15);
                Assert.Equal(b.P50, a.P50);
                Assert.Equal(b.P85, a.P85);
                Assert.Equal(string.Join(",", b.Histogram!.Counts), string.Join(",", a.Histogram!.Counts));
            }
        }
        // Independent check of one step: fc's mean, and the median of its whole output between the record's P15 and P85.
        var fc = deferred[3].Layers.Single(l => l.Layer == "fc").Statistics!;
        using (var scope = NewDisposeScope())
        {
            var fcOut = ((nn.Module<Tensor, Tensor>)model.named_children().First().module).call(inputs[3]);
            Assert.InRange(fcOut.flatten().median().item<float>(), fc.P15, fc.P85);
            Assert.Equal(fcOut.mean().item<float>(), fc.Mean, 1e-5);
        }
        // Two CPU layers: the direct monitor reuses one pair of buffers; the deferred one has two steps' worth out at once.
        Assert.Equal(2, directFree);
        Assert.Equal(4, deferredFree);
    }

    [Fact]
    public void A_forward_pass_that_is_discarded_gives_its_buffers_back()
    {
        var model = MixedModel();
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { SampleSize = 64 });
        using (var scope = NewDisposeScope())
        {
            model.call(randn(16, 6));
            monitor.Step();
        }
        int free = monitor.SamplePool!.FreeCount;
        Assert.Equal(2, free);
        // A forward pass whose layers were captured but whose Step never came: a second forward in the same step replaces it.
        using (var scope = NewDisposeScope())
        {
            model.call(randn(16, 6));
            model.call(randn(16, 6));
            monitor.Step();
        }
        Assert.Equal(free, monitor.SamplePool.FreeCount);
    }

    [Fact]
    public void An_output_smaller_than_the_sample_size_borrows_a_buffer_of_its_own_length_and_keeps_every_value()
    {
        // The head's 16 x 2 = 32 values are fewer than the sample size of 64: all of them are its sample, in a pooled buffer
        // of 32 (not a new array per recorded step) that a later step reuses.
        torch.manual_seed(4);
        var model = nn.Sequential(("fc", nn.Linear(6, 40)), ("head", nn.Linear(40, 2)));
        var records = new List<StepRecord>();
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { SampleSize = 64 });
        monitor.Subscribe(new Observer(records.Add));
        var x = randn(16, 6);
        for (int i = 0; i < 3; i++)
        {
            using var scope = NewDisposeScope();
            model.call(x);
            monitor.Step();
        }
        Assert.Equal(3, records.Count);
        Assert.Equal(2, monitor.SamplePool!.FreeCount);   // one buffer per layer, lent again at every step

        model.eval();   // a pass the monitor does not record
        float[] head;
        using (var scope = NewDisposeScope()) head = model.call(x).data<float>().ToArray();
        model.train();
        Array.Sort(head);
        double Numpy(double q)
        {
            double h = (head.Length - 1) * q;
            int lo = (int)Math.Floor(h);
            return head[lo] + (h - lo) * ((double)head[Math.Min(lo + 1, head.Length - 1)] - head[lo]);
        }
        foreach (var r in records)
        {
            var s = r.Layers.Single(l => l.Layer == "head").Statistics!;
            Assert.Equal(32, s.Histogram!.Counts.Sum());
            Assert.Equal(Numpy(0.15), s.P15, 6);
            Assert.Equal(Numpy(0.50), s.P50, 6);
            Assert.Equal(Numpy(0.85), s.P85, 6);
        }
    }

    [Fact]
    public void A_recorded_step_does_not_allocate_its_samples()
    {
        // Eight layers with 128 x 64 outputs and the default 2048-value sample: allocating the samples would be 64 KB per
        // recorded step. What the monitor allocates per step beyond the plain step stays well under that.
        torch.manual_seed(2);
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>();
        for (int i = 0; i < 4; i++)
        {
            layers.Add(($"fc{i}", nn.Linear(64, 64)));
            layers.Add(($"act{i}", nn.ReLU()));
        }
        var model = nn.Sequential(layers);
        var x = randn(128, 64);
        long PerStep(ActivationMonitor? monitor)
        {
            void Steps(int n)
            {
                for (int i = 0; i < n; i++)
                {
                    using var scope = NewDisposeScope();
                    model.call(x);
                    monitor?.Step();
                }
            }
            Steps(10);
            long before = GC.GetAllocatedBytesForCurrentThread();
            Steps(50);
            return (GC.GetAllocatedBytesForCurrentThread() - before) / 50;
        }
        long plain = PerStep(null);
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions());
        long monitored = PerStep(monitor);
        long samples = 8 * 2048 * sizeof(float);
        Assert.True(monitored - plain < samples / 2,
            $"the monitor allocated {monitored - plain} bytes per recorded step beyond the plain step's {plain}; its samples alone would be {samples}");
    }

    private sealed class Observer(Action<StepRecord> onNext) : IObserver<StepRecord>
    {
        public void OnCompleted() { }
        public void OnError(Exception error) { }
        public void OnNext(StepRecord value) => onNext(value);
    }
}
