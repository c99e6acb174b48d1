using System.Text.Json;
using CovariateShift.Records;
using CovariateShift.Sinks;
using CovariateShift.Tests.Support;
using Serilog.Events;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

[Collection(TorchGlobalState.Name)]
public sealed class SinkTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-sinks-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static nn.Module<Tensor, Tensor> SmallModel()
    {
        torch.manual_seed(2);
        return nn.Sequential(("fc1", nn.Linear(6, 8)), ("act", nn.Sigmoid()), ("fc2", nn.Linear(8, 3)));
    }

    private static StepRecord TrainStep(nn.Module<Tensor, Tensor> model, ActivationMonitor monitor, optim.Optimizer opt, Tensor x, Tensor y)
    {
        using var scope = NewDisposeScope();
        opt.zero_grad();
        var loss = nn.functional.cross_entropy(model.call(x), y);
        loss.backward();
        monitor.RecordGradients();
        opt.step();
        return monitor.Step(loss)!;
    }

    [Fact]
    public void Serilog_events_carry_the_record_values_as_named_properties()
    {
        using var scope = NewDisposeScope();
        var (logger, sink) = CollectingLogSink.Create();
        var model = SmallModel();
        var opt = optim.SGD(model.parameters(), 0.1);
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Logger = logger });
        var x = randn(16, 6);
        var y = randint(0, 3, [16]);
        TrainStep(model, monitor, opt, x, y);
        var record = TrainStep(model, monitor, opt, x, y);

        var layerEvents = sink.Events.Where(e => e.Level == LogEventLevel.Debug && CollectingLogSink.Scalar(e, "Step") == 1).ToList();
        Assert.Equal(3, layerEvents.Count);
        foreach (var layer in record.Layers)
        {
            var e = layerEvents.Single(ev => CollectingLogSink.Text(ev, "Layer") == layer.Layer);
            Assert.Equal(layer.LayerType, CollectingLogSink.Text(e, "LayerType"));
            Assert.Equal(layer.Statistics!.Mean, CollectingLogSink.Scalar(e, "Mean"));
            Assert.Equal(layer.Statistics.Std, CollectingLogSink.Scalar(e, "Std"));
            Assert.Equal(layer.Statistics.P50, CollectingLogSink.Scalar(e, "P50"));
            Assert.Equal(layer.Shift!.MeanDrift, CollectingLogSink.Scalar(e, "MeanDrift"));
            Assert.Equal(layer.Shift.VarianceRatio, CollectingLogSink.Scalar(e, "VarianceRatio"));
            Assert.Equal(layer.Shift.KlDivergence, CollectingLogSink.Scalar(e, "KlDivergence"));
            Assert.Equal(layer.Shift.JensenShannon, CollectingLogSink.Scalar(e, "JensenShannon"));
            Assert.Contains("{Layer}", e.MessageTemplate.Text);   // a template, not interpolated text
        }
        var fc1 = layerEvents.Single(ev => CollectingLogSink.Text(ev, "Layer") == "fc1");
        Assert.Equal(record.Layers[0].Gradients!.GradNorm, CollectingLogSink.Scalar(fc1, "GradNorm"));
        var act = layerEvents.Single(ev => CollectingLogSink.Text(ev, "Layer") == "act");
        Assert.Equal(record.Layers[1].Statistics!.SaturatedFraction!.Value, CollectingLogSink.Scalar(act, "SaturatedFraction"));

        var summaries = sink.Events.Where(e => e.Level == LogEventLevel.Information).ToList();
        Assert.Equal(2, summaries.Count);
        Assert.Equal(record.Loss!.Value, CollectingLogSink.Scalar(summaries[1], "Loss"));
        Assert.Equal(3, CollectingLogSink.Scalar(summaries[1], "LayerCount"));
        var maxDrift = record.Layers.MaxBy(l => l.Shift!.MeanDrift)!;
        Assert.Equal(maxDrift.Layer, CollectingLogSink.Text(summaries[1], "MaxMeanDriftLayer"));
        Assert.Equal(maxDrift.Shift!.MeanDrift, CollectingLogSink.Scalar(summaries[1], "MaxMeanDrift"));
    }

    [Fact]
    public void Anomaly_warnings_name_the_layer_and_a_hint()
    {
        using var scope = NewDisposeScope();
        var (logger, sink) = CollectingLogSink.Create(LogEventLevel.Warning);
        var fc = nn.Linear(4, 64);
        using (no_grad()) fc.weight!.mul_(100);        // drives the sigmoid into saturation
        var model = nn.Sequential(("fc", fc), ("act", nn.Sigmoid()));
        using var monitor = ActivationMonitor.Attach(model, new MonitorOptions { Logger = logger });
        model.call(randn(32, 4));
        var r = monitor.Step()!;
        var saturated = Assert.Single(r.Anomalies, a => a.Kind == AnomalyKind.Saturated);
        Assert.Equal("act", saturated.Layer);
        Assert.Equal(r.Layers[1].Statistics!.SaturatedFraction!.Value, saturated.Value);
        var w = Assert.Single(sink.Events, e => CollectingLogSink.Text(e, "Kind") == nameof(AnomalyKind.Saturated));
        Assert.Equal(LogEventLevel.Warning, w.Level);
        Assert.Equal("act", CollectingLogSink.Text(w, "Layer"));
        Assert.Contains("normalize", CollectingLogSink.Text(w, "Hint"));
    }

    [Fact]
    public void JSON_Lines_file_parses_line_by_line_after_an_interrupted_run()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(_dir, "run", "metrics.jsonl");
        var model = SmallModel();
        var opt = optim.SGD(model.parameters(), 0.1);
        var monitor = ActivationMonitor.Attach(model, new MonitorOptions { JsonLinesPath = path, RecordEvery = 2, JsonLinesHistogramEvery = 2 });
        var x = randn(16, 6);
        var y = randint(0, 3, [16]);
        var records = new List<StepRecord>();
        for (int i = 0; i < 9; i++)
        {
            using var s = NewDisposeScope();
            opt.zero_grad();
            var loss = nn.functional.cross_entropy(model.call(x), y);
            loss.backward();
            monitor.RecordGradients();
            opt.step();
            if (monitor.Step(loss) is { } r) records.Add(r);
        }
        // "Crash": the monitor is never disposed; a reader opens the file while the writer still holds it.
        string[] lines;
        using (var reader = new StreamReader(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite)))
            lines = reader.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(5 * 3, lines.Length);    // steps 0, 2, 4, 6, 8 x 3 layers, every line whole
        for (int i = 0; i < lines.Length; i++)
        {
            using var doc = JsonDocument.Parse(lines[i]);
            var e = doc.RootElement;
            var expected = records[i / 3].Layers[i % 3];
            Assert.Equal(expected.Step, e.GetProperty("step").GetInt64());
            Assert.Equal(expected.Layer, e.GetProperty("layer").GetString());
            Assert.Equal(expected.Statistics!.Mean, JsonLinesSink.ReadNumber(e.GetProperty("mean")));
            Assert.Equal(2, e.GetProperty("version").GetInt32());
            if (i / 3 % 2 == 0) Assert.Equal(expected.Statistics.Histogram!.Counts, e.GetProperty("histogram").GetProperty("counts").EnumerateArray().Select(c => c.GetInt64()));
            else Assert.Equal(JsonValueKind.Null, e.GetProperty("histogram").ValueKind);   // histograms every 2nd record
            Assert.Equal(records[i / 3].Loss!.Value, JsonLinesSink.ReadNumber(e.GetProperty("loss")));
            if (i >= 3) Assert.Equal(expected.Shift!.KlDivergence, JsonLinesSink.ReadNumber(e.GetProperty("shift").GetProperty("kl_divergence")));
            else Assert.Equal(JsonValueKind.Null, e.GetProperty("shift").ValueKind);
        }
        monitor.Dispose();
    }

    [Fact]
    public void Non_finite_values_are_written_as_strings_that_read_back()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(_dir, "nan.jsonl");
        var model = nn.Sequential(("id", nn.Identity()));
        using (var monitor = ActivationMonitor.Attach(model, new MonitorOptions { JsonLinesPath = path }))
        {
            model.call(full(4, float.NaN));
            monitor.Step();
        }
        using var doc = JsonDocument.Parse(File.ReadAllLines(path).Single());
        Assert.Equal("NaN", doc.RootElement.GetProperty("mean").GetString());
        Assert.True(double.IsNaN(JsonLinesSink.ReadNumber(doc.RootElement.GetProperty("mean"))));
        Assert.Equal(4, doc.RootElement.GetProperty("nan_count").GetInt64());
    }

    [Fact]
    public void TensorBoard_event_files_are_written()
    {
        using var scope = NewDisposeScope();
        var tb = Path.Combine(_dir, "tb");
        var model = SmallModel();
        var opt = optim.SGD(model.parameters(), 0.1);
        var records = new List<StepRecord>();
        using (var monitor = ActivationMonitor.Attach(model, new MonitorOptions { TensorBoardDirectory = tb, TensorBoardHistogramEvery = 1 }))
        {
            var x = randn(8, 6);
            var y = randint(0, 3, [8]);
            records.Add(TrainStep(model, monitor, opt, x, y));
            records.Add(TrainStep(model, monitor, opt, x, y));
        }
        // Read back through the wire format: each record's scalars at its step, one histogram per layer and record.
        var values = TensorBoardEvents.Read(tb);
        foreach (var r in records)
        {
            foreach (var layer in r.Layers)
            {
                var mean = Assert.Single(values, v => v.Step == r.Step && v.Tag == $"{layer.Layer}/mean");
                Assert.Equal((float)layer.Statistics!.Mean, mean.Scalar);
                Assert.Single(values, v => v.Step == r.Step && v.Tag == $"{layer.Layer}/activations" && v.Histogram);
            }
            Assert.Equal((float)r.Loss!.Value, Assert.Single(values, v => v.Step == r.Step && v.Tag == "loss").Scalar);
        }
        var files = Directory.GetFiles(tb, "events.out.tfevents.*", SearchOption.AllDirectories);
        Assert.NotEmpty(files);
        var bytes = File.ReadAllBytes(files[0]);
        var text = System.Text.Encoding.ASCII.GetString(bytes);
        Assert.Contains("fc1/mean", text);          // scalar tags are stored verbatim in the event protos
        Assert.Contains("fc2/kl_divergence", text);
        Assert.Contains("act/activations", text);   // histogram summary
        Assert.Contains("loss", text);
    }
}
