using System.Reflection;
using CovariateShift.Nn.Checkpoints;
using CovariateShift.Records;
using CovariateShift.Tests.Support;
using Serilog.Events;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>
/// Models that call their children with <c>forward()</c> (TorchSharp's own examples do) are recorded through the module
/// wrappers, exactly as models that use <c>call()</c> are through the hooks.
/// </summary>
[Collection(TorchGlobalState.Name)]   // seeds the global generator (the same dropout masks twice)
public sealed class ForwardCallTests
{
    private static Dictionary<string, nn.Module<Tensor, Tensor>> LeavesByName(nn.Module model) =>
        model.named_modules().Where(m => !m.module.children().Any())
            .ToDictionary(m => m.name, m => (nn.Module<Tensor, Tensor>)m.module);

    /// <summary>Asserts the recorded statistics against a direct computation (plain C# doubles) over the layer's output.</summary>
    private static void AssertMatches(LayerStatistics? stats, Tensor output, string layer)
    {
        Assert.True(stats is not null, $"{layer} was not recorded");
        var v = TorchData.ToDoubles(output);
        Assert.Equal(v.Length, stats.Count);
        double mean = Reference.Mean(v), std = Reference.Std(v);
        double scale = Math.Max(1e-6, v.Max(Math.Abs));
        Assert.True(Math.Abs(stats.Mean - mean) <= 1e-5 * scale, $"{layer}: mean {stats.Mean} vs {mean}");
        Assert.True(Math.Abs(stats.Std - std) <= 1e-5 * scale + 1e-5 * std, $"{layer}: std {stats.Std} vs {std}");
        // Extremes: exact for float32 outputs; the device engine (float64 outputs) keeps values in float32 (relative 6e-8).
        Assert.True(Math.Abs(v.Min() - stats.Min) <= 1e-7 * Math.Abs(v.Min()) + 1e-12, $"{layer}: min {stats.Min} vs {v.Min()}");
        Assert.True(Math.Abs(v.Max() - stats.Max) <= 1e-7 * Math.Abs(v.Max()) + 1e-12, $"{layer}: max {stats.Max} vs {v.Max()}");
        Assert.Equal(v.Count(x => Math.Abs(x) <= 0.05) / (double)v.Length, stats.NearZeroFraction, 12);
    }

    /// <summary>The MNIST example's forward(), step by step on the original layers, keeping every output.</summary>
    private static Dictionary<string, Tensor> RunChain(Dictionary<string, nn.Module<Tensor, Tensor>> layers, Tensor input)
    {
        var outputs = new Dictionary<string, Tensor>();
        var x = input;
        foreach (var name in MnistStyleNet.CallOrder)
        {
            x = layers[name].forward(x);
            outputs[name] = x.detach().clone();
        }
        return outputs;
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void An_MNIST_example_style_model_has_every_leaf_recorded_with_the_statistics_of_its_output()
    {
        using var scope = NewDisposeScope();
        var model = new MnistStyleNet();
        var layers = LeavesByName(model);
        var (logger, sink) = CollectingLogSink.Create(LogEventLevel.Warning);
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Logger = logger });
        Assert.Empty(monitor.CallOnlyLayers);
        Assert.Equal(MnistStyleNet.CallOrder.Order(), monitor.Layers.Order());

