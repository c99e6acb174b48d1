using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using CovariateShift.Records;
using CovariateShift.Schema;
using CovariateShift.Tests.Support;
using Serilog.Events;
using TorchSharp;
using static TorchSharp.torch;

namespace CovariateShift.Tests;

/// <summary>One schema: the metrics file written and read back, the first format, broken lines, and the names.</summary>
public sealed class SchemaTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("covshift-schema-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static List<StepRecord> Train(MonitorOptions options, int steps, Func<int, Tensor>? input = null)
    {
        var model = nn.Sequential(("fc1", nn.Linear(5, 7)), ("act", nn.Tanh()), ("fc2", nn.Linear(7, 3)));
        var opt = optim.SGD(model.parameters(), 0.05);
        var gen = new Generator(11);
        var records = new List<StepRecord>();
        using (var monitor = ActivationMonitor.Attach(model, options with { StrictSinks = true }))
        {
            for (int i = 0; i < steps; i++)
            {
                using var scope = NewDisposeScope();
                opt.zero_grad();
                var x = input?.Invoke(i) ?? randn([12, 5], generator: gen);
                var loss = nn.functional.cross_entropy(model.call(x), randint(0, 3, [12], generator: gen));
                loss.backward();
                monitor.RecordGradients();
                opt.step();
                if (monitor.Step(loss) is { } r) records.Add(r);
            }
        }
        model.Dispose();
        return records;
    }

    [Fact]
    public void The_reader_returns_the_records_the_monitor_wrote_with_histograms_at_the_interval()
    {
        var path = Path.Combine(_dir, "metrics.jsonl");
        var written = Train(new MonitorOptions { JsonLinesPath = path, JsonLinesHistogramEvery = 3 }, steps: 7);
        var read = MetricsReader.Read(path);
        Assert.Equal(0, read.SkippedLines);
        Assert.Equal(written.Count, read.Steps.Count);
        for (int i = 0; i < written.Count; i++)
        {
            var (w, r) = (written[i], read.Steps[i]);
            Assert.Equal(w.Step, r.Step);
            Assert.Equal(w.Loss, r.Loss);
            Assert.Empty(r.Anomalies);
            for (int l = 0; l < w.Layers.Count; l++)
            {
                var (wl, rl) = (w.Layers[l], r.Layers[l]);
                Assert.Equal((wl.Step, wl.Layer, wl.LayerType), (rl.Step, rl.Layer, rl.LayerType));
                Assert.Equal(wl.Shift, rl.Shift);
                Assert.Equal(wl.ReferenceShift, rl.ReferenceShift);
                Assert.Equal(wl.Gradients, rl.Gradients);
                var expected = i % 3 == 0 ? wl.Statistics : wl.Statistics! with { Histogram = null };
                Assert.Equal(expected! with { Histogram = null }, rl.Statistics! with { Histogram = null });
                if (i % 3 == 0) Assert.Equal(wl.Statistics!.Histogram!.Counts.ToArray(), rl.Statistics!.Histogram!.Counts.ToArray());
                else Assert.Null(rl.Statistics!.Histogram);
            }
        }
    }

    [Fact]
    public void Every_line_carries_the_version_and_non_finite_numbers_round_trip_as_named_literals()
    {
        var path = Path.Combine(_dir, "nan.jsonl");
        var written = Train(new MonitorOptions { JsonLinesPath = path }, steps: 2, input: i => i == 1 ? full(12, 5, float.PositiveInfinity) : ones(12, 5));
        var lines = File.ReadAllLines(path);
        Assert.All(lines, l => Assert.Equal(MetricsSchema.Version, JsonDocument.Parse(l).RootElement.GetProperty("version").GetInt32()));
        Assert.Contains("\"NaN\"", lines[3]);   // fc1 at step 1: every input is +Inf, so its output is NaN/Inf
        var read = MetricsReader.Read(path).Steps[1].Layers[0].Statistics!;
        var expected = written[1].Layers[0].Statistics!;
        Assert.Equal(expected.NanCount + expected.InfCount, read.NanCount + read.InfCount);
        Assert.True(expected.NanCount + expected.InfCount > 0);
        Assert.Equal(expected.Mean, read.Mean);   // NaN equals NaN for doubles in Assert.Equal
        Assert.True(double.IsNaN(read.Mean));
    }

    [Fact]
    public void The_first_format_is_read_too()
    {
        var path = Path.Combine(_dir, "v1.jsonl");
        // A line as the first format wrote it (no version; its own field names).
        const string V1 = """{"step":20,"layer":"layers.0.act","type":"ReLU","called":true,"loss":0.75,"count":4096,"mean":0.5,"std":0.25,"min":0,"max":2,"p15":0.1,"p50":0.4,"p85":0.9,"near_zero":0.3,"dead_units":0.125,"saturated":null,"nan":1,"inf":2,"channel_sq_mean":null,"channel_var":null,"hist":{"low":0,"high":3,"counts":[0,5,6,0]},"shift":{"mean_drift":0.01,"variance_ratio":1.5,"kl":"NaN","js":0.002,"w1":0.03},"ref_shift":null,"grad":{"norm":0.5,"weight_norm":2,"ratio":0.25,"update_norm":0.001,"update_ratio":0.0005}}""";
        File.WriteAllText(path, V1 + "\n");
        var r = Assert.Single(MetricsReader.Read(path).Layers);
        Assert.Equal((20L, "layers.0.act", "ReLU"), (r.Step, r.Layer, r.LayerType));
        var s = r.Statistics!;
        Assert.Equal((4096L, 0.5, 0.25, 0.3, 0.125, 1L, 2L), (s.Count, s.Mean, s.Std, s.NearZeroFraction, s.DeadUnitFraction, s.NanCount, s.InfCount));
        Assert.Equal([0L, 5, 6, 0], s.Histogram!.Counts.ToArray());
        Assert.Equal((0.01, 1.5, 0.002, 0.03), (r.Shift!.MeanDrift, r.Shift.VarianceRatio, r.Shift.JensenShannon, r.Shift.Wasserstein1));
        Assert.True(double.IsNaN(r.Shift.KlDivergence));
        Assert.Equal((0.5, 2.0, 0.25, 0.001), (r.Gradients!.GradNorm, r.Gradients.WeightNorm, r.Gradients.GradToWeightRatio, r.Gradients.UpdateNorm!.Value));
    }

    [Fact]
    public void Broken_and_cut_off_lines_are_skipped_and_counted()
    {
        var path = Path.Combine(_dir, "metrics.jsonl");
        Train(new MonitorOptions { JsonLinesPath = path }, steps: 3);
        var lines = File.ReadAllLines(path);
        Assert.Equal(9, lines.Length);
        var damaged = string.Join("\n", lines[..4]) + "\n{\"not\": \"a metrics line\"}\nthis is not JSON\n" + string.Join("\n", lines[4..]) + "\n" + lines[8][..40];
        File.WriteAllText(path, damaged);
        var read = MetricsReader.Read(path);
        Assert.Equal(3, read.SkippedLines);
        Assert.Equal(9, read.Layers.Count);
        Assert.Equal([0L, 1, 2], read.Steps.Select(s => s.Step));
    }

    [Fact]
    public void Bytes_are_split_on_newlines_across_blocks_with_a_bom_crlf_blank_lines_and_a_line_longer_than_a_block()
    {
        // 3,000 first-format lines (about 1 KB each, so lines straddle the reader's 1 MB blocks) and one line with a
        // 500,000-bin histogram (1.4 MB, longer than a block), CRLF endings, blank lines and a UTF-8 BOM.
        static string Line(int step, double mean, long[] counts) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $$"""{"step":{{step}},"layer":"layers.{{step % 7}}.act","type":"ReLU","called":true,"loss":{{step * 0.5}},"count":64,"mean":{{mean:R}},"std":1,"min":0,"max":2,"p15":0,"p50":1,"p85":2,"near_zero":0,"dead_units":0,"saturated":null,"nan":0,"inf":0,"channel_sq_mean":null,"channel_var":null,"hist":{"low":0,"high":1,"counts":[{{string.Join(',', counts)}}]},"shift":null,"ref_shift":null,"grad":null}""");
        var small = Enumerable.Range(0, 200).Select(i => (long)i).ToArray();
        var huge = Enumerable.Range(0, 500_000).Select(i => (long)(i % 13)).ToArray();
        var means = Enumerable.Range(0, 3001).Select(i => Math.Sqrt(i + 0.5)).ToArray();
        var text = new System.Text.StringBuilder();
        for (int i = 0; i < means.Length; i++)
        {
            text.Append(Line(i, means[i], i == 1500 ? huge : small)).Append(i % 2 == 0 ? "\r\n" : "\n");
            if (i % 500 == 0) text.Append("  \n\n");
        }
        var bytes = new byte[] { 0xEF, 0xBB, 0xBF }.Concat(System.Text.Encoding.UTF8.GetBytes(text.ToString())).ToArray();
        Assert.True(bytes.Length > 3 << 20);

        var read = MetricsReader.Read(new MemoryStream(bytes));
        Assert.Equal(0, read.SkippedLines);
        var layers = read.Layers;
        Assert.Equal(means.Length, layers.Count);
        Assert.Equal(Enumerable.Range(0, means.Length).Select(i => (long)i), layers.Select(r => r.Step));
        Assert.Equal(means, layers.Select(r => r.Statistics!.Mean));
        Assert.Equal(huge, layers[1500].Statistics!.Histogram!.Counts.ToArray());
        Assert.Equal(small, layers[2999].Statistics!.Histogram!.Counts.ToArray());
        Assert.Equal(1500 * 0.5, read.Steps[1500].Loss);

        // The same bytes cut inside the last line: that line is skipped and counted, the others are read.
        var cut = MetricsReader.Read(new MemoryStream(bytes[..^30]));
        Assert.Equal((1, means.Length - 1), (cut.SkippedLines, cut.Layers.Count));
    }

    private static IEnumerable<string> SchemaNames(Type t) => t.GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.GetCustomAttribute<JsonIgnoreAttribute>() is null && p.Name != "EqualityContract").Select(p => p.Name);

    [Fact]
    public void Field_names_are_the_record_property_names_in_the_file_and_in_the_log()
    {
        // The flattened line has exactly the names of LayerRecord and LayerStatistics (plus version, called, loss).
        var lineNames = typeof(MetricsLine).GetProperties().Select(p => p.Name).ToHashSet();
        var recordNames = SchemaNames(typeof(LayerRecord)).Where(n => n != nameof(LayerRecord.Statistics))
            .Concat(SchemaNames(typeof(LayerStatistics)))
            .Concat(["Version", "Called", "Loss", nameof(StepRecord.MonitorMs), nameof(StepRecord.StepMs), nameof(StepRecord.StepsSincePrevious)]).ToHashSet();
        Assert.Equal(recordNames.Order(), lineNames.Order());

        // In the file: snake_case of those names, nested objects with the names of their records.
        var path = Path.Combine(_dir, "names.jsonl");
        var (logger, log) = CollectingLogSink.Create();
        Train(new MonitorOptions { JsonLinesPath = path, Logger = logger }, steps: 2);
        var e = JsonDocument.Parse(File.ReadAllLines(path)[^1]).RootElement;
        Assert.Equal(lineNames.Select(JsonNamingPolicy.SnakeCaseLower.ConvertName).Order(), e.EnumerateObject().Select(p => p.Name).Order());
        Assert.Equal(SchemaNames(typeof(ShiftMetrics)).Select(JsonNamingPolicy.SnakeCaseLower.ConvertName).Order(), e.GetProperty("shift").EnumerateObject().Select(p => p.Name).Order());
        Assert.Equal(SchemaNames(typeof(GradientStatistics)).Select(JsonNamingPolicy.SnakeCaseLower.ConvertName).Order(), e.GetProperty("gradients").EnumerateObject().Select(p => p.Name).Order());

        // In the log: every property of a per-layer event is a record property name.
        var allowed = SchemaNames(typeof(LayerRecord)).Concat(SchemaNames(typeof(LayerStatistics))).Concat(SchemaNames(typeof(ShiftMetrics)))
            .Concat(SchemaNames(typeof(GradientStatistics))).Append("SourceContext").ToHashSet();
        // The per-layer statistics events (an anomaly's per-layer detail, also at Debug, depends on the random data: not counted).
        var layerEvents = log.Events.Where(ev => ev.Level == LogEventLevel.Debug && !ev.Properties.ContainsKey("Kind")).ToList();
        Assert.Equal(2 * 3, layerEvents.Count);
        Assert.All(layerEvents.SelectMany(ev => ev.Properties.Keys), k => Assert.Contains(k, allowed));
        Assert.Contains(layerEvents, ev => ev.Properties.ContainsKey(nameof(LayerStatistics.DeadUnitFraction)) && ev.Properties.ContainsKey(nameof(ShiftMetrics.KlDivergence)));
        Assert.All(log.Events, ev => Assert.Equal(ActivationMonitor.LogSourceContext, CollectingLogSink.Text(ev, "SourceContext")));
    }
}
