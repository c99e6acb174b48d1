using System.Text.Json.Nodes;
using CovariateShift.Reports.Data;
using TorchSharp;

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

    /// <summary>A real trainer run on Gaussian data (20 steps, the loss logged every 5, evaluated every 10) into <paramref name="dir"/>, with its summary.json.</summary>
    private static Training.Training.TrainResult TrainerRun(string dir)
    {
        using var train = Training.Data.Datasets.Gaussian(Training.Data.Datasets.GaussianFeatures, Training.Data.Datasets.GaussianClasses, 320, seed: 3, "g/train", 0);
        using var test = Training.Data.Datasets.Gaussian(Training.Data.Datasets.GaussianFeatures, Training.Data.Datasets.GaussianClasses, 100, seed: 3, "g/test", 1);
        torch.manual_seed(3);
        using var model = Nn.Models.ModelZoo.Create(new Nn.Models.ModelSpec
        {
            Architecture = "mlp", InputShape = [Training.Data.Datasets.GaussianFeatures], Classes = Training.Data.Datasets.GaussianClasses, Depth = 2, Width = 16,
        });
        var result = new Training.Training.Trainer(new Training.Training.TrainerOptions
        {
            Steps = 20, BatchSize = 32, LearningRate = 0.05, Seed = 3, RecordEvery = 5, LogEvery = 5, EvaluateEvery = 10, OutputDirectory = dir,
        }).Train(model, train, test);
        // summary.json as `covshift train` writes it (the trainer's result through its one writer).
        File.WriteAllText(Path.Combine(dir, RunLoader.SummaryFile), result.ToJson() + "\n");
        return result;
    }

    [Fact]
    public void Training_log_and_summary_a_real_trainer_wrote_are_the_curves()
    {
        using var tmp = new TempDirectory();
        var dir = tmp.Sub("run");
        var result = TrainerRun(dir);
        var run = RunLoader.Load(dir, "run");
        // training.jsonl: the mean loss since the previous line at every 5th step done (the trainer's own per-step losses).
        Assert.Equal([5L, 10, 15, 20], run.Train.Select(p => p.Step));
        for (int i = 0; i < run.Train.Count; i++) Assert.Equal(result.Losses.Skip(5 * i).Take(5).Average(), run.Train[i].Loss, 12);
        Assert.Equal(result.Evaluations.Select(e => ((long)e.Step, e.Loss, e.Accuracy)), run.Test.Select(p => (p.Step, p.Loss, p.Accuracy!.Value)));
        Assert.Contains(new KeyValuePair<string, string>("result.steps", "20"), run.Facts);

        // Without training.jsonl the test curve is summary.json's evaluations, the training curve the recorded steps' losses.
        File.Delete(Path.Combine(dir, RunLoader.TrainingFile));
        var fromSummary = RunLoader.Load(dir, "run");
        Assert.Equal(result.Evaluations.Select(e => ((long)e.Step, e.Loss, e.Accuracy)), fromSummary.Test.Select(p => (p.Step, p.Loss, p.Accuracy!.Value)));
        Assert.Equal(fromSummary.Metrics!.Steps, fromSummary.Train.Select(p => p.Step));
        Assert.Equal([0L, 5, 10, 15], fromSummary.Train.Select(p => p.Step));
        Assert.Equal(Enumerable.Range(0, 4).Select(i => result.Losses[5 * i]), fromSummary.Train.Select(p => p.Loss));
    }

    /// <summary>
    /// Run directories of earlier versions still load: training.jsonl without its <c>version</c> field, and log.clef with
    /// one warning per layer and the kind under its former name (<c>AnomalyKind</c>). Both are made from files our code
    /// wrote now (a trainer run, a diverging monitored run), so the old files differ from today's only in those points.
    /// </summary>
    [Fact]
    public void Training_log_and_warnings_of_an_older_run_directory_read_as_todays()
    {
        using var tmp = new TempDirectory();
        var dir = tmp.Sub("run");
        TrainerRun(dir);
        Runs.Diverging(dir, forecastFile: false);   // log.clef with anomaly warnings (metrics.jsonl replaced)
        var today = RunLoader.Load(dir, "run");
        Assert.Contains(today.Warnings, w => w.Kind != "DivergenceAhead");

        var old = tmp.Sub("old");
        File.WriteAllLines(Path.Combine(old, RunLoader.TrainingFile), File.ReadAllLines(Path.Combine(dir, RunLoader.TrainingFile)).Select(l =>
        {
            var o = JsonNode.Parse(l)!.AsObject();
            Assert.True(o.Remove("version"), l);
            return o.ToJsonString();
        }));
        var legacy = new List<string>();
        foreach (var line in File.ReadAllLines(Path.Combine(dir, RunLoader.LogFile)))
        {
            var o = JsonNode.Parse(line)!.AsObject();
            if (o[Sinks.LogProperties.Kind] is not { } kind)
            {
                legacy.Add(line);
                continue;
            }
            if (o[Sinks.LogProperties.Layers] is not JsonArray layers)
            {
                o.Remove(Sinks.LogProperties.Kind);
                o[Sinks.LogProperties.LegacyKind] = kind.GetValue<string>();
                legacy.Add(o.ToJsonString());
                continue;
            }
            foreach (var layer in layers)
            {
                var perLayer = JsonNode.Parse(line)!.AsObject();
                perLayer.Remove(Sinks.LogProperties.Layers);
                perLayer.Remove(Sinks.LogProperties.Kind);
                perLayer[Sinks.LogProperties.LegacyKind] = kind.GetValue<string>();
                perLayer[Sinks.LogProperties.Layer] = layer!.GetValue<string>();
                legacy.Add(perLayer.ToJsonString());
            }
        }
        File.WriteAllLines(Path.Combine(old, RunLoader.LogFile), legacy);
        Assert.DoesNotContain("\"Kind\"", File.ReadAllText(Path.Combine(old, RunLoader.LogFile)), StringComparison.Ordinal);

        var run = RunLoader.Load(old, "old");
        Assert.Equal(today.Train, run.Train);
        Assert.Equal(today.Test, run.Test);
        Assert.Equal(today.Warnings, run.Warnings);
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
