using System.Text.Json;
using CovariateShift.Reports.Data;

namespace CovariateShift.Reports.Tests;

public sealed class RunLoaderTests
{
    [Fact]
    public void Metrics_of_a_real_monitored_run_match_the_monitors_records()
    {
        using var tmp = new TempDirectory();
        var dir = tmp.Sub("bn");
        var records = Runs.Train(dir, batchNorm: true);
        var run = RunLoader.Load(dir, "bn");
        var m = Assert.IsType<RunMetrics>(run.Metrics);
        Assert.Equal(records.Select(r => r.Step), m.Steps);
        Assert.Equal(records[0].Layers.Select(l => l.Layer), m.Layers.Select(l => l.Name));
        Assert.Equal(records[0].Layers.Select(l => l.LayerType), m.Layers.Select(l => l.Type));
        for (int s = 0; s < records.Count; s++)
        {
            Assert.Equal(records[s].Loss!.Value, m.Loss[s], 12);
            for (int l = 0; l < m.Layers.Count; l++)
            {
                var rec = records[s].Layers[l];
                var st = rec.Statistics!;
                Assert.Equal(st.Mean, m.Values["mean"][l][s], 12);
                Assert.Equal(st.Std, m.Values["std"][l][s], 12);
                Assert.Equal(st.P15, m.Values["p15"][l][s], 12);
                Assert.Equal(st.P85, m.Values["p85"][l][s], 12);
                Assert.Equal(st.NearZeroFraction, m.Values["near_zero_fraction"][l][s], 12);
                Assert.Equal(rec.Shift?.KlDivergence ?? double.NaN, m.Values["kl_divergence"][l][s], 12);
                Assert.Equal(rec.Shift?.Wasserstein1 ?? double.NaN, m.Values["wasserstein1"][l][s], 12);
                Assert.Equal(rec.Gradients?.GradNorm ?? double.NaN, m.Values["grad_norm"][l][s], 12);
                Assert.Equal(st.Histogram!.Counts.Select(c => (int)c), m.Histograms[l]!.Counts[s]!);
            }
        }
        // No training.jsonl: the training curve is the loss of the recorded steps, and the page says so.
        Assert.Equal(records.Select(r => r.Loss!.Value), run.Train.Select(p => p.Loss));
        Assert.Contains(run.Notes, n => n.Contains("training.jsonl", StringComparison.Ordinal));
    }

    [Fact]
    public void Half_written_and_malformed_lines_are_skipped_and_reported()
    {
        using var tmp = new TempDirectory();
        var dir = tmp.Sub("run");
        Runs.Train(dir, batchNorm: false, steps: 10);
        var path = Path.Combine(dir, "metrics.jsonl");
        var lines = File.ReadAllLines(path);
        int layers = RunLoader.Load(dir, "x").Metrics!.Layers.Count;
        // A garbage line in the middle and a last line cut in half (a run killed while writing).
        var text = string.Join("\n", lines.Take(layers)) + "\n{not json}\n" + string.Join("\n", lines.Skip(layers)) + "\n" + lines[^1][..(lines[^1].Length / 2)];
        File.WriteAllText(path, text);
        var run = RunLoader.Load(dir, "x");
        Assert.Equal(lines.Length / layers, run.Metrics!.Steps.Count);
        Assert.Contains(run.Notes, n => n.Contains("metrics.jsonl: 2 line(s) could not be read", StringComparison.Ordinal));
    }

    /// <summary>A run directory written before the log's property names were shared (the anomaly kind as
    /// <c>AnomalyKind</c>, one warning per layer) still loads; today's files are read from real runs in
    /// <c>RunContractTests</c> (CLI tests).</summary>
    [Fact]
    public void Training_config_and_warnings_of_an_older_run_directory_are_read()
    {
        using var tmp = new TempDirectory();
        var dir = tmp.Sub("run");
        File.WriteAllText(Path.Combine(dir, "training.jsonl"),
            "{\"step\":1,\"epoch\":0.1,\"split\":\"train\",\"loss\":2.5,\"lr\":0.1,\"examples_per_s\":1000}\n" +
            "{\"step\":2,\"epoch\":0.2,\"split\":\"train\",\"loss\":2.25,\"lr\":0.1,\"examples_per_s\":1000}\n" +
            "{\"step\":2,\"epoch\":0.2,\"split\":\"test\",\"loss\":2.0,\"accuracy\":0.375}\n");
        File.WriteAllText(Path.Combine(dir, "config.json"), "{\"model\":{\"architecture\":\"mlp\",\"depth\":3},\"seed\":7,\"optimizer\":\"sgd\"}");
        File.WriteAllText(Path.Combine(dir, "log.clef"),
            "{\"@t\":\"2026-11-27T00:00:00Z\",\"@l\":\"Warning\",\"Layer\":\"fc1\",\"AnomalyKind\":\"Saturated\",\"Value\":0.7,\"Step\":20,\"Hint\":\"h1\"}\n" +
            "{\"@t\":\"2026-11-27T00:00:01Z\",\"@l\":\"Warning\",\"Layer\":\"fc1\",\"AnomalyKind\":\"Saturated\",\"Value\":0.8,\"Step\":10,\"Hint\":\"h1\"}\n" +
            "{\"@t\":\"2026-11-27T00:00:02Z\",\"@mt\":\"Step {Step}\",\"Step\":30}\n");
        var run = RunLoader.Load(dir, "run");
        Assert.Null(run.Metrics);
        Assert.Equal([2.5, 2.25], run.Train.Select(p => p.Loss));
        var t = Assert.Single(run.Test);
        Assert.Equal((2L, 2.0, 0.375), (t.Step, t.Loss, t.Accuracy!.Value));
        var w = Assert.Single(run.Warnings);
        Assert.Equal(("fc1", "Saturated", 10L, 2, "h1"), (w.Layer, w.Kind, w.FirstStep, w.Count, w.Hint));
        Assert.Contains(new KeyValuePair<string, string>("model.depth", "3"), run.Facts);
        Assert.Contains(new KeyValuePair<string, string>("seed", "7"), run.Facts);
        Assert.Contains(run.Notes, n => n.Contains("no metrics.jsonl", StringComparison.Ordinal));
    }

    [Fact]
    public void Summary_json_evaluations_are_the_test_curve_without_training_jsonl()
    {
        using var tmp = new TempDirectory();
        var dir = tmp.Sub("run");
        File.WriteAllText(Path.Combine(dir, "summary.json"), JsonSerializer.Serialize(new
        {
            steps = 100,
            evaluations = new[] { new { step = 50, accuracy = 0.5, loss = 1.5, examples = 10 }, new { step = 100, accuracy = 0.75, loss = 1.0, examples = 10 } },
        }));
        var run = RunLoader.Load(dir, "run");
        Assert.Equal([(50L, 0.5), (100L, 0.75)], run.Test.Select(p => (p.Step, p.Accuracy!.Value)));
    }

    [Fact]
    public void A_missing_directory_is_an_error_naming_it_and_names_are_made_unique()
    {
        using var tmp = new TempDirectory();
        var missing = Path.Combine(tmp.Path, "nope");
        var e = Assert.Throws<DirectoryNotFoundException>(() => RunLoader.LoadAll([missing]));
        Assert.Contains(missing, e.Message, StringComparison.Ordinal);
        var a = tmp.Sub(Path.Combine("a", "batch"));
        var b = tmp.Sub(Path.Combine("b", "batch"));
        var runs = RunLoader.LoadAll([a, b]);
        Assert.Equal(["a/batch", "b/batch"], runs.Select(r => r.Name));
    }
}