        var images = TorchData.FashionMnist512.Images;
        var optimizer = optim.SGD(model.parameters(), 0.05);
        for (int step = 0; step < 3; step++)
        {
            using var s = NewDisposeScope();
            var x = images[TensorIndex.Slice(step * 32, step * 32 + 32)];
            torch.random.manual_seed(100 + step);
            optimizer.zero_grad();
            var output = model.call(x);             // the example's training loop: model.call(data), layers via forward()
            Dictionary<string, Tensor> expected;
            using (no_grad())
            {
                torch.random.manual_seed(100 + step);   // the same dropout masks
                expected = RunChain(layers, x);
            }
            Assert.True(expected["logsm"].allclose(output.detach()), "the reference chain must reproduce the model's output");
            output.mean().neg().backward();
            optimizer.step();

            var record = monitor.Step()!;
            Assert.NotNull(record);
            Assert.DoesNotContain(record.Anomalies, a => a.Kind == AnomalyKind.LayerNotCalled);
            foreach (var layer in record.Layers) AssertMatches(layer.Statistics, expected[layer.Layer], layer.Layer);
        }
        Assert.DoesNotContain(sink.Events, e => e.MessageTemplate.Text.Contains("No monitored layer", StringComparison.Ordinal));
    }

    [Fact]
    public void State_dict_parameters_and_checkpoints_are_those_of_the_unmonitored_model()
    {
        using var scope = NewDisposeScope();
        var model = new MnistStyleNet();
        static List<(string Key, Tensor Value)> Snapshot(nn.Module m) =>
            m.state_dict().Select(kv => (kv.Key, kv.Value.detach().clone())).ToList();
        var before = Snapshot(model);
        var parameters = model.named_parameters().ToList();
        var x = TorchData.FashionMnist512.Images[TensorIndex.Slice(0, 16)];
        var path = Path.Combine(Path.GetTempPath(), $"covshift-wrap-{Guid.NewGuid():N}.bin");
        try
        {
            List<(string Key, Tensor Value)> during;
            using (var monitor = ActivationMonitor.Attach(model))
            {
                model.call(x);
                Assert.NotNull(monitor.Step());
                during = Snapshot(model);
                Assert.Equal(parameters.Select(p => p.name), model.named_parameters().Select(p => p.name));
                Assert.All(parameters.Zip(model.named_parameters()), p => Assert.Same(p.First.parameter, p.Second.parameter));
                Checkpoint.Save(model, path);   // saved while monitored

                model.eval();                   // train()/eval() reach the original layers
                Assert.All(LeavesByName(model).Values, l => Assert.False(l.training));
                model.call(x);
                Assert.Null(monitor.Step());    // an eval pass is not recorded, through the wrappers neither
                model.train();
            }
            var after = Snapshot(model);
            foreach (var other in new[] { during, after })
            {
                Assert.Equal(before.Select(b => b.Key), other.Select(o => o.Key));
                Assert.All(before.Zip(other), p => Assert.True(p.First.Value.eq(p.Second.Value).all().item<bool>(), p.First.Key));
            }

            var fresh = new MnistStyleNet();   // never monitored
            Checkpoint.Load(fresh, path);
            model.eval();
            fresh.eval();
            using (no_grad()) Assert.True(model.call(x).eq(fresh.call(x)).all().item<bool>());
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Converting_the_model_while_monitored_converts_the_original_layers_and_they_are_still_recorded()
    {
        using var scope = NewDisposeScope();
        var model = new MnistStyleNet();
        var layers = LeavesByName(model);
        using var monitor = ActivationMonitor.Attach(model);
        model.to(ScalarType.Float64);   // the same _to() path as to(device): through the registration, i.e. the originals
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.Float64, p.dtype));
        Assert.Equal(ScalarType.Float64, layers["conv1"].parameters().First().dtype);
        Assert.DoesNotContain(model.modules(), m => m is Hooks.RecordingWrapper);
        var x = TorchData.FashionMnist512.Images[TensorIndex.Slice(0, 4)].to(ScalarType.Float64);
        model.eval();                   // no dropout: the chain below is deterministic
        using (no_grad()) model.call(x);
        Assert.Null(monitor.Step());    // eval: not recorded
        model.train();
        using var noDropout = no_grad();
        layers["dropout1"].eval();      // frozen layers inside a training model are still recorded
        layers["dropout2"].eval();
        model.call(x);
        var record = monitor.Step()!;
        var expected = RunChain(layers, x);
        foreach (var layer in record.Layers) AssertMatches(layer.Statistics, expected[layer.Layer], layer.Layer);
    }

    [Fact]
    public void Dispose_puts_the_very_same_modules_back_into_the_fields()
    {
        using var scope = NewDisposeScope();
        var model = new MnistStyleNet();
        var fields = typeof(MnistStyleNet).GetFields(BindingFlags.Instance | BindingFlags.NonPublic)
            .Where(f => typeof(nn.Module).IsAssignableFrom(f.FieldType)).ToList();
        Assert.Equal(12, fields.Count);
        var originals = fields.Select(f => f.GetValue(model)).ToList();
        var monitor = ActivationMonitor.Attach(model);
        Assert.All(fields.Zip(originals), p => Assert.NotSame(p.Second, p.First.GetValue(model)));
        monitor.Dispose();
        Assert.All(fields.Zip(originals), p => Assert.Same(p.Second, p.First.GetValue(model)));
        // After Dispose the model runs as before, and a new monitor wraps afresh.
        using var again = ActivationMonitor.Attach(model);
        model.call(TorchData.FashionMnist512.Images[TensorIndex.Slice(0, 4)]);
        Assert.Equal(12, again.Step()!.Layers.Count(l => l.Statistics is not null));
    }

    [Fact]
    public void Two_monitors_on_one_model_both_record_forward_calls_and_can_be_disposed_in_either_order()
    {
        using var scope = NewDisposeScope();
        var field = typeof(MnistStyleNet).GetField("fc1", BindingFlags.Instance | BindingFlags.NonPublic)!;
        foreach (bool firstOutFirst in new[] { true, false })
        {
            var model = new MnistStyleNet();
            var original = field.GetValue(model);
            var first = ActivationMonitor.Attach(model);
            var second = ActivationMonitor.Attach(model);
            var x = TorchData.FashionMnist512.Images[TensorIndex.Slice(0, 4)];
            model.call(x);
            var a = first.Step()!;
            var b = second.Step()!;
            Assert.All(a.Layers.Zip(b.Layers), p =>
            {
                Assert.NotNull(p.First.Statistics);
                Assert.Equal(p.First.Statistics!.Mean, p.Second.Statistics!.Mean);
            });
            (firstOutFirst ? first : second).Dispose();
            model.call(x);   // the remaining monitor still records through its wrapper
            var remaining = firstOutFirst ? second : first;
            Assert.All(remaining.Step()!.Layers, l => Assert.NotNull(l.Statistics));
            remaining.Dispose();
            Assert.Same(original, field.GetValue(model));
        }
    }

    [Fact]
    public void Wrappers_are_in_the_fields_on_recorded_steps_only_and_chained_monitors_with_different_intervals_both_record()
    {
        using var scope = NewDisposeScope();
        var model = new MnistStyleNet();
        var fields = typeof(MnistStyleNet).GetFields(BindingFlags.Instance | BindingFlags.NonPublic)
            .Where(f => typeof(nn.Module).IsAssignableFrom(f.FieldType)).ToList();
        var originals = fields.Select(f => f.GetValue(model)).ToList();
        var layers = LeavesByName(model);
        var x = TorchData.FashionMnist512.Images[TensorIndex.Slice(0, 4)];
        using var every2 = ActivationMonitor.Attach(model, new MonitorOptions { RecordEvery = 2 });
        using var every3 = ActivationMonitor.Attach(model, new MonitorOptions { RecordEvery = 3 });
        var records = new Dictionary<(int Monitor, long Step), StepRecord>();
        for (int step = 0; step < 12; step++)
        {
            bool any = step % 2 == 0 || step % 3 == 0;
            // In the fields exactly on the steps some monitor records: a chain of both monitors' wrappers when both do.
            for (int i = 0; i < fields.Count; i++)
            {
                var held = fields[i].GetValue(model);
                if (!any)
                {
                    Assert.Same(originals[i], held);
                    continue;
                }
                int depth = 0;
                for (var w = held as Hooks.RecordingWrapper; w is not null; w = w.Inner as Hooks.RecordingWrapper) depth++;
                Assert.Equal((step % 2 == 0 ? 1 : 0) + (step % 3 == 0 ? 1 : 0), depth);
                Assert.Same(originals[i], Hooks.ModuleSlot.Unwrap((nn.Module)held!));
            }
            Dictionary<string, Tensor>? expected = null;
            using (no_grad())
            {
                torch.manual_seed(step);
                model.call(x);
                torch.manual_seed(step);
                if (any) expected = RunChain(layers, x);   // the same dropout masks on the original layers
            }
            foreach (var (id, monitor) in new[] { (2, every2), (3, every3) })
            {
                if (monitor.Step() is not { } r) continue;
                records[(id, r.Step)] = r;
                foreach (var l in r.Layers) AssertMatches(l.Statistics, expected![l.Layer], $"{l.Layer} (every {id}, step {r.Step})");
            }
        }
        Assert.Equal([0L, 2, 4, 6, 8, 10], records.Keys.Where(k => k.Monitor == 2).Select(k => k.Step).Order());
        Assert.Equal([0L, 3, 6, 9], records.Keys.Where(k => k.Monitor == 3).Select(k => k.Step).Order());
        // forward()-style: every layer is recorded on every recorded step, by both monitors alike where both record.
        Assert.All(records.Values, r => Assert.All(r.Layers, l => Assert.NotNull(l.Statistics)));
        foreach (long step in new long[] { 0, 6 })
            Assert.All(records[(2, step)].Layers.Zip(records[(3, step)].Layers), p => Assert.Equal(p.First.Statistics!.Mean, p.Second.Statistics!.Mean));
        every3.Dispose();
        every2.Dispose();
        Assert.All(fields.Zip(originals), p => Assert.Same(p.Second, p.First.GetValue(model)));
    }

    [Fact]
    public void A_concrete_typed_field_falls_back_to_the_hook_and_says_so_once()
    {
        using var scope = NewDisposeScope();
        var (logger, sink) = CollectingLogSink.Create(LogEventLevel.Information);
        var model = new ConcreteFieldNet(useCall: false);
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Logger = logger });
        var line = Assert.Single(monitor.CallOnlyLayers);
        Assert.StartsWith("fc (Linear): ConcreteFieldNet.fc is typed Linear", line);
        var notice = Assert.Single(sink.Events);   // at attach, before any step
        Assert.Equal(LogEventLevel.Information, notice.Level);
        Assert.Equal("fc", CollectingLogSink.Text(notice, "Layer"));
        Assert.Equal(line, CollectingLogSink.Text(notice, "Reason"));

        var records = new List<StepRecord>();
        for (int i = 0; i < 3; i++)
        {
            using var s = NewDisposeScope();
            model.call(randn(8, 4));
            records.Add(monitor.Step()!);
        }
        // fc is called with forward() through the concrete field: not recorded, reported once as not called.
        Assert.All(records, r => Assert.Null(r.Layers.Single(l => l.Layer == "fc").Statistics));
        Assert.All(records, r => Assert.NotNull(r.Layers.Single(l => l.Layer == "act").Statistics));
        Assert.Single(records.SelectMany(r => r.Anomalies), a => a.Kind == AnomalyKind.LayerNotCalled && a.Layer == "fc");
        Assert.Single(sink.Events, e => e.Properties.ContainsKey("Reason"));   // said once

        // The same field called with call() is recorded by the hook.
        using var viaCall = new ConcreteFieldNet(useCall: true);
        using var monitor2 = ActivationMonitor.Attach(viaCall);
        Assert.Single(monitor2.CallOnlyLayers);
        var x = randn(8, 4);
        viaCall.call(x);
        var fc = LeavesByName(viaCall)["fc"];
        using (no_grad()) AssertMatches(monitor2.Step()!.Layers.Single(l => l.Layer == "fc").Statistics, fc.forward(x), "fc");
    }

    [Fact]
    public void A_mixed_model_records_each_layer_once_per_step_whichever_way_it_is_called()
    {
        using var scope = NewDisposeScope();
        var model = new MixedNet();
        var layers = LeavesByName(model);
        using var monitor = ActivationMonitor.Attach(model);
        Assert.Empty(monitor.CallOnlyLayers);
        for (int step = 0; step < 3; step++)
        {
            using var s = NewDisposeScope();
            var x = randn(16, 4);
            var y = model.call(x);
            var record = monitor.Step()!;
            Assert.DoesNotContain(record.Anomalies, a => a.Kind == AnomalyKind.LayerNotCalled);
            Assert.Equal(MixedNet.Leaves.Length, record.Layers.Count(l => l.Statistics is not null));

            // Each layer's statistics are those of its first call in the step, recomputed on the original layers.
            using var _ = no_grad();
            var expected = new Dictionary<string, Tensor>();
            var t = expected["stem"] = layers["stem"].forward(x);
            t = expected["act"] = layers["act"].forward(t);                 // first use of the shared ReLU (forward())
            t = expected["seq.lin"] = layers["seq.lin"].forward(t);
            t = expected["seq.norm"] = layers["seq.norm"].forward(t);
            t = expected["blocks.0"] = layers["blocks.0"].forward(t);
            t = expected["blocks.1"] = layers["blocks.1"].forward(t);
            t = expected["mid"] = layers["mid"].forward(t);
            var second = layers["act"].forward(t);                           // second use (call()): not recorded
            t = expected["heads.out"] = layers["heads.out"].forward(second);
            Assert.True(t.allclose(y));
            Assert.False(second.allclose(expected["act"]));                  // the two uses are distinguishable
            foreach (var layer in record.Layers) AssertMatches(layer.Statistics, expected[layer.Layer], layer.Layer);
        }
    }
}
